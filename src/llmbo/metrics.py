"""Metrics of a campaign against a pool whose values are all known (DESIGN.md, "Benchmark
protocol"): top-fraction coverage, best so far, the iteration the best was found at.

All functions take plain arrays of measured values, so they apply to any optimiser's
history, not just llmbo's; ``llmbo run`` and the benchmarks (:mod:`llmbo.benchmarks`) use them.
Each takes ``maximize=False`` for a target that is minimised (the best values are the lowest).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmbo.errors import InputError

__all__ = ["best_so_far", "iteration_of_max", "mean_and_sem", "top_fraction_coverage"]

ArrayLike = Sequence[float] | np.ndarray


def _as_1d(values: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"{what} must be one-dimensional, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinite values.")
    return arr


def top_fraction_coverage(
    evaluated_values: ArrayLike,
    pool_values: ArrayLike,
    fraction: float = 0.05,
    *,
    maximize: bool = True,
) -> float:
    """Share of the pool's top candidates that were evaluated.

    With ``t = np.quantile(pool_values, 1 - fraction)`` (numpy's default linear
    interpolation), coverage = #(evaluated >= t) / #(pool >= t). ``evaluated_values``
    must be the values of distinct pool candidates (each evaluated once). With
    ``maximize=False`` the top candidates are the lowest: the same on negated values.

    Args:
        evaluated_values: Values of the evaluated candidates, shape ``n``.
        pool_values: Values of every candidate in the pool, shape ``N``.
        fraction: Size of the top group, in (0, 1]; 0.05 gives top-5 % coverage.
        maximize: Whether larger values are better.

    Returns:
        A number in [0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}.")
    pool = _as_1d(pool_values, "pool_values")
    if pool.size == 0:
        raise InputError("pool_values is empty.")
    evaluated = _as_1d(evaluated_values, "evaluated_values")
    if evaluated.size > pool.size:
        raise InputError(
            f"{evaluated.size} evaluated values for a pool of {pool.size}: pass each evaluated "
            "candidate once."
        )
    if not maximize:
        pool, evaluated = -pool, -evaluated
    threshold = np.quantile(pool, 1.0 - fraction)
    n_top = int(np.count_nonzero(pool >= threshold))
    return int(np.count_nonzero(evaluated >= threshold)) / n_top


def best_so_far(values: ArrayLike, *, maximize: bool = True) -> np.ndarray:
    """Running best of values in evaluation order: ``out[i] = max(values[: i + 1])``.

    Returns a float64 array of the same length (running minimum if ``maximize=False``).
    """
    arr = _as_1d(values, "values")
    return np.maximum.accumulate(arr) if maximize else np.minimum.accumulate(arr)


def iteration_of_max(
    values_in_order: ArrayLike,
    pool_max: float,
    n_initial: int,
    *,
    batch_size: int = 1,
    rtol: float = 1e-9,
    maximize: bool = True,
) -> int | None:
    """BO iteration at which the pool's best value was first evaluated.

    The first ``n_initial`` values are the initial design; the values after them come in
    BO iterations of ``batch_size``. Returns 0 if the best value is among the initial
    points, ``k`` (1-based) if it was first seen in iteration ``k``, and ``None`` if it
    was never evaluated. Values within ``rtol`` (relative) of ``pool_max`` count as equal.
    With ``maximize=False``, ``pool_max`` is the pool's minimum (its best value).
    """
    if n_initial < 0 or batch_size < 1:
        raise InputError(f"Need n_initial >= 0 and batch_size >= 1, got {n_initial}, {batch_size}.")
    arr = _as_1d(values_in_order, "values_in_order")
    beyond = arr >= pool_max if maximize else arr <= pool_max
    hit = np.flatnonzero(np.isclose(arr, pool_max, rtol=rtol, atol=0.0) | beyond)
    if hit.size == 0:
        return None
    first = int(hit[0])
    if first < n_initial:
        return 0
    return (first - n_initial) // batch_size + 1


def mean_and_sem(values: ArrayLike, axis: int = 0) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Mean and standard error of the mean (``std(ddof=1) / sqrt(n)``) along ``axis``.

    Typical use: a ``seeds x iterations`` array of best-so-far curves, or one number per
    seed. With a single observation the standard error is NaN. Scalars come back as floats.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[axis] == 0:
        raise InputError("mean_and_sem needs at least one value along the chosen axis.")
    n = arr.shape[axis]
    mean = arr.mean(axis=axis)
    sem = arr.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
    if np.ndim(mean) == 0:
        return float(mean), float(sem)
    return mean, sem
