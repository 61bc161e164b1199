"""A learnable token reading cached per-statement states of a frozen transformer.

Built for large grids of prompts (the LoRA hyperparameter grid has 45,360): the frozen
transformer reads every prompt once per study, and each line of a prompt (one statement
about one hyperparameter or one interaction) is mean-pooled into a state vector, so a
study keeps ``N x S x H`` numbers (``S`` statements of width ``H``) instead of running the
network again. The learnable token is a query vector in the transformer's hidden space:
it attends over a prompt's statement states (single-head scaled dot product on the
layer-normalised states) and re-weights them, so the features of a candidate are its
statement states scaled by ``S x`` their attention weights and concatenated. The token
starts at zero, where every weight is ``1/S`` and the features are the plain concatenation
(the "no token" ablation, ``token=False``, keeps it there). Training it by marginal
likelihood lets the model decide, from what each statement says, which statements matter.
Scoring all 45,360 candidates is then one small batched product per fit, not 45,360
transformer passes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbo.encoders.transformer import EncoderConfig, TextEncoder, resolve_model_path
from llmbo.errors import InputError

logger = logging.getLogger("llmbo.encoders")

__all__ = ["PromptTokenEncoder"]

#: Rows per chunk when all candidates' features are computed at once.
EMBED_CHUNK = 8192


class PromptTokenEncoder(nn.Module):
    """Frozen statement states of every prompt plus one learnable query token.

    Args:
        config: How to load and run the transformer; ``pooling`` is set to
            ``"segments"`` (statements are the parts between ``segment_separator``).
        token: Train the token (``False``: features stay the plain concatenation).
        cache_dir: Folder where the statement states of a pool are kept between
            studies (keyed by model, settings and texts); ``None``: not kept.

    The module follows the encoder contract of :class:`~llmbo.surrogates.deep_kernel.
    DeepKernelGP`: :meth:`prepare`, ``forward(index)`` (``n`` long -> ``n x S*H``
    float32), :meth:`embed`, :meth:`trainable_parameters`, :meth:`reset_parameters`,
    ``output_size`` and ``device``.
    """

    def __init__(
        self, config: EncoderConfig, *, token: bool = True, cache_dir: str | None = None
    ) -> None:
        super().__init__()
        self.config = replace(config, pooling="segments")
        self.use_token = bool(token)
        self.cache_dir = cache_dir
        self.states: Tensor | None = None
        self.query: nn.Parameter | None = None
        self.device = torch.device("cpu")

    # ----------------------------------------------------------------- prepare
    def prepare(self, texts: Sequence[str], *, progress: bool = False) -> PromptTokenEncoder:
        """Read every prompt once with the frozen transformer (or load the cached states)."""
        texts = list(texts)
        cached = self._cache_file(texts)
        if cached is not None and cached.is_file():
            states = torch.load(cached, map_location="cpu", weights_only=True)
            logger.info("Loaded statement states of %d prompts from %s", len(texts), cached)
        else:
            encoder = TextEncoder(self.config).prepare(texts, progress=progress)
            flat = encoder.embed(progress=progress).to("cpu", torch.float32)
            segments = max(1, int(encoder.n_segments))
            states = flat.reshape(len(texts), segments, -1).contiguous()
            del encoder
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                partial = cached.with_suffix(".partial")
                torch.save(states, partial)
                partial.replace(cached)
        self.states = states
        self.query = nn.Parameter(torch.zeros(states.shape[-1]), requires_grad=self.use_token)
        return self

    def _cache_file(self, texts: list[str]) -> Path | None:
        if self.cache_dir is None:
            return None
        settings = self.config.to_dict()
        for runtime in ("device", "batch_size"):
            settings.pop(runtime, None)
        settings["model"] = resolve_model_path(self.config.model)
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\0")
        return Path(self.cache_dir) / f"statements-{digest.hexdigest()[:32]}.pt"

    # ----------------------------------------------------------------- contract
    def _require(self) -> tuple[Tensor, nn.Parameter]:
        if self.states is None or self.query is None:
            raise InputError("Call prepare(texts) first: the statement states come from the pool.")
        return self.states, self.query

    @property
    def n_statements(self) -> int:
        return int(self._require()[0].shape[1])

    @property
    def hidden_size(self) -> int:
        return int(self._require()[0].shape[2])

    @property
    def output_size(self) -> int:
        states = self._require()[0]
        return int(states.shape[1] * states.shape[2])

    def weights(self, index: Tensor | None = None) -> Tensor:
        """Attention of the token over the statements of rows ``index`` (``n x S``)."""
        states, query = self._require()
        rows = states if index is None else states[index]
        keys = F.layer_norm(rows, rows.shape[-1:])
        scores = keys @ query / math.sqrt(rows.shape[-1])
        return torch.softmax(scores, dim=-1)

    def forward(self, index: Tensor) -> Tensor:
        states = self._require()[0]
        rows = states[index.to(states.device)]
        scale = rows.shape[1] * self.weights(index)
        return (rows * scale.unsqueeze(-1)).flatten(1)

    def embed(self, index: Tensor | None = None, *, progress: bool = False) -> Tensor:
        """Features of rows ``index`` (all rows if ``None``), without gradients."""
        states = self._require()[0]
        rows = torch.arange(len(states)) if index is None else torch.as_tensor(index)
        with torch.no_grad():
            return torch.cat([self(chunk) for chunk in rows.split(EMBED_CHUNK)])

    def trainable_parameters(self) -> list[nn.Parameter]:
        query = self._require()[1]
        return [query] if self.use_token else []

    def reset_parameters(self) -> None:
        """Put the token back at zero (uniform attention)."""
        query = self._require()[1]
        with torch.no_grad():
            query.zero_()
