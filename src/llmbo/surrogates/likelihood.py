"""The Gaussian likelihood of llmbo's GPs."""

from __future__ import annotations

import torch
from botorch.models.utils.gpytorch_modules import get_gaussian_likelihood_with_lognormal_prior
from gpytorch.constraints import GreaterThan
from gpytorch.likelihoods import GaussianLikelihood

__all__ = ["gaussian_likelihood"]


def gaussian_likelihood(
    noise_lower_bound: float,
    *,
    noise_prior: bool = False,
    batch_shape: torch.Size | None = None,
) -> GaussianLikelihood:
    """Homoskedastic Gaussian likelihood with the noise variance bounded below.

    Args:
        noise_lower_bound: Smallest noise variance (standardised units).
        noise_prior: Put BoTorch's default prior on the noise variance, LogNormal(-4, 1)
            (``get_gaussian_likelihood_with_lognormal_prior``; Hvarfner et al., 2024), and
            start the noise at its mode, e^-5 = 0.0067 (twice the floor if the floor is
            higher), instead of GPyTorch's 0.69. Without it (llmbo's default) the marginal likelihood
            alone sets the noise: on the reaction benchmarks a GP on frozen MiniLM embeddings
            then often explains few yields as noise and explores, where the prior holds the
            noise near 0.007 and the GP interpolates (``research/LOG.md``, eleventh round).
        batch_shape: Batch shape of the noise (ensembles).
    """
    batch_shape = torch.Size() if batch_shape is None else batch_shape
    constraint = GreaterThan(noise_lower_bound)
    if not noise_prior:
        return GaussianLikelihood(noise_constraint=constraint, batch_shape=batch_shape)
    likelihood = get_gaussian_likelihood_with_lognormal_prior(batch_shape=batch_shape)
    likelihood.noise_covar.register_constraint("raw_noise", constraint)
    # Start at the prior's mode, or above the floor if the floor is set higher than it.
    mode = float(likelihood.noise_covar.noise_prior.mode)
    likelihood.noise = max(mode, 2.0 * noise_lower_bound)
    return likelihood
