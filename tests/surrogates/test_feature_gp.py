"""Exact GPs on fixed features (Matérn and Tanimoto), and the ``static`` LLM surrogate."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from llmbo.encoders.base import Featurizer
from llmbo.encoders.transformer import EncoderConfig, TextEncoder
from llmbo.space import CandidateSpace
from llmbo.surrogates import (
    make_surrogate,
    surrogate_config,
)
from llmbo.surrogates.feature_gp import FeatureGP
from llmbo.surrogates.kernels import tanimoto_similarity

DTYPES = [torch.float32, torch.float64]


class FixedFeatures(Featurizer):
    """Returns a given matrix (in the given dtype) for any space of matching size."""

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features

    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        return self.features


def _space(n: int) -> CandidateSpace:
    return CandidateSpace(pd.DataFrame({"k": range(n)}), "candidate {k}")


def _posterior(fitted, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        post = fitted.model.posterior(X)
    return post.mean.squeeze(-1), post.variance.squeeze(-1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matern_interpolates_a_smooth_function(dtype: torch.dtype) -> None:
    x = torch.linspace(0, 1, 41, dtype=torch.float64).unsqueeze(-1)
    y_all = torch.sin(2 * math.pi * x.squeeze(-1)) + 0.5 * x.squeeze(-1)
    surrogate = FeatureGP(FixedFeatures(x.to(dtype)), kernel="matern")
    surrogate.prepare(_space(41))
    assert surrogate.features_ is not None and surrogate.features_.dtype == torch.float64
    train = torch.arange(0, 41, 4)  # 11 points
    fitted = surrogate.fit(train, y_all[train])
    assert fitted.features.dtype == torch.float64 and fitted.features.shape == (41, 1)
    mean, var = _posterior(fitted, fitted.features)
    # Noise-free data: the fitted noise is tiny and the mean goes through the data.
    noise = float(fitted.model.likelihood.noise)
    assert noise < 1e-2
    torch.testing.assert_close(mean[train], y_all[train], atol=2e-2, rtol=0)
    assert float(var[train].max()) < 1e-2 * float(y_all.var())
    # Between the data it predicts the function well, and is less certain there.
    held_out = torch.tensor([i for i in range(41) if i % 4])
    assert float((mean[held_out] - y_all[held_out]).abs().max()) < 0.1
    assert float(var[held_out].mean()) > float(var[train].mean())


def _random_fingerprints(n: int, d: int, seed: int, clusters: int = 4) -> torch.Tensor:
    """Distinct bit vectors in a few clusters (prototypes with a few bits flipped)."""
    gen = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(clusters, d, generator=gen) < 0.3).to(torch.float64)
    rows: list[tuple[float, ...]] = []
    while len(rows) < n:
        fp = prototypes[len(rows) % clusters].clone()
        flip = torch.randperm(d, generator=gen)[:3]
        fp[flip] = 1.0 - fp[flip]
        if fp.sum() > 0 and tuple(fp.tolist()) not in rows:
            rows.append(tuple(fp.tolist()))
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanimoto_interpolates_a_function_of_similarities(dtype: torch.dtype) -> None:
    fps = _random_fingerprints(40, 48, seed=0)
    # A function in the kernel's RKHS: a weighted sum of similarities to four references.
    weights = torch.tensor([1.0, -0.5, 2.0, 1.0], dtype=torch.float64)
    y_all = 3.0 + tanimoto_similarity(fps, fps[[0, 11, 22, 33]]) @ weights
    surrogate = FeatureGP(FixedFeatures(fps.to(dtype)), kernel="tanimoto", name="fp")
    surrogate.prepare(_space(40))
    train = torch.arange(0, 40, 2)
    fitted = surrogate.fit(train, y_all[train])
    mean, var = _posterior(fitted, fitted.features)
    assert float(fitted.model.likelihood.noise) < 1e-2
    torch.testing.assert_close(mean[train], y_all[train], atol=1e-2 * float(y_all.std()), rtol=0)
    # Held-out points: the posterior mean is the GP regression closed form and correlates.
    held_out = torch.arange(1, 40, 2)
    assert torch.corrcoef(torch.stack([mean[held_out], y_all[held_out]]))[0, 1] > 0.5
    assert float(var[held_out].mean()) > float(var[train].mean())
    assert surrogate.config() == {
        "name": "fp",
        "kernel": "tanimoto",
        "featurizer": "FixedFeatures",
        "noise_prior": False,
    }


def test_tanimoto_posterior_mean_matches_closed_form() -> None:
    """With the fitted hyperparameters, the posterior mean is the textbook formula."""
    fps = _random_fingerprints(12, 16, seed=3)
    y = torch.linspace(-1, 2, 12, dtype=torch.float64) ** 2
    surrogate = FeatureGP(FixedFeatures(fps), kernel="tanimoto")
    surrogate.prepare(_space(12))
    train = torch.arange(8)
    fitted = surrogate.fit(train, y[train])
    gp = fitted.model
    s2 = float(gp.covar_module.outputscale)
    c = float(gp.mean_module.constant)
    noise = float(gp.likelihood.noise)
    # Undo the outcome standardisation by hand.
    mu_y, sd_y = y[train].mean(), y[train].std()
    z = (y[train] - mu_y) / sd_y
    K = s2 * tanimoto_similarity(fps[train], fps[train]) + noise * torch.eye(8, dtype=torch.float64)
    k_star = s2 * tanimoto_similarity(fps[8:], fps[train])
    expected = mu_y + sd_y * (c + k_star @ torch.linalg.solve(K, z - c))
    mean, _ = _posterior(fitted, fps[8:])
    torch.testing.assert_close(mean, expected, atol=1e-6, rtol=1e-6)


def test_feature_gp_errors() -> None:
    with pytest.raises(ValueError, match="kernel must be"):
        FeatureGP(FixedFeatures(torch.zeros(3, 1)), kernel="rbf")  # type: ignore[arg-type]
    surrogate = FeatureGP(FixedFeatures(torch.zeros(3, 2)))
    with pytest.raises(RuntimeError, match="prepare"):
        surrogate.fit(torch.tensor([0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"shape \(3, 2\) for 4 candidates"):
        surrogate.prepare(_space(4))


def test_static_surrogate_uses_frozen_embeddings(tiny_model: str) -> None:
    from conftest import synthetic_pool

    frame = synthetic_pool().sample(n=40, random_state=1).reset_index(drop=True)
    space = CandidateSpace(frame, "{color} {animal} in the {place}")
    config = EncoderConfig(model=tiny_model, device="cpu")
    surrogate = make_surrogate(surrogate_config(name="static", encoder=config))
    assert isinstance(surrogate, FeatureGP) and surrogate.kernel == "matern"
    surrogate.prepare(space)
    expected = TextEncoder(config).prepare(space.texts).embed().to(torch.float64)
    assert surrogate.features_ is not None
    torch.testing.assert_close(surrogate.features_, expected)
    train = torch.arange(0, 40, 2)
    y = torch.tensor(frame["y"].to_numpy())
    fitted = surrogate.fit(train, y[train])
    mean, var = _posterior(fitted, fitted.features)
    assert mean.shape == (40,) and (var > 0).all()
    assert torch.corrcoef(torch.stack([mean[train], y[train]]))[0, 1] > 0.9


def test_components_kernel_learns_which_component_matters() -> None:
    """Additive data in two components, one of which has no effect: the per-component
    weights tell them apart and unseen combinations are predicted from their parts."""
    from llmbo.encoders.fingerprints import ComponentsFeaturizer

    frame = pd.DataFrame(
        [(f"ligand{i}", f"base{j}") for i in range(6) for j in range(5)],
        columns=["ligand", "base"],
    )
    effect = torch.tensor([0.0, 2.0, -1.0, 3.0, 0.5, -2.0], dtype=torch.float64)
    y_all = effect.repeat_interleave(5)  # y depends on the ligand only
    space = CandidateSpace(frame, "{ligand} with {base}")
    surrogate = make_surrogate(
        surrogate_config(name="components", featurizer={"columns": ["ligand", "base"]})
    )
    assert isinstance(surrogate, FeatureGP) and surrogate.kernel == "components"
    assert isinstance(surrogate.featurizer, ComponentsFeaturizer)
    surrogate.prepare(space)
    # Each ligand seen with two bases; the other 18 combinations are held out.
    train = torch.tensor([5 * i + j for i in range(6) for j in ((i % 5), (i + 2) % 5)])
    fitted = surrogate.fit(train, y_all[train])
    per_component = fitted.model.covar_module.kernels[1].base_kernel.kernels
    ligand_scale, base_scale = (float(k.outputscale.detach()) for k in per_component)
    assert ligand_scale > 10 * base_scale
    held_out = torch.tensor([i for i in range(30) if i not in set(train.tolist())])
    mean, _ = _posterior(fitted, fitted.features[held_out])
    assert float((mean - y_all[held_out]).abs().max()) < 0.25


def test_components_kernel_needs_component_features() -> None:
    with pytest.raises(ValueError, match="'components' featurizer"):
        FeatureGP(FixedFeatures(torch.zeros(3, 4)), kernel="components")


def test_noise_prior_holds_the_noise_down_on_data_without_signal() -> None:
    # Yields unrelated to the features: by marginal likelihood alone the GP calls them noise;
    # BoTorch's LogNormal(-4, 1) prior keeps the noise variance near its mode instead.
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(30, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(30, generator=gen, dtype=torch.float64)
    train = torch.arange(12)
    noise = {}
    for prior in (False, True):
        surrogate = FeatureGP(FixedFeatures(x), kernel="matern", noise_prior=prior)
        surrogate.prepare(_space(30))
        likelihood = surrogate.fit(train, y[train]).model.likelihood
        priors = [name for name, *_ in likelihood.named_priors()]
        assert priors == (["noise_covar.noise_prior"] if prior else [])
        noise[prior] = float(likelihood.noise.detach())
        assert noise[prior] >= surrogate.noise_lower_bound
    assert noise[False] > 0.5
    assert noise[True] < 0.1


def test_noise_prior_is_a_spec_setting(tiny_model: str) -> None:
    spec = surrogate_config(
        name="static", encoder=EncoderConfig(model=tiny_model), noise_prior=True
    )
    surrogate = make_surrogate(spec)
    assert isinstance(surrogate, FeatureGP) and surrogate.noise_prior
    assert not make_surrogate(surrogate_config(name="drfp")).noise_prior  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="noise_prior must be true or false"):
        surrogate_config(name="static", noise_prior="yes")  # type: ignore[arg-type]
