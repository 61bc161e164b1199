"""The reaction benchmark protocol: run settings and the seeded initial design.

See DESIGN.md, "Benchmark protocol": 10 initial candidates drawn uniformly from those with
yield at or below the pool median, then 50 sequential iterations maximising yield.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmbo.errors import InputError

__all__ = ["ProtocolConfig", "initial_design"]


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of one benchmark run (defaults are the protocol's).

    Attributes:
        n_initial: Size of the random initial design.
        iterations: Number of BO iterations after the initial design.
        batch_size: Candidates proposed per iteration.
        maximize: Whether a larger value (yield) is better.
    """

    n_initial: int = 10
    iterations: int = 50
    batch_size: int = 1
    maximize: bool = True

    def __post_init__(self) -> None:
        for name in ("n_initial", "iterations", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"ProtocolConfig.{name} must be an integer, got {value!r}.")
        if self.n_initial < 1 or self.iterations < 0 or self.batch_size < 1:
            raise InputError(
                "ProtocolConfig needs n_initial >= 1, iterations >= 0 and batch_size >= 1; got "
                f"{self.n_initial}, {self.iterations}, {self.batch_size}."
            )

    @property
    def budget(self) -> int:
        """Total number of evaluations: initial design plus all iterations."""
        return self.n_initial + self.iterations * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (round-trips through :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProtocolConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"Unknown ProtocolConfig field(s) {unknown}; known: {sorted(known)}.")
        return cls(**data)


def initial_design(
    values: Sequence[float] | np.ndarray, n: int, seed: int, *, maximize: bool = True
) -> np.ndarray:
    """Row indices of the protocol's initial design.

    ``n`` rows drawn uniformly without replacement, with ``np.random.default_rng(seed)``,
    from the candidates whose value is at or below the pool median (at or above it when
    ``maximize=False``), so that the optimiser starts from unremarkable reactions.

    Args:
        values: Value of every pool candidate, shape ``N``.
        n: Number of rows to draw.
        seed: Seed of the draw; the same seed gives the same rows.

    Returns:
        int64 array of ``n`` distinct row indices into ``values``, in draw order.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"values must be a non-empty 1-D array, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise InputError("values contains NaN or infinite entries.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"n must be a non-negative integer, got {n!r}.")
    median = np.median(arr)
    eligible = np.flatnonzero(arr <= median if maximize else arr >= median)
    if eligible.size < n:
        side = "at or below" if maximize else "at or above"
        raise InputError(
            f"Only {eligible.size} of {arr.size} candidates have a value {side} the median "
            f"({median:g}), fewer than the {n} initial points requested; lower n."
        )
    rng = np.random.default_rng(seed)
    return rng.choice(eligible, size=int(n), replace=False).astype(np.int64)
