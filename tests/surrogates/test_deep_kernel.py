"""LLM deep-kernel GPs (``projection``, ``lora``, soft tokens) on the tiny random BERT."""

from __future__ import annotations

import pytest
import torch
from botorch.models import SingleTaskGP

from conftest import fit_on_cuda, synthetic_pool
from llmbo.encoders.transformer import EncoderConfig
from llmbo.space import CandidateSpace
from llmbo.surrogates import (
    make_surrogate,
    surrogate_config,
    surrogate_config_from_dict,
)
from llmbo.surrogates.base import FittedSurrogate
from llmbo.surrogates.deep_kernel import DeepKernelConfig, DeepKernelGP

N_POOL = 60
TRAIN = torch.arange(0, N_POOL, 4)  # 15 observations


@pytest.fixture(scope="module")
def space() -> CandidateSpace:
    frame = synthetic_pool(seed=0).sample(n=N_POOL, random_state=0).reset_index(drop=True)
    return CandidateSpace(frame, "{color} {animal} in the {place}")


@pytest.fixture(scope="module")
def train_y(space: CandidateSpace) -> torch.Tensor:
    return torch.tensor(space.frame["y"].to_numpy()[TRAIN.numpy()], dtype=torch.float64)


def _surrogate(
    model: str, name: str, steps: int = 40, noise_prior: bool = False, **kwargs: object
) -> DeepKernelGP:
    """``name`` is a surrogate, or ``lora-out``: LoRA on the last layer's ``output`` only."""
    deep = DeepKernelConfig(steps=steps, **kwargs)  # type: ignore[arg-type]
    placement = {"top_module": "output"} if name == "lora-out" else {}
    spec = surrogate_config(
        name="lora" if placement else name,
        encoder=EncoderConfig(model=model, device="cpu"),
        deep_kernel=deep,
        noise_prior=noise_prior,
        **placement,
    )
    surrogate = make_surrogate(spec)
    assert isinstance(surrogate, DeepKernelGP)
    return surrogate


@pytest.fixture(scope="module", params=["projection", "lora", "lora-out"])
def prepared(
    request: pytest.FixtureRequest, tiny_model: str, space: CandidateSpace
) -> DeepKernelGP:
    surrogate = _surrogate(tiny_model, request.param, steps=60)
    surrogate.prepare(space)
    return surrogate


@pytest.fixture(scope="module")
def fitted(prepared: DeepKernelGP, train_y: torch.Tensor) -> FittedSurrogate:
    torch.manual_seed(0)
    return prepared.fit(TRAIN, train_y)


def test_marginal_likelihood_improves_during_fit(fitted: FittedSurrogate) -> None:
    losses = torch.tensor(fitted.losses)
    assert len(losses) == 60 and torch.isfinite(losses).all()
    # Negative MLL per observation: a clear drop, and the end is the best part of the run.
    assert losses[0] - losses[-1] > 0.25
    assert losses[-5:].mean() < losses[:5].mean() - 0.25
    assert losses[-1] <= losses.min() + 0.05


def _training_score(gp: SingleTaskGP, objective: type) -> float:
    """``objective`` (a GPyTorch MLL class) of a fitted GP at its own training data."""
    gp.train()
    try:
        with torch.no_grad():
            x = gp.train_inputs[0]
            return float(objective(gp.likelihood, gp)(gp(x), gp.train_targets))
    finally:
        gp.eval()


def test_final_model_explains_the_data_better_than_the_initial_one(
    prepared: DeepKernelGP, fitted: FittedSurrogate, train_y: torch.Tensor
) -> None:
    """Exact MLL of the returned GP at the training data is higher than at step 0."""
    from gpytorch.mlls import ExactMarginalLogLikelihood

    final = _training_score(fitted.model, ExactMarginalLogLikelihood)
    assert -final < fitted.losses[0] - 0.25


