"""Exact GPs on fixed candidate features: frozen LLM embeddings, fingerprints, one-hot."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior
from torch import Tensor

from llmbo.encoders.base import Featurizer
from llmbo.errors import InputError
from llmbo.space import CandidateSpace
from llmbo.surrogates.base import FittedSurrogate, Surrogate, as_train_tensors
from llmbo.surrogates.likelihood import gaussian_likelihood
from llmbo.surrogates.numerics import robust_cholesky

__all__ = ["FIXED_FEATURE_FALLBACK_NOISE", "FeatureGP", "FixedFeatures", "fixed_feature_gp"]

#: Noise floor (standardised units) of a fixed-feature fallback GP: more regularised than
#: the surrogates' default, since the fallback runs when the data were hard to fit.
FIXED_FEATURE_FALLBACK_NOISE = 1e-3

KernelName = Literal["matern", "matern-ard", "tanimoto", "components"]
KERNELS = ("matern", "matern-ard", "tanimoto", "components")


class FeatureGP(Surrogate):
    """A BoTorch ``SingleTaskGP`` on features computed once per pool.

    Args:
        featurizer: Computes the ``N x d`` features of the pool.
        kernel: ``"matern"`` (Matérn-5/2 with one lengthscale under BoTorch's
            dimension-scaled log-normal prior, and an output scale), ``"matern-ard"`` (one
            lengthscale per feature, BoTorch's default prior; for few features such as
            one-hot components) — both on inputs normalised to the pool's bounds — or
            ``"tanimoto"`` (for fingerprints and other non-negative features), or
            ``"components"`` (Tanimoto plus an additive categorical kernel per component, on
            :class:`~llmbo.encoders.fingerprints.ComponentsFeaturizer` features; see
            :func:`~llmbo.surrogates.kernels.component_kernel`).
        name: Label of this surrogate (e.g. ``"drfp"``).
        noise_lower_bound: Smallest noise variance (standardised units).
        noise_prior: BoTorch's default LogNormal(-4, 1) prior on the noise variance, with
            the noise starting at its mode (see
            :func:`~llmbo.surrogates.likelihood.gaussian_likelihood`); off by default.
    """

    def __init__(
        self,
        featurizer: Featurizer,
        *,
        kernel: KernelName = "matern",
        name: str = "feature_gp",
        noise_lower_bound: float = 1e-4,
        noise_prior: bool = False,
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
        if kernel == "components" and not hasattr(featurizer, "n_components_"):
            raise InputError(
                "kernel='components' reads one-hot blocks followed by component codes: use the "
                "'components' featurizer (ComponentsFeaturizer)."
            )
        self.featurizer = featurizer
        self.kernel = kernel
        self.name = name  # type: ignore[misc]
        self.noise_lower_bound = noise_lower_bound
        self.noise_prior = noise_prior
        self.features_: Tensor | None = None

    def _prepare(self, space: CandidateSpace, *, progress: bool) -> None:
        feats = self.featurizer.featurize(space).to(torch.float64)
        if feats.ndim != 2 or feats.shape[0] != len(space):
            raise ValueError(
                f"Featurizer returned shape {tuple(feats.shape)} for {len(space)} candidates."
            )
        self.features_ = feats

    def _covar(self, d: int) -> Kernel:
        if self.kernel == "components":
            from llmbo.surrogates.kernels import component_kernel

            return component_kernel(d, int(self.featurizer.n_components_))  # type: ignore[attr-defined]
        if self.kernel == "tanimoto":
            from llmbo.surrogates.kernels import TanimotoKernel

            return ScaleKernel(TanimotoKernel())
        if self.kernel == "matern-ard":
            return get_covar_module_with_dim_scaled_prior(ard_num_dims=d, use_rbf_kernel=False)
        # One lengthscale with BoTorch's dimension-scaled log-normal prior: fitting hundreds of
        # ARD lengthscales to tens of points (e.g. 384-d embeddings) is slow and overfits.
        prior = LogNormalPrior(loc=math.sqrt(2) + 0.5 * math.log(d), scale=math.sqrt(3))
        kernel = MaternKernel(
            nu=2.5, lengthscale_prior=prior, lengthscale_constraint=GreaterThan(2.5e-2)
        )
        kernel.lengthscale = prior.mode
        return ScaleKernel(kernel)

    def input_features(self) -> Tensor | None:
        """The fixed features (they are not trained)."""
        return self.features_

    def fallback_features(self) -> tuple[Tensor, KernelName]:
        """Features and kernel of a simpler GP to fall back on when a fit fails.

        The same features and kernel, except for ``"components"``: its Tanimoto part on the
        one-hot blocks (the trailing codes dropped), which any column subset keeps valid.
        """
        if self.features_ is None:
            raise RuntimeError("Call prepare(space) before fallback_features().")
        if self.kernel == "components":
            n_codes = int(self.featurizer.n_components_)  # type: ignore[attr-defined]
            return self.features_[:, :-n_codes], "tanimoto"
        return self.features_, self.kernel  # type: ignore[return-value]

    def fallback(self, space: CandidateSpace) -> Surrogate | None:
        """The same features (for ``components``: its Tanimoto part) with a higher noise
        floor and no noise prior; constant columns dropped."""
        if self.features_ is None:
            return None
        features, kernel = self.fallback_features()
        return fixed_feature_gp(features, space, kernel=kernel, name=f"{self.name}-regularised")

    def fit(self, train_index: Tensor, train_y: Tensor) -> FittedSurrogate:
        if self.features_ is None:
            raise RuntimeError("Call prepare(space) before fit().")
        idx, y = as_train_tensors(train_index, train_y)
        X = self.features_
        d = X.shape[-1]
        input_transform = None
        if self.kernel not in ("tanimoto", "components"):
            lo, hi = X.min(0).values, X.max(0).values
            hi = torch.where(hi > lo, hi, lo + 1.0)  # constant columns: avoid a zero range
            bounds = torch.stack([lo, hi])
            input_transform = Normalize(d=d, bounds=bounds)
        model = SingleTaskGP(
            X[idx],
            y,
            covar_module=self._covar(d),
            likelihood=gaussian_likelihood(self.noise_lower_bound, noise_prior=self.noise_prior),
            input_transform=input_transform,
            outcome_transform=Standardize(m=1) if y.shape[0] > 1 else None,
        )
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        with robust_cholesky():
            fit_gpytorch_mll(mll)
        model.eval()
        return FittedSurrogate(model=model, features=X)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kernel": self.kernel,
            "featurizer": type(self.featurizer).__name__,
            "noise_prior": self.noise_prior,
        }


class FixedFeatures(Featurizer):
    """Features computed once elsewhere (e.g. the input of a fallback GP)."""

    def __init__(self, features: Tensor) -> None:
        self.features = features

    def featurize(self, space: CandidateSpace) -> Tensor:
        return self.features


def informative_columns(features: Tensor) -> Tensor | None:
    """``N x d'`` float64 features without constant columns; ``None`` if nothing is left.

    Constant columns carry no information and make input normalisation divide by zero.
    """
    x = features.detach().to("cpu", torch.float64)
    if x.ndim != 2 or not torch.isfinite(x).all():
        return None
    spread = x.max(0).values - x.min(0).values
    keep = spread > 1e-12 * x.abs().max(0).values.clamp_min(1.0)
    return x[:, keep] if bool(keep.any()) else None


def fixed_feature_gp(
    features: Tensor, space: CandidateSpace, *, kernel: KernelName, name: str
) -> FeatureGP | None:
    """A prepared, regularised GP on fixed ``features`` (a surrogate's fallback), or ``None``
    when no informative column is left."""
    informative = informative_columns(features)
    if informative is None:
        return None
    gp = FeatureGP(
        FixedFeatures(informative),
        kernel=kernel,
        name=name,
        noise_lower_bound=FIXED_FEATURE_FALLBACK_NOISE,
    )
    gp.prepare(space)
    return gp
