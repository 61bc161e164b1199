"""Numerical settings shared by the GP surrogates (context managers, never globals).

Also names the exceptions that mean "the linear algebra broke" (a matrix that is not
positive definite, NaNs in features or in the fit) as opposed to "the code is wrong":
the optimizer catches exactly these to fall back to a simpler model (see
:meth:`llmbo.optimizer.Optimizer`), and lets every other exception through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import gpytorch
import torch
from botorch.exceptions.errors import InputDataError, ModelFittingError
from linear_operator.utils.errors import NanError, NotPSDError

from llmbo.errors import FitError

__all__ = ["NUMERICAL_ERRORS", "robust_cholesky"]

#: Failures of GP fitting or prediction that a simpler model may avoid: a surrogate that
#: gave up (:class:`~llmbo.errors.FitError`), a covariance that is not positive definite
#: even with jitter, NaNs in features or in the optimisation, a failed MLL fit, or a
#: failed torch linear-algebra call.
NUMERICAL_ERRORS: tuple[type[Exception], ...] = (
    FitError,
    NotPSDError,
    NanError,
    ModelFittingError,
    InputDataError,
    torch.linalg.LinAlgError,
)


@contextlib.contextmanager
def robust_cholesky(jitter: float = 1e-6, max_tries: int = 6) -> Iterator[None]:
    """Exact (Cholesky) GP algebra with escalating jitter on not-positive-definite matrices.

    Args:
        jitter: First jitter added to the diagonal of a float64 matrix (float32 gets 100x).
            GPyTorch multiplies it by ten on each retry, up to ``max_tries`` times.
        max_tries: Attempts before GPyTorch raises ``NotPSDError``.
    """
    with (
        gpytorch.settings.cholesky_jitter(float_value=jitter * 100, double_value=jitter),
        gpytorch.settings.cholesky_max_tries(max_tries),
        gpytorch.settings.max_cholesky_size(100_000),
    ):
        yield