def test_posterior_over_the_pool(fitted: FittedSurrogate, train_y: torch.Tensor) -> None:
    assert isinstance(fitted.model, SingleTaskGP)
    feats = fitted.features
    assert feats.shape == (N_POOL, 64)
    assert feats.dtype == torch.float64 and not feats.requires_grad
    assert feats.min() >= -1.0 and feats.max() <= 1.0
    assert torch.cdist(feats, feats).fill_diagonal_(1.0).min() > 1e-6  # no collapsed rows
    with torch.no_grad():
        post = fitted.model.posterior(feats)
        assert post.mean.shape == (N_POOL, 1)
        assert post.variance.shape == (N_POOL, 1)
        assert (post.variance > 0).all()
        batch = fitted.model.posterior(feats[:7].unsqueeze(-2))
        assert batch.mean.shape == (7, 1, 1)
    # The GP is conditioned on the training rows' (pool) features, in original units.
    torch.testing.assert_close(fitted.model.train_inputs[0], feats[TRAIN])
    with torch.no_grad():
        mean_train = fitted.model.posterior(feats[TRAIN]).mean.squeeze(-1)
    assert torch.corrcoef(torch.stack([mean_train, train_y]))[0, 1] > 0.8
    assert abs(float(mean_train.mean() - train_y.mean())) < 0.5 * float(train_y.std())


