"""Frozen transformer embeddings as fixed features (the ``static`` surrogate's input)."""

from __future__ import annotations

import torch

from llmbo.encoders.base import FEATURIZERS, Featurizer
from llmbo.encoders.transformer import EncoderConfig, TextEncoder
from llmbo.space import CandidateSpace

__all__ = ["EmbeddingFeaturizer"]


@FEATURIZERS.register("embedding")
class EmbeddingFeaturizer(Featurizer):
    """Pooled hidden states of a frozen pretrained transformer, one vector per candidate."""

    def __init__(self, config: EncoderConfig | None = None, *, progress: bool = False) -> None:
        self.config = config or EncoderConfig()
        self.progress = progress

    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        encoder = TextEncoder(self.config).prepare(space.texts, progress=self.progress)
        return encoder.embed().to("cpu", torch.float64)
