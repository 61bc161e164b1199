"""Random search: no model; the acquisition step draws uniformly from the remaining pool."""

from __future__ import annotations

from torch import Tensor

from llmbo.surrogates.base import FittedSurrogate, Surrogate


class RandomSurrogate(Surrogate):
    """The random-search baseline."""

    name = "random"

    def fit(self, train_index: Tensor, train_y: Tensor) -> FittedSurrogate | None:
        return None
