"""Acquisition over a finite pool, on hand-built GPs whose posteriors are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from botorch.models import SingleTaskGP
from gpytorch.kernels import RBFKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.means import ConstantMean

from llmbo.acquisition import AcquisitionConfig, select_candidates, warp_outcomes
from llmbo.errors import InputError
from llmbo.surrogates.base import FittedSurrogate

DTYPES = [torch.float32, torch.float64]

# Pool rows 0-2 are observed (y = 0); the prior mean is 1, so the posterior mean rises and
# the variance grows with the distance from the data: row 7 (x = 0.9) is far from
# everything and has clearly both the highest mean and the highest variance, row 6
# (x = 0.35) comes second, row 5 (x = 0.28) third.
POOL_X = [0.0, 0.1, 0.2, 0.05, 0.15, 0.28, 0.35, 0.9]
OBSERVED = torch.tensor([0, 1, 2])
CANDIDATES = torch.tensor([3, 4, 5, 6, 7])


def hand_built(
    dtype: torch.dtype = torch.float64,
    noise: float = 1e-4,
    *,
    pool_x: list[float] = POOL_X,
    observed: torch.Tensor = OBSERVED,
    lengthscale: float = 0.1,
) -> FittedSurrogate:
    """An RBF GP (outputscale 1, prior mean 1, observations y = 0 at rows ``observed``) on
    1-d features; by default the pool described above, with lengthscale 0.1."""
    X = torch.tensor(pool_x, dtype=dtype).unsqueeze(-1)
    Y = torch.zeros(len(observed), 1, dtype=dtype)
    gp = SingleTaskGP(
        X[observed],
        Y,
        covar_module=ScaleKernel(RBFKernel()),
        mean_module=ConstantMean(),
        likelihood=GaussianLikelihood(),
        outcome_transform=None,
    ).to(dtype)
    gp.covar_module.base_kernel.lengthscale = lengthscale
    gp.covar_module.outputscale = 1.0
    gp.likelihood.noise = noise
    gp.mean_module.constant.data.fill_(1.0)
    gp.eval()
    return FittedSurrogate(model=gp, features=X)


def closed_form_posterior(x: float) -> tuple[float, float]:
    """GP regression by hand for the hand-built model (float64)."""
    X = torch.tensor(POOL_X, dtype=torch.float64)[OBSERVED]

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * (a.unsqueeze(-1) - b.unsqueeze(-2)) ** 2 / 0.1**2)

    K = k(X, X) + 1e-4 * torch.eye(3, dtype=torch.float64)
    ks = k(torch.tensor([x], dtype=torch.float64), X)
    mean = 1.0 + ks @ torch.linalg.solve(K, torch.zeros(3, dtype=torch.float64) - 1.0)
    var = 1.0 - ks @ torch.linalg.solve(K, ks.T)
    return float(mean), float(var)


def test_hand_built_model_has_the_designed_posterior() -> None:
    fitted = hand_built()
    with torch.no_grad():
        post = fitted.model.posterior(fitted.features[CANDIDATES])
    mean, var = post.mean.squeeze(-1), post.variance.squeeze(-1)
    for i, row in enumerate(CANDIDATES.tolist()):
        m, v = closed_form_posterior(POOL_X[row])
        assert mean[i].item() == pytest.approx(m, abs=1e-6)
        assert var[i].item() == pytest.approx(v, abs=1e-6)
    assert int(mean.argmax()) == int(var.argmax()) == 4  # row 7
    assert torch.equal(mean.argsort(), var.argsort())


def _config(name: str, strategy: str = "mc") -> AcquisitionConfig:
    return AcquisitionConfig(name=name, batch_strategy=strategy)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["logei", "ucb"])
def test_single_pick_is_the_dominant_candidate(name: str, dtype: torch.dtype) -> None:
    chosen = select_candidates(hand_built(dtype), CANDIDATES, 1, best_f=0.0, config=_config(name))
    assert chosen.dtype == torch.long
    assert chosen.tolist() == [7]


@pytest.mark.parametrize("name", ["logei", "ucb"])
def test_scores_match_closed_form_ranking(name: str) -> None:
    """The pick is the argmax of the closed-form EI / UCB over the available rows."""
    available = torch.tensor([3, 4, 5])  # without the two far-away rows
    best_f, beta = 0.0, 2.0
    scores = []
    for row in available.tolist():
        m, v = closed_form_posterior(POOL_X[row])
        s = math.sqrt(v)
        if name == "ucb":
            scores.append(m + math.sqrt(beta) * s)
        else:
            z = (m - best_f) / s
            pdf = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
            cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
            scores.append((m - best_f) * cdf + s * pdf)
    expected = available[int(torch.tensor(scores).argmax())]
    chosen = select_candidates(hand_built(), available, 1, best_f=best_f, config=_config(name))
    assert chosen.tolist() == [int(expected)] == [5]


@pytest.mark.parametrize("strategy", ["mc", "kriging_believer"])
@pytest.mark.parametrize("name", ["logei", "ucb"])
def test_batch_picks_in_order_of_value(name: str, strategy: str) -> None:
    """Rows 7 and 6 are far apart (independent): a batch of two is the greedy top-2."""
    chosen = select_candidates(
        hand_built(), CANDIDATES, 2, best_f=0.0, config=_config(name, strategy), seed=3
    )
    assert chosen.tolist() == [7, 6]


@pytest.mark.parametrize("strategy", ["mc", "kriging_believer"])
@pytest.mark.parametrize("name", ["logei", "ucb", "ts"])
def test_never_picks_unavailable_rows_and_picks_distinct_rows(name: str, strategy: str) -> None:
    fitted = hand_built()
    # Rows 6 and 7 (the two best) are evaluated or pending: never suggested again.
    available = torch.tensor([3, 4, 5])
    chosen = select_candidates(
        fitted,
        available,
        3,
        best_f=0.0,
        pending=torch.tensor([7]),
        config=_config(name, strategy),
        seed=1,
    )
    assert sorted(chosen.tolist()) == [3, 4, 5]
    assert len(set(chosen.tolist())) == 3


def _with_twin() -> FittedSurrogate:
    """The hand-built model with row 8 (x = 0.905), a near-copy of row 7, in the pool."""
    X = torch.tensor([*POOL_X, 0.905], dtype=torch.float64).unsqueeze(-1)
    return FittedSurrogate(model=hand_built().model, features=X)


TWIN_AVAILABLE = torch.tensor([3, 4, 5, 6, 8])


def _kb_reason(name: str, strategy: str) -> list:
    return []


@pytest.mark.parametrize(
    ("name", "strategy"),
    [
        pytest.param(n, s, marks=_kb_reason(n, s))
        for n in ("logei", "ucb")
        for s in ("mc", "kriging_believer")
    ],
)
def test_pending_candidate_discourages_its_twin(name: str, strategy: str) -> None:
    """Once row 7 is pending, its near-copy (row 8) is worth less than row 6."""
    fitted = _with_twin()
    config = _config(name, strategy)
    alone = select_candidates(fitted, TWIN_AVAILABLE, 1, best_f=0.0, config=config)
    assert alone.tolist() == [8]
    with_pending = select_candidates(
        fitted, TWIN_AVAILABLE, 1, best_f=0.0, pending=torch.tensor([7]), config=config
    )
    assert with_pending.tolist() == [6]


@pytest.mark.parametrize(
    ("name", "strategy"),
    [
        pytest.param(n, s, marks=_kb_reason(n, s))
        for n in ("logei", "ucb")
        for s in ("mc", "kriging_believer")
    ],
)
def test_batch_does_not_pick_a_twin_of_its_first_pick(name: str, strategy: str) -> None:
    available = torch.tensor([3, 4, 5, 6, 7, 8])
    chosen = select_candidates(
        _with_twin(), available, 2, best_f=0.0, config=_config(name, strategy), seed=0
    )
    assert chosen[0].item() in (7, 8)
    assert chosen[1].item() == 6


def _broad_model() -> FittedSurrogate:
    """Twenty candidates far from the single observation: a nearly flat posterior."""
    X = torch.linspace(0, 1, 21, dtype=torch.float64).unsqueeze(-1)
    gp = SingleTaskGP(
        X[:1],
        torch.zeros(1, 1, dtype=torch.float64),
        covar_module=ScaleKernel(RBFKernel()),
        outcome_transform=None,
    )
    gp.covar_module.base_kernel.lengthscale = 0.03
    gp.covar_module.outputscale = 1.0
    gp.likelihood.noise = 1e-4
    gp.eval()
    return FittedSurrogate(model=gp, features=X)


def test_thompson_sampling_is_reproducible_by_seed() -> None:
    fitted = _broad_model()
    available = torch.arange(1, 21)
    config = _config("ts")
    runs = {
        seed: select_candidates(fitted, available, 3, best_f=0.0, config=config, seed=seed)
        for seed in range(8)
    }
    for seed, chosen in runs.items():
        again = select_candidates(fitted, available, 3, best_f=None, config=config, seed=seed)
        assert torch.equal(chosen, again)
        assert len(set(chosen.tolist())) == 3
        assert set(chosen.tolist()) <= set(available.tolist())
    # Different seeds explore different rows.
    assert len({tuple(c.tolist()) for c in runs.values()}) >= 4
    # The global RNG is neither used nor disturbed.
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    select_candidates(fitted, available, 2, best_f=None, config=config, seed=5)
    assert torch.equal(torch.rand(1), expected)


def test_thompson_pick_frequencies_match_exact_posterior_draws() -> None:
    """P(row is picked) = P(row is the argmax of a joint posterior draw)."""
    fitted = hand_built()
    n_seeds = 80
    picks = torch.tensor(
        [
            int(select_candidates(fitted, CANDIDATES, 1, best_f=None, config=_config("ts"), seed=s))
            for s in range(n_seeds)
        ]
    )
    torch.manual_seed(0)
    with torch.no_grad():
        draws = fitted.model.posterior(fitted.features[CANDIDATES]).rsample(torch.Size([20000]))
    exact = torch.bincount(CANDIDATES[draws.squeeze(-1).argmax(-1)], minlength=8) / 20000
    observed = torch.bincount(picks, minlength=8) / n_seeds
    assert exact[7] > 0.5 and exact[6] > 0.3  # the designed ranking
    # The binomial standard error at n=80 is at most 0.056: allow three of them.
    torch.testing.assert_close(observed, exact.to(observed.dtype), atol=0.17, rtol=0)


def test_random_choice_without_a_model() -> None:
    available = torch.tensor([2, 5, 9, 11, 17, 23])
    a = select_candidates(None, available, 4, best_f=None, seed=7)
    b = select_candidates(None, available, 4, best_f=None, seed=7)
    assert torch.equal(a, b)
    assert len(set(a.tolist())) == 4 and set(a.tolist()) <= set(available.tolist())
    seen = {
        tuple(select_candidates(None, available, 2, best_f=None, seed=s).tolist())
        for s in range(10)
    }
    assert len(seen) > 3
    everything = select_candidates(None, available, 6, best_f=None, seed=0)
    assert sorted(everything.tolist()) == available.tolist()


@pytest.mark.parametrize("fitted", [None, "model"])
def test_batch_larger_than_available_is_an_error(fitted: str | None) -> None:
    model = hand_built() if fitted else None
    with pytest.raises(InputError, match=r"Cannot pick 4 candidates: only 3 remain"):
        select_candidates(model, torch.tensor([3, 4, 5]), 4, best_f=0.0)
    with pytest.raises(InputError, match="at least 1"):
        select_candidates(model, torch.tensor([3, 4, 5]), 0, best_f=0.0)


def test_improvement_needs_best_f() -> None:
    with pytest.raises(InputError, match="best_f"):
        select_candidates(hand_built(), CANDIDATES, 1, best_f=None)


def test_config_validation_and_serialisation() -> None:
    with pytest.raises(InputError, match="Unknown acquisition 'ei'"):
        AcquisitionConfig(name="ei")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="batch_strategy"):
        AcquisitionConfig(batch_strategy="fantasy")  # type: ignore[arg-type]
    for bad in (-1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(InputError, match="beta must be a finite number >= 0"):
            AcquisitionConfig(name="ucb", beta=bad)  # type: ignore[arg-type]
    for field in ("mc_samples", "chunk_size"):
        for bad in (0, -5, 2.5, "64"):
            with pytest.raises(InputError, match=f"{field} must be a positive integer"):
                AcquisitionConfig(**{field: bad})
    for bad in (0, -2.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(InputError, match="outcome_power must be a finite number > 0"):
            AcquisitionConfig(outcome_power=bad)  # type: ignore[arg-type]
    for power in (np.float32(2.0), np.int64(2), 2):
        stored = AcquisitionConfig(outcome_power=power).outcome_power
        assert stored == 2.0 and type(stored) is float  # JSON-serialisable in a study
    numpy_values = AcquisitionConfig(beta=np.float64(0.5), mc_samples=np.int64(64))
    assert (numpy_values.beta, numpy_values.mc_samples) == (0.5, 64)
    config = AcquisitionConfig(name="ucb", beta=0.5, batch_strategy="kriging_believer")
    assert AcquisitionConfig(**config.to_dict()) == config


def _symmetric_pool() -> FittedSurrogate:
    """Rows 1 and 2 lie at the same distance on either side of the one observation (row 0),
    so their posteriors are identical; row 3 is closer, hence worse."""
    return hand_built(pool_x=[0.0, 0.5, -0.5, 0.2], observed=torch.tensor([0]), lengthscale=0.2)


@pytest.mark.parametrize("name", ["logei", "ucb"])
def test_exact_ties_are_broken_by_the_seed_not_the_row_order(name: str) -> None:
    fitted = _symmetric_pool()
    with torch.no_grad():
        mean = fitted.model.posterior(fitted.features[1:3]).mean.flatten()
    assert mean[0] == mean[1]  # the tie is exact
    orders = (torch.tensor([1, 2, 3]), torch.tensor([3, 2, 1]))
    picks: dict[int, list[int]] = {0: [], 1: []}
    for seed in range(16):
        for o, available in enumerate(orders):
            chosen = select_candidates(
                fitted, available, 1, best_f=0.0, config=_config(name), seed=seed
            ).tolist()
            assert chosen[0] in (1, 2)
            picks[o].append(chosen[0])
        again = select_candidates(fitted, orders[0], 1, best_f=0.0, config=_config(name), seed=seed)
        assert again.tolist() == [picks[0][-1]]  # same seed, same choice
    # In either row order, either tied row can come first, depending on the seed.
    assert set(picks[0]) == set(picks[1]) == {1, 2}
    # A batch of two takes both tied rows before the worse one.
    both = select_candidates(fitted, torch.tensor([3, 1, 2]), 2, best_f=0.0, config=_config(name))
    assert sorted(both.tolist()) == [1, 2]


def test_outcome_warp_scales_to_the_unit_interval_and_keeps_the_ranking() -> None:
    values = np.array([12.0, -3.0, 40.0, 7.5, 40.0])
    squared = warp_outcomes(values, 2.0)
    np.testing.assert_allclose(squared, ((values + 3.0) / 43.0) ** 2)
    assert squared.min() == 0.0 and squared.max() == 1.0
    assert (np.argsort(squared, kind="stable") == np.argsort(values, kind="stable")).all()
    # Below 1 the poor values spread out instead; the order is still kept.
    root = warp_outcomes(values, 0.5)
    assert (np.argsort(root, kind="stable") == np.argsort(values, kind="stable")).all()
    assert root[3] - root[1] > squared[3] - squared[1]


@pytest.mark.parametrize(
    ("values", "power"),
    [([1.0, 5.0, 2.0], 1.0), ([4.0], 2.0), ([], 2.0), ([3.0, 3.0, 3.0], 2.0)],
)
def test_outcome_warp_leaves_values_it_cannot_scale_alone(values: list, power: float) -> None:
    """Power 1, fewer than two values or no spread: the values exactly as given."""
    np.testing.assert_array_equal(warp_outcomes(np.array(values), power), np.array(values))
