"""Choose the next candidates from a finite pool with BoTorch acquisition functions.

Candidates are rows of a fitted surrogate's fixed feature matrix, so the whole pool is
scored in large batches of ``b x 1 x d`` inputs with one posterior per batch. Batches of
``q > 1`` are built greedily: each pick becomes a pending point for the next, handled either
jointly by Monte-Carlo acquisition (``X_pending``, BoTorch's approach) or by the kriging
believer (condition the GP on its own posterior mean).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from botorch.acquisition import (
    AcquisitionFunction,
    LogExpectedImprovement,
    UpperConfidenceBound,
    qLogExpectedImprovement,
    qUpperConfidenceBound,
)
from botorch.acquisition.analytic import _log_ei_helper
from botorch.exceptions.errors import UnsupportedError
from botorch.models.model import Model
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.safe_math import logmeanexp
from botorch.utils.transforms import is_ensemble
from torch import Tensor

from llmbo.errors import InputError
from llmbo.surrogates.base import FittedSurrogate

__all__ = [
    "ACQUISITION_SETTING",
    "AcquisitionConfig",
    "acquisition_from_settings",
    "is_acquisition_setting",
    "select_candidates",
    "warp_outcomes",
]

#: The ``KEY=VALUE`` setting that chooses the acquisition function; ``acquisition.<field>``
#: sets its other fields (``acquisition.beta=0.5``). Every other key is a surrogate setting.
ACQUISITION_SETTING = "acquisition"


def is_acquisition_setting(key: str) -> bool:
    return key == ACQUISITION_SETTING or key.startswith(ACQUISITION_SETTING + ".")


AcquisitionName = Literal["logei", "ucb", "ts"]


@dataclass
class AcquisitionConfig:
    """Acquisition settings.

    Attributes:
        name: ``"logei"`` (log expected improvement, default), ``"ucb"`` (upper confidence
            bound) or ``"ts"`` (Thompson sampling).
        beta: UCB exploration weight.
        batch_strategy: How earlier picks of a batch and pending candidates are handled:
            ``"kriging_believer"`` (default: condition the GP on its posterior mean at
            them, then score analytically) or ``"mc"`` (joint quasi-Monte-Carlo acquisition
            with ``X_pending``; exact in expectation but costlier on large pools).
        mc_samples: Quasi-MC samples for ``"mc"``.
        chunk_size: Candidates scored per posterior call. GPyTorch materialises the
            chunk's joint covariance before taking its diagonal, so time and memory per
            chunk grow with its square; 1024 keeps a chunk at 8 MB and the pool linear.
        outcome_power: The surrogate is fitted to, and improvement is measured on, the
            observed values rescaled to [0, 1] (worst to best) and raised to this power
            (:func:`warp_outcomes`). ``1`` (default) uses the values as they are; above 1
            spreads out the best values and squeezes the poor ones together, so the model
            spends its flexibility where the optimum is; below 1 does the opposite. The
            ranking, and so the best observation, are unchanged. The scaling is recomputed
            from the observations at every fit, so a new best or worst value rescales all
            targets (warm-started deep kernels then start from a fit to other targets).
    """

    name: AcquisitionName = "logei"
    beta: float = 2.0
    batch_strategy: Literal["mc", "kriging_believer"] = "kriging_believer"
    mc_samples: int = 256
    chunk_size: int = 1024
    outcome_power: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in ("logei", "ucb", "ts"):
            raise InputError(f"Unknown acquisition {self.name!r}; choose 'logei', 'ucb' or 'ts'.")
        if self.batch_strategy not in ("mc", "kriging_believer"):
            raise InputError(
                f"batch_strategy must be 'mc' or 'kriging_believer', got {self.batch_strategy!r}."
            )
        beta = self.beta
        is_number = isinstance(beta, numbers.Real) and not isinstance(beta, bool)
        if not is_number or not math.isfinite(beta) or beta < 0:
            raise InputError(f"beta must be a finite number >= 0, got {beta!r}.")
        power = self.outcome_power
        is_number = isinstance(power, numbers.Real) and not isinstance(power, bool)
        if not is_number or not math.isfinite(power) or power <= 0:
            raise InputError(
                f"outcome_power must be a finite number > 0, got {power!r} (1 leaves the "
                "observed values as they are; 2 squares them after scaling to [0, 1])."
            )
        self.outcome_power = float(power)
        for name in ("mc_samples", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def warp_outcomes(values: np.ndarray, power: float) -> np.ndarray:
    """Maximised observations as the surrogate sees them: ``((y - min) / (max - min)) ** power``.

    An increasing map, so the ranking and the best observation are kept. ``power == 1``,
    fewer than two values or all values equal return ``values`` unchanged.
    """
    values = np.asarray(values, dtype=np.float64)
    if power == 1 or values.size < 2:
        return values
    lo, hi = values.min(), values.max()
    if not hi > lo:
        return values
    return ((values - lo) / (hi - lo)) ** power


def _score(acqf: AcquisitionFunction, X: Tensor, chunk: int) -> Tensor:
    """Acquisition values of each row of ``X`` (``n x d``) as ``q = 1`` candidates.

    Analytic acquisitions are computed from one marginal posterior per chunk of ``X``
    (an ``n x d`` call, whose variance GPyTorch evaluates as a diagonal in ``O(n)``), not
    from ``n`` batched ``1 x d`` posteriors: the batched form re-evaluates the training
    covariance for every candidate and grows as ``n * n_train**2 * d``.
    """
    out = []
    with torch.no_grad():
        for part in torch.split(X, chunk):
            if isinstance(acqf, LogExpectedImprovement | UpperConfidenceBound):
                out.append(_analytic_values(acqf, part))
            else:
                out.append(acqf(part.unsqueeze(-2)))
    return torch.cat(out)


def _analytic_values(acqf: AcquisitionFunction, X: Tensor) -> Tensor:
    posterior = acqf.model.posterior(X)
    ensemble = is_ensemble(acqf.model)
    if isinstance(acqf, LogExpectedImprovement):
        # Same formula as BoTorch's LogExpectedImprovement.forward (maximisation); for an
        # ensemble the members' improvements are averaged, as BoTorch does for ensembles.
        mean = posterior.mean.squeeze(-1)
        sigma = posterior.variance.squeeze(-1).clamp_min(1e-12).sqrt()
        u = (mean - acqf.best_f) / sigma
        values = _log_ei_helper(u) + sigma.log()
        return logmeanexp(values, dim=-2) if ensemble else values
    assert isinstance(acqf, UpperConfidenceBound)
    mean, variance = _moments(posterior, ensemble)
    return mean + acqf.beta.sqrt() * variance.clamp_min(1e-12).sqrt()


def _moments(posterior: Any, ensemble: bool) -> tuple[Tensor, Tensor]:
    """Marginal mean and variance (``... x n``); of the mixture for an ensemble model."""
    if ensemble:
        return posterior.mixture_mean.squeeze(-1), posterior.mixture_variance.squeeze(-1)
    return posterior.mean.squeeze(-1), posterior.variance.squeeze(-1)


def _analytic(model: Model, name: str, best_f: float, beta: float) -> AcquisitionFunction:
    if name == "logei":
        return LogExpectedImprovement(model, best_f=best_f)
    return UpperConfidenceBound(model, beta=beta)


def _mc(
    model: Model,
    name: str,
    best_f: float,
    beta: float,
    cfg: AcquisitionConfig,
    seed: int,
    pending: Tensor | None,
) -> AcquisitionFunction:
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([cfg.mc_samples]), seed=seed)
    if name == "logei":
        return qLogExpectedImprovement(model, best_f=best_f, sampler=sampler, X_pending=pending)
    return qUpperConfidenceBound(model, beta=beta, sampler=sampler, X_pending=pending)


def _believe(model: Model, X: Tensor) -> tuple[Model, float]:
    """Kriging believer: condition the model on its posterior mean at ``X``.

    Returns the conditioned model and the largest believed value (a believed observation
    raises the incumbent of improvement-based acquisitions like a real one would).
    """
    with torch.no_grad():
        mean, _ = _moments(model.posterior(X), is_ensemble(model))
    mean = mean.unsqueeze(-1)
    return model.condition_on_observations(X, mean), float(mean.max())


def acquisition_from_settings(
    base: AcquisitionConfig, settings: Mapping[str, Any] | None
) -> AcquisitionConfig:
    """``base`` with the acquisition entries of dotted ``settings`` applied (others ignored):
    ``acquisition=ucb`` chooses the function, ``acquisition.<field>=value`` sets a field."""
    import dataclasses

    settings = {k: v for k, v in (settings or {}).items() if is_acquisition_setting(k)}
    fields = {
        key.removeprefix(ACQUISITION_SETTING + "."): value
        for key, value in settings.items()
        if key != ACQUISITION_SETTING
    }
    settable = {f.name for f in dataclasses.fields(AcquisitionConfig)} - {"name"}
    unknown = sorted(set(fields) - settable)
    if unknown:
        raise InputError(
            f"Unknown acquisition setting(s) {unknown}; acquisition.<field> takes one of "
            f"{sorted(settable)} (the function itself is set by acquisition=NAME)."
        )
    name = settings.get(ACQUISITION_SETTING, base.name)
    AcquisitionConfig(name=name)  # an unknown name is reported before any setting
    if "beta" in fields and name != "ucb":
        raise InputError(
            f"acquisition.beta is UCB's exploration weight; this run uses {name!r}. "
            "Add acquisition=ucb or drop acquisition.beta."
        )
    return dataclasses.replace(base, name=name, **fields)


def select_candidates(
    fitted: FittedSurrogate | None,
    available: Tensor,
    q: int,
    *,
    best_f: float | None,
    pending: Tensor | None = None,
    config: AcquisitionConfig | None = None,
    seed: int = 0,
) -> Tensor:
    """Pick ``q`` distinct pool rows from ``available`` (1-d long tensor of row indices).

    Args:
        fitted: The fitted surrogate (``None``: uniform random choice).
        available: Rows that may be chosen (not evaluated, not pending).
        q: Number of candidates to return.
        best_f: Best observed (maximised) value, for improvement-based acquisitions.
        pending: Rows suggested earlier whose values are not known yet.
        config: Acquisition settings.
        seed: Seed of the random choices (random search, QMC, Thompson sampling, and the
            choice among candidates whose scores tie).

    Returns:
        A ``q``-element long tensor of row indices, in the order they were chosen.
    """
    cfg = config or AcquisitionConfig()
    available = torch.as_tensor(available, dtype=torch.long)
    if q < 1:
        raise InputError(f"Batch size must be at least 1, got {q}.")
    if q > len(available):
        raise InputError(f"Cannot pick {q} candidates: only {len(available)} remain.")
    gen = torch.Generator().manual_seed(seed)
    if fitted is None:
        return available[torch.randperm(len(available), generator=gen)[:q]]
    feats = fitted.features
    model = fitted.model
    X_pending = feats[pending] if pending is not None and len(pending) else None
    if cfg.name == "ts":
        return _thompson(model, feats, available, q, X_pending, seed)
    if best_f is None:
        raise InputError("best_f is required for improvement-based acquisition.")
    chosen: list[int] = []
    mask = torch.ones(len(available), dtype=torch.bool)
    X_avail = feats[available]
    believer_model = model
    believed_best = best_f
    if cfg.batch_strategy == "kriging_believer" and X_pending is not None:
        believer_model, believed = _believe(model, X_pending)
        believed_best = max(believed_best, believed)
    for k in range(q):
        picked = feats[torch.tensor(chosen, dtype=torch.long)] if chosen else None
        if cfg.batch_strategy == "mc" and (X_pending is not None or picked is not None):
            parts = [p for p in (X_pending, picked) if p is not None]
            acqf = _mc(model, cfg.name, best_f, cfg.beta, cfg, seed + k, torch.cat(parts))
        else:
            if cfg.batch_strategy == "kriging_believer" and picked is not None:
                believer_model, believed = _believe(believer_model, picked[-1:])
                believed_best = max(believed_best, believed)
            acqf = _analytic(believer_model, cfg.name, believed_best, cfg.beta)
        scores = _score(acqf, X_avail, cfg.chunk_size)
        scores[~mask] = -torch.inf
        j = _argmax_breaking_ties(scores, gen)
        mask[j] = False
        chosen.append(int(available[j]))
    return torch.tensor(chosen, dtype=torch.long)


def _argmax_breaking_ties(scores: Tensor, generator: torch.Generator) -> int:
    """Index of the largest score; a seeded random one among scores tied with it (equal up
    to floating-point rounding, relative tolerance 1e-12).

    Kernels on categorical components make untested levels exchangeable, so several
    candidates can share the best score (on Buchwald-Hartwig, up to 15 at once, in a third
    of the iterations). Taking the first would let the row order of the user's table
    decide, the same way for every seed.
    """
    best = scores.max()
    if not torch.isfinite(best):
        return int(torch.argmax(scores))
    tied = torch.nonzero(
        torch.isclose(scores, best, rtol=1e-12, atol=0.0), as_tuple=False
    ).flatten()
    if len(tied) == 1:
        return int(tied[0])
    return int(tied[torch.randint(len(tied), (1,), generator=generator)])


def _thompson(
    model: Model, feats: Tensor, available: Tensor, q: int, X_pending: Tensor | None, seed: int
) -> Tensor:
    """Thompson sampling: each pick maximises one posterior sample path over the pool."""
    if X_pending is not None:
        model, _ = _believe(model, X_pending)
    X_avail = feats[available]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples = None if is_ensemble(model) else _path_samples(model, X_avail, q)
        if samples is None:
            samples = _shortlist_samples(model, X_avail, q)
    samples = samples.reshape(q, -1)
    gen = torch.Generator().manual_seed(seed)
    chosen: list[int] = []
    taken = torch.zeros(len(available), dtype=torch.bool)
    for k in range(q):
        s = samples[k].clone()
        s[taken] = -torch.inf
        j = _argmax_breaking_ties(s, gen)
        taken[j] = True
        chosen.append(int(available[j]))
    return torch.tensor(chosen, dtype=torch.long)


def _path_samples(model: Model, X: Tensor, q: int) -> Tensor | None:
    """``q`` Matheron sample paths evaluated at ``X``; ``None`` for kernels without feature
    maps (e.g. Tanimoto)."""
    from botorch.sampling.pathwise import draw_matheron_paths

    try:
        paths = draw_matheron_paths(model, sample_shape=torch.Size([q]))
        with torch.no_grad():
            return torch.cat([paths(part) for part in torch.split(X, 8192)], dim=-1)
    except (UnsupportedError, NotImplementedError, AttributeError):
        return None


def _shortlist_samples(model: Model, X: Tensor, q: int) -> Tensor:
    """Exact joint draws on the 2,000 rows of ``X`` with the highest UCB (``-inf`` elsewhere).

    For an ensemble each draw comes from one member chosen at random: a mixture draw.
    """
    ensemble = is_ensemble(model)
    with torch.no_grad():
        mean, variance = _moments(model.posterior(X), ensemble)
        ucb = mean + 2 * variance.clamp_min(0).sqrt()
        short = torch.topk(ucb, min(len(X), 2000)).indices
        draws = model.posterior(X[short]).rsample(torch.Size([q])).squeeze(-1)
    if ensemble:  # q x members x k: keep one random member per draw
        member = torch.randint(draws.shape[1], (q,))
        draws = draws[torch.arange(q), member]
    # On the host, like the indices it is read with (the GP may sit on another device).
    samples = torch.full((q, len(X)), -torch.inf, dtype=draws.dtype)
    samples[:, short.cpu()] = draws.cpu()
    return samples