@pytest.mark.parametrize("name", ["projection", "lora", "lora-out"])
def test_same_seed_same_fit_other_seed_other_fit(
    tiny_model: str, space: CandidateSpace, train_y: torch.Tensor, name: str
) -> None:
    prepared = _surrogate(tiny_model, name, steps=10)
    prepared.prepare(space)
    torch.manual_seed(123)
    a = prepared.fit(TRAIN, train_y)
    torch.manual_seed(123)
    b = prepared.fit(TRAIN, train_y)
    torch.manual_seed(124)
    c = prepared.fit(TRAIN, train_y)
    assert a.losses == b.losses
    torch.testing.assert_close(a.features, b.features, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(
            a.model.posterior(a.features).mean, b.model.posterior(b.features).mean, rtol=0, atol=0
        )
    assert a.losses != c.losses
    assert (a.features - c.features).abs().max() > 1e-3


def test_lora_trains_adapters_projection_leaves_encoder_frozen(
    prepared: DeepKernelGP, fitted: FittedSurrogate
) -> None:
    lora_b = [p for n, p in prepared.encoder.named_parameters() if "lora_B" in n]
    if prepared.name == "lora":
        assert lora_b and all(torch.count_nonzero(p) > 0 for p in lora_b)
    else:
        assert not lora_b and prepared.encoder.trainable_parameters() == []
    assert prepared.config()["name"] == prepared.name
    assert prepared.config()["deep_kernel"]["steps"] == 60


def test_fit_validates_training_data(prepared: DeepKernelGP) -> None:
    with pytest.raises(ValueError, match="3 training rows but 2 values"):
        prepared.fit(torch.tensor([0, 1, 2]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="at least one observation"):
        prepared.fit(torch.tensor([], dtype=torch.long), torch.tensor([]))


def test_single_observation_fits(tiny_model: str, space: CandidateSpace) -> None:
    surrogate = _surrogate(tiny_model, "projection", steps=5)
    surrogate.prepare(space)
    fitted = surrogate.fit(torch.tensor([3]), torch.tensor([1.5]))
    with torch.no_grad():
        post = fitted.model.posterior(fitted.features)
    assert post.mean.shape == (N_POOL, 1) and torch.isfinite(post.mean).all()


@pytest.mark.parametrize("y_dtype", [torch.float32, torch.float64])
def test_targets_of_either_dtype_give_the_same_fit(
    tiny_model: str, space: CandidateSpace, train_y: torch.Tensor, y_dtype: torch.dtype
) -> None:
    y32 = train_y.to(torch.float32)  # values exactly representable in both dtypes
    surrogate = _surrogate(tiny_model, "projection", steps=10)
    surrogate.prepare(space)
    torch.manual_seed(0)
    reference = surrogate.fit(TRAIN, y32.to(torch.float64))
    torch.manual_seed(0)
    fitted = surrogate.fit(TRAIN, y32.to(y_dtype))
    assert fitted.features.dtype == torch.float64
    assert fitted.model.train_targets.dtype == torch.float64
    assert fitted.losses == reference.losses


def test_no_projection_feeds_pooled_features_scaled(
    tiny_model: str, space: CandidateSpace, train_y: torch.Tensor
) -> None:
    surrogate = _surrogate(tiny_model, "projection", steps=5, projection_dim=None)
    surrogate.prepare(space)
    fitted = surrogate.fit(TRAIN, train_y)
    assert fitted.features.shape == (N_POOL, 32)
    # Closed form of the scaling (GPyTorch's ScaleToBounds): the training rows' global range
    # maps onto [-0.95, 0.95]; other rows use the same map, clamped to that range.
    pooled = surrogate.encoder.embed().to(torch.float64)
    lo, hi = pooled[TRAIN].min(), pooled[TRAIN].max()
    expected = (pooled.clamp(lo, hi) - lo) * (1.9 / (hi - lo)) - 0.95
    torch.testing.assert_close(fitted.features, expected, atol=1e-5, rtol=1e-5)


def test_soft_tokens_static_surrogate_trains_them(
    tiny_model: str, space: CandidateSpace, train_y: torch.Tensor
) -> None:
    spec = surrogate_config(
        name="static",
        encoder=EncoderConfig(model=tiny_model, device="cpu"),
        deep_kernel=DeepKernelConfig(steps=15),
        soft_tokens=2,
    )
    surrogate = make_surrogate(spec)
    assert isinstance(surrogate, DeepKernelGP)
    surrogate.prepare(space)
    soft = surrogate.encoder.soft_tokens
    assert soft is not None
    # fit() re-initialises the soft tokens from the global RNG first, then trains them.
    torch.manual_seed(0)
    surrogate.encoder.reset_parameters()
    initial = soft.detach().clone()
    torch.manual_seed(0)
    fitted = surrogate.fit(TRAIN, train_y)
    assert fitted.features.shape == (N_POOL, 32)  # no projection head for `static`
    assert (soft.detach() - initial).abs().max() > 1e-4
    assert fitted.losses[-1] < fitted.losses[0]


def test_prepare_tokenises_once_per_space(
    tiny_model: str, space: CandidateSpace, train_y: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    calls: list[int] = []
    original = PreTrainedTokenizerBase.__call__

    def counting(self: PreTrainedTokenizerBase, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", counting)
    surrogate = _surrogate(tiny_model, "lora", steps=3)
    surrogate.prepare(space)
    surrogate.prepare(space)  # idempotent for the same space
    surrogate.fit(TRAIN, train_y)
    surrogate.fit(TRAIN[:5], train_y[:5])
    assert len(calls) == 1


def test_spec_round_trips_through_json(tiny_model: str) -> None:
    import json

    spec = surrogate_config(
        name="lora",
        encoder=EncoderConfig(model=tiny_model, device="cpu", pooling="cls"),
        deep_kernel=DeepKernelConfig(steps=7, projection_dim=16),
        soft_tokens=1,
        top_layers=2,
    )
    again = surrogate_config_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_components_side_kernel_joins_the_deep_kernel(tiny_model: str) -> None:
    from botorch.models.kernels.categorical import CategoricalKernel

    surrogate, space, y = _components_hybrid(tiny_model, steps=20)
    torch.manual_seed(0)
    fitted = surrogate.fit(TRAIN, y)
    n_onehot = sum(space.frame[c].nunique() for c in ("color", "animal", "place"))
    # Learned features, then the one-hot blocks and the three codes.
    assert fitted.features.shape == (N_POOL, 8 + n_onehot + 3)
    torch.testing.assert_close(
        fitted.features[:, -3:].round(), fitted.features[:, -3:]
    )  # codes are integers
    categorical = [
        k for k in fitted.model.covar_module.modules() if isinstance(k, CategoricalKernel)
    ]
    assert [k.active_dims.tolist() for k in categorical] == [[8 + n_onehot + c] for c in range(3)]
    assert fitted.losses[-1] < fitted.losses[0]
    assert surrogate.config()["side_features"] == "ComponentsFeaturizer"


def _components_hybrid(
    model: str, **deep: object
) -> tuple[DeepKernelGP, CandidateSpace, torch.Tensor]:
    frame = synthetic_pool(seed=0).sample(n=N_POOL, random_state=0).reset_index(drop=True)
    space = CandidateSpace(frame, "{color} {animal} in the {place}")
    columns = ["color", "animal", "place"]
    spec = surrogate_config(
        name="projection",
        encoder=EncoderConfig(model=model, device="cpu"),
        deep_kernel=DeepKernelConfig(projection_dim=8, **deep),  # type: ignore[arg-type]
        side_features="components",
        side_featurizer={"columns": columns},
    )
    surrogate = make_surrogate(spec)
    assert isinstance(surrogate, DeepKernelGP)
    surrogate.prepare(space)
    y = torch.tensor(frame["y"].to_numpy()[TRAIN.numpy()], dtype=torch.float64)
    return surrogate, space, y


def _kernel_state(kernels: list) -> dict[str, torch.Tensor]:
    """Hyperparameters of ``kernels`` (their active dims left out: the offsets differ)."""
    return {
        f"{i}.{k}": v
        for i, kernel in enumerate(kernels)
        for k, v in kernel.state_dict().items()
        if "active_dims" not in k
    }


def _side_state(model: SingleTaskGP) -> dict[str, torch.Tensor]:
    """Hyperparameters of the side (components) kernel: every kernel after the first."""
    return _kernel_state(list(model.covar_module.kernels[1:]))


def test_fixed_side_fit_starts_from_the_side_only_gp(tiny_model: str) -> None:
    """With no joint steps, the model is the converged side-only GP plus the learned kernel
    at its initial output scale; with steps the side kernel stays there while the rest trains."""
    from llmbo.surrogates.feature_gp import FeatureGP

    surrogate, space, y = _components_hybrid(tiny_model, steps=0, side_fit="fixed")
    torch.manual_seed(0)
    staged = surrogate.fit(TRAIN, y).model

    reference = FeatureGP(surrogate.side_featurizer, kernel="components")  # type: ignore[arg-type]
    reference.prepare(space)
    alone = reference.fit(TRAIN, y).model
    # Same fit on the same data: the side kernel's hyperparameters carry over.
    expected = _kernel_state(list(alone.covar_module.kernels))
    torch.testing.assert_close(_side_state(staged), expected, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(
        staged.likelihood.noise, alone.likelihood.noise, rtol=1e-3, atol=1e-6
    )
    assert float(staged.covar_module.kernels[0].outputscale) == pytest.approx(0.1)

    fixed, _, _ = _components_hybrid(tiny_model, steps=30, side_fit="fixed")
    torch.manual_seed(0)
    trained = fixed.fit(TRAIN, y)
    torch.testing.assert_close(_side_state(trained.model), expected, rtol=1e-3, atol=1e-3)
    assert trained.losses[-1] < trained.losses[0]  # the learned kernel and noise still train
    assert float(trained.model.covar_module.kernels[0].outputscale) != pytest.approx(0.1)
    assert float(trained.model.likelihood.noise) != pytest.approx(float(alone.likelihood.noise))


def test_side_fit_options_are_checked(tiny_model: str) -> None:
    from llmbo.errors import InputError

    with pytest.raises(InputError, match="set side_features too"):
        _surrogate(tiny_model, "projection", side_fit="fixed")
    with pytest.raises(InputError, match="side_fit must be"):
        DeepKernelConfig(side_fit="later")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="deep_outputscale_init"):
        DeepKernelConfig(side_fit="fixed", deep_outputscale_init=0.0)


def test_removed_options_open_at_their_off_value_only() -> None:
    """Studies written before the no-gain variants were removed still load their settings;
    one that switched a removed variant on is refused with a clear message."""
    from llmbo.errors import InputError
    from llmbo.surrogates.deep_kernel import REMOVED_DEEP_KERNEL_OPTIONS

    old = {**DeepKernelConfig(steps=7).to_dict(), **REMOVED_DEEP_KERNEL_OPTIONS}
    assert DeepKernelConfig.from_dict(old) == DeepKernelConfig(steps=7)
    for key, on in (("ensemble", 3), ("frozen_kernel", True), ("objective", "loo")):
        with pytest.raises(InputError, match=f"deep_kernel.{key} was removed"):
            DeepKernelConfig.from_dict({**old, key: on})
    with pytest.raises(InputError, match="side_fit='staged' was removed"):
        DeepKernelConfig.from_dict({**old, "side_fit": "staged"})


def test_failed_side_fit_falls_back_to_joint_training(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from botorch.exceptions.errors import ModelFittingError

    from llmbo.surrogates import deep_kernel

    def fail(*args: object, **kwargs: object) -> None:
        raise ModelFittingError("All attempts to fit the model have failed.")

    monkeypatch.setattr(deep_kernel, "fit_gpytorch_mll", fail)
    surrogate, _, y = _components_hybrid(tiny_model, steps=10, side_fit="fixed")
    torch.manual_seed(0)
    with caplog.at_level("WARNING", logger="llmbo.surrogates"):
        fitted = surrogate.fit(TRAIN, y)
    assert "Side-kernel fit failed" in caplog.text
    # Joint training: the side kernel's parameters were trained, not frozen.
    assert all(p.requires_grad for p in fitted.model.covar_module.kernels[1].parameters())
    assert fitted.losses[-1] < fitted.losses[0]


def test_gp_device_follows_the_setting_and_the_training_set_size(tiny_model: str) -> None:
    from llmbo.errors import InputError
    from llmbo.surrogates.deep_kernel import AUTO_CPU_GP_MAX_TRAIN

    with pytest.raises(InputError, match="gp_device must be"):
        DeepKernelConfig(gp_device="gpu")  # type: ignore[arg-type]
    cpu, accelerator = torch.device("cpu"), torch.device("cuda")
    for choice, small, large in [
        ("auto", cpu, accelerator),
        ("cpu", cpu, cpu),
        ("encoder", accelerator, accelerator),
    ]:
        surrogate = _surrogate(tiny_model, "projection", gp_device=choice)
        assert surrogate.gp_device_for(60) == cpu  # the encoder is on the CPU: nothing moves
        # Only the encoder's device is consulted: pretend it is an accelerator.
        surrogate.encoder.device = accelerator
        assert surrogate.gp_device_for(60) == small
        assert surrogate.gp_device_for(AUTO_CPU_GP_MAX_TRAIN) == small
        assert surrogate.gp_device_for(AUTO_CPU_GP_MAX_TRAIN + 1) == large


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["projection", "lora"])
def test_gp_on_the_cpu_matches_the_gp_on_the_gpu(
    tiny_model: str, space: CandidateSpace, train_y: torch.Tensor, name: str
) -> None:
    on_cpu, on_gpu = (
        fit_on_cuda(tiny_model, space, TRAIN, train_y, name, choice)
        for choice in ("cpu", "encoder")
    )
    assert on_cpu.features.device.type == "cpu" and on_gpu.features.device.type == "cuda"
    torch.testing.assert_close(
        torch.tensor(on_cpu.losses), torch.tensor(on_gpu.losses), rtol=1e-4, atol=1e-4
    )
    with torch.no_grad():
        mean_cpu = on_cpu.model.posterior(on_cpu.features).mean
        mean_gpu = on_gpu.model.posterior(on_gpu.features).mean.cpu()
    torch.testing.assert_close(mean_cpu, mean_gpu, rtol=1e-3, atol=1e-3)


def test_noise_prior_reaches_the_deep_kernel_gp(
    tiny_model: str, space: CandidateSpace, train_y: torch.Tensor
) -> None:
    surrogate = _surrogate(tiny_model, "projection", steps=3, noise_prior=True)
    assert surrogate.noise_prior
    surrogate.prepare(space)
    likelihood = surrogate.fit(TRAIN, train_y).model.likelihood
    assert [name for name, *_ in likelihood.named_priors()] == ["noise_covar.noise_prior"]
    assert float(likelihood.noise.detach()) >= surrogate.config_.noise_lower_bound
