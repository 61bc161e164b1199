"""Numerical settings shared by the GP surrogates (context managers, never globals)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import gpytorch


@contextlib.contextmanager
def robust_cholesky(jitter: float = 1e-6, max_tries: int = 6) -> Iterator[None]:
    """Exact (Cholesky) GP algebra with escalating jitter on not-positive-definite matrices."""
    with (
        gpytorch.settings.cholesky_jitter(float_value=jitter * 100, double_value=jitter),
        gpytorch.settings.cholesky_max_tries(max_tries),
        gpytorch.settings.max_cholesky_size(100_000),
    ):
        yield
