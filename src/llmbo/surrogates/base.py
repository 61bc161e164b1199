"""The surrogate contract: fit on observed pool rows, expose a BoTorch model on pool features."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from botorch.models.model import Model
from torch import Tensor

from llmbo.registry import Registry
from llmbo.space import CandidateSpace

__all__ = ["SURROGATES", "FittedSurrogate", "Surrogate"]


@dataclass
class FittedSurrogate:
    """A fitted surrogate, ready for acquisition over the whole pool.

    Attributes:
        model: A BoTorch model in eval mode whose inputs are rows of ``features``.
        features: ``N x d`` float64 features of every pool candidate (row ``i`` is
            ``space.ids[i]``), fixed after fitting so the pool is scored in large batches.
        losses: Negative marginal log likelihood per optimisation step (diagnostics).
        fallback: Name of the fallback used if the requested fit failed, else ``None``.
    """

    model: Model
    features: Tensor
    losses: list[float] = field(default_factory=list)
    fallback: str | None = None


class Surrogate(ABC):
    """Maps observations on pool rows to a probabilistic model of the whole pool.

    Subclasses do the expensive, data-independent work once in :meth:`prepare`
    (tokenising, caching frozen layers, computing fingerprints) and train in :meth:`fit`.
    The objective is always maximised here; the optimizer negates values to minimise.
    """

    name: ClassVar[str] = "surrogate"

    def __init__(self) -> None:
        self._prepared_for: str | None = None

    def prepare(self, space: CandidateSpace, *, progress: bool = False) -> None:
        """Pre-compute whatever does not depend on observations (idempotent per space)."""
        key = space.content_hash()
        if self._prepared_for == key:
            return
        self._prepare(space, progress=progress)
        self._prepared_for = key

    def reset(self) -> None:  # noqa: B027
        """Forget fitted state kept between fits (warm starts); prepared caches stay."""

    def _prepare(self, space: CandidateSpace, *, progress: bool) -> None:  # noqa: B027
        """Hook for subclasses; the default does nothing."""

    @abstractmethod
    def fit(self, train_index: Tensor, train_y: Tensor) -> FittedSurrogate | None:
        """Fit on pool rows ``train_index`` (``n``, long) with values ``train_y`` (``n``).

        Returns ``None`` for surrogates without a model (random search).
        Uses the global torch RNG; callers seed it for reproducibility.
        """

    def input_features(self) -> Tensor | None:
        """The candidates' features before any training (``N x d``), for reports' maps;
        ``None`` where there are none. Called on a prepared surrogate."""
        return None

    def fallback(self, space: CandidateSpace) -> Surrogate | None:
        """A simpler surrogate of the same candidates to fit when :meth:`fit` fails
        numerically (``None``: there is none, choose at random).

        Called after a failed fit on a prepared surrogate; the returned one is prepared for
        ``space``. Callers cache it per space: it is built once.
        """
        return None

    def config(self) -> dict[str, Any]:
        """Settings that define this surrogate (recorded in studies)."""
        return {"name": self.name}


#: Surrogate factories by name; see :func:`llmbo.surrogates.make_surrogate`.
SURROGATES: Registry[Any] = Registry("surrogate")


def as_train_tensors(train_index: Tensor, train_y: Tensor) -> tuple[Tensor, Tensor]:
    """Validate and convert training data to ``(long index, float64 n x 1 targets)``."""
    idx = torch.as_tensor(train_index, dtype=torch.long).flatten()
    y = torch.as_tensor(train_y, dtype=torch.float64).flatten()
    if idx.numel() != y.numel():
        raise ValueError(f"{idx.numel()} training rows but {y.numel()} values.")
    if idx.numel() == 0:
        raise ValueError("A surrogate needs at least one observation to fit.")
    return idx, y.unsqueeze(-1)
