"""The Gaussian likelihood of llmbo's GPs, with and without BoTorch's noise prior."""

from __future__ import annotations

import math

import pytest
import torch
from botorch.models import SingleTaskGP
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior

from llmbo.encoders.transformer import EncoderConfig
from llmbo.surrogates import (
    make_surrogate,
    surrogate_config,
    surrogate_config_from_dict,
)
from llmbo.surrogates.likelihood import gaussian_likelihood

GP_SURROGATES = ["static", "projection", "lora", "drfp", "morgan", "onehot", "components"]


def test_without_the_prior_only_the_floor() -> None:
    likelihood = gaussian_likelihood(1e-3)
    assert list(likelihood.named_priors()) == []
    assert likelihood.noise_covar.raw_noise_constraint.lower_bound == pytest.approx(1e-3)


@pytest.mark.parametrize("batch_shape", [torch.Size(), torch.Size([3])])
def test_prior_floor_start_and_marginal_likelihood(batch_shape: torch.Size) -> None:
    likelihood = gaussian_likelihood(1e-3, noise_prior=True, batch_shape=batch_shape)
    constraint = likelihood.noise_covar.raw_noise_constraint
    assert constraint.enforced and constraint.lower_bound == pytest.approx(1e-3)
    noise = likelihood.noise.detach()
    assert noise.shape == (*batch_shape, 1)
    torch.testing.assert_close(noise, torch.full_like(noise, math.exp(-5.0)))
    # the floor holds under the prior: a very negative raw value maps onto it
    likelihood.noise_covar.raw_noise.data.fill_(-30.0)
    assert float(likelihood.noise.detach().min()) == pytest.approx(1e-3)
    likelihood.noise = math.exp(-5.0)

    # The marginal likelihood adds the prior's log density per observation and member.
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 2, generator=gen, dtype=torch.float64).expand(*batch_shape, 8, 2)
    y = torch.randn(*batch_shape, 8, 1, generator=gen, dtype=torch.float64)
    values = []
    for prior in (True, False):
        torch.manual_seed(0)
        lik = gaussian_likelihood(1e-3, noise_prior=prior, batch_shape=batch_shape)
        lik.noise = math.exp(-5.0)
        gp = SingleTaskGP(x, y, likelihood=lik).to(torch.float64)
        mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
        gp.train()
        values.append(mll(gp(*gp.train_inputs), gp.train_targets).detach())
    expected = LogNormalPrior(-4.0, 1.0).log_prob(torch.tensor(math.exp(-5.0))) / 8
    torch.testing.assert_close(values[0] - values[1], expected.expand_as(values[0]).double())


def test_a_floor_above_the_mode_starts_above_the_floor() -> None:
    likelihood = gaussian_likelihood(0.01, noise_prior=True)
    assert float(likelihood.noise) == pytest.approx(0.02)


@pytest.mark.parametrize("name", GP_SURROGATES)
def test_every_gp_surrogate_takes_the_setting(name: str, tiny_model: str) -> None:
    encoder = EncoderConfig(model=tiny_model, device="cpu")
    model = {"encoder": encoder} if name in ("static", "projection", "lora") else {}
    for flag in (False, True):
        surrogate = make_surrogate(surrogate_config(name=name, noise_prior=flag, **model))
        assert surrogate.noise_prior is flag  # type: ignore[attr-defined]
    soft = surrogate_config(name="static", encoder=encoder, soft_tokens=1, noise_prior=True)
    assert make_surrogate(soft).noise_prior  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"random surrogate has no setting\(s\) \['noise_prior'\]"):
        surrogate_config(name="random", noise_prior=True)


def test_spec_round_trips_and_old_specs_load() -> None:
    spec = surrogate_config(name="components", noise_prior=True)
    assert surrogate_config_from_dict(spec.to_dict()) == spec
    old = surrogate_config(name="components").to_dict()
    del old["noise_prior"]  # a study stored before the setting existed
    assert surrogate_config_from_dict(old).noise_prior is False
