"""Initial designs: which candidates a campaign measures before the model proposes any.

:func:`initial_design` is the benchmark protocol's (DESIGN.md, "Benchmark protocol"):
candidates drawn uniformly from the worse half of the pool (values at or below the median;
at or above it when the target is minimised), so that a simulated campaign
(``llmbo run --benchmark``, :mod:`llmbo.benchmarks`) starts from unremarkable ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmbo.errors import InputError

__all__ = ["initial_design"]


def initial_design(
    values: Sequence[float] | np.ndarray, n: int, seed: int, *, maximize: bool = True
) -> np.ndarray:
    """Row indices of the protocol's initial design.

    ``n`` rows drawn uniformly without replacement, with ``np.random.default_rng(seed)``,
    from the candidates whose value is at or below the pool median (at or above it when
    ``maximize=False``), so that the optimiser starts from unremarkable candidates.

    Args:
        values: Value of every pool candidate, shape ``N``.
        n: Number of rows to draw.
        seed: Seed of the draw; the same seed gives the same rows.
        maximize: Whether larger values are better (``False``: draw from the upper half).

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
