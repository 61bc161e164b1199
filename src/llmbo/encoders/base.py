"""Contracts for turning candidates into feature vectors."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from llmbo.registry import Registry
from llmbo.space import CandidateSpace

__all__ = ["FEATURIZERS", "Featurizer"]


class Featurizer(ABC):
    """Maps every candidate of a space to a fixed feature vector (no training).

    Fingerprints, one-hot encodings and frozen transformer embeddings are featurizers;
    trainable encoders live in :mod:`llmbo.encoders.transformer` and are driven by a
    deep-kernel surrogate instead.
    """

    #: Whether features are binary/count vectors suited to a Tanimoto kernel.
    binary: bool = False
    #: Kernel a deep kernel puts on these features when they are its side features
    #: (``"tanimoto"`` or ``"matern-ard"``).
    side_kernel: str = "tanimoto"

    @abstractmethod
    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        """Return an ``N x d`` float64 tensor, row ``i`` for ``space.ids[i]``."""


#: Registered featurizers by name (``"drfp"``, ``"morgan"``, ``"onehot"``, ...).
FEATURIZERS: Registry[type[Featurizer]] = Registry("featurizer")
