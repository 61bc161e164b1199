"""What the screens share: the loop over seeds, pool loading, and GP surrogates with custom
kernels, all through llmbo's public API.

The screens import this module by name, so run them by path from the repository root
(``python research/screens/SCREEN.py ...``): Python puts the script's folder on ``sys.path``.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.kernels import Kernel, ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from llmbo.benchmarks.methods import METHODS
from llmbo.benchmarks.protocol import ProtocolConfig
from llmbo.benchmarks.runner import build_surrogate, run_one
from llmbo.cli.bench import parse_seeds
from llmbo.datasets import ReactionPool, load_pool
from llmbo.design import initial_design
from llmbo.metrics import top_fraction_coverage
from llmbo.optimizer import Optimizer, TableObjective
from llmbo.proposers import BayesianProposer, Proposer
from llmbo.space import CandidateSpace
from llmbo.surrogates import FittedSurrogate, Surrogate
from llmbo.surrogates.base import as_train_tensors
from llmbo.surrogates.config import parse_value
from llmbo.surrogates.feature_gp import FIXED_FEATURE_FALLBACK_NOISE, informative_columns
from llmbo.surrogates.kernels import TanimotoKernel
from llmbo.surrogates.likelihood import gaussian_likelihood
from llmbo.surrogates.numerics import robust_cholesky

#: ``warning_handler`` of BoTorch's ``fit_gpytorch_mll`` (``None``: BoTorch's default).
WarningHandler = Callable[[warnings.WarningMessage], bool]


# ---------------------------------------------------------------------- pools
@functools.lru_cache(maxsize=8)
def pool(name: str) -> ReactionPool:
    """The benchmark pool ``name``, loaded once per process."""
    return load_pool(name)


@functools.lru_cache(maxsize=16)
def pool_space(name: str, template: str) -> CandidateSpace:
    """Pool ``name`` as a candidate space with ``template``, built once per process."""
    return pool(name).space(template)


# ----------------------------------------------------------------- surrogates
class PreparedSurrogate(Surrogate):
    """A surrogate that computes its data-independent state in :meth:`setup`, once per
    space, through the public :meth:`prepare` (a new space prepares again)."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared_space: str | None = None

    def prepare(self, space: CandidateSpace, *, progress: bool = False) -> None:
        key = space.content_hash()
        if self.prepared_space != key:
            self.setup(space)
            self.prepared_space = key

    def setup(self, space: CandidateSpace) -> None:
        """Pre-compute what does not depend on observations."""


class KernelGP(PreparedSurrogate):
    """A BoTorch ``SingleTaskGP`` on fixed pool features with a kernel of the screen's own.

    The fit is that of llmbo's ``FeatureGP`` for its Tanimoto and components kernels (no
    input normalisation, standardised targets, llmbo's Gaussian likelihood, BoTorch's
    ``fit_gpytorch_mll`` under ``robust_cholesky``); subclasses give the features
    (:meth:`featurize`), the kernel (:meth:`covar`) and the part of the features a Tanimoto
    GP falls back on when a fit fails (:meth:`fallback_features`).

    Args:
        name: Label of the surrogate.
        noise_lower_bound: Smallest noise variance (standardised units).
        warning_handler: Passed to ``fit_gpytorch_mll`` (also by the fallback GP).
    """

    def __init__(
        self,
        name: str = "kernel_gp",
        *,
        noise_lower_bound: float = 1e-4,
        warning_handler: WarningHandler | None = None,
    ) -> None:
        super().__init__()
        self.name = name  # type: ignore[misc]
        self.noise_lower_bound = noise_lower_bound
        self.warning_handler = warning_handler
        self.features_: Tensor | None = None

    def featurize(self, space: CandidateSpace) -> Tensor:
        """``N x d`` features of the pool."""
        raise NotImplementedError

    def covar(self, d: int) -> Kernel:
        """The kernel on ``d`` feature columns."""
        raise NotImplementedError

    def fallback_features(self) -> Tensor:
        """Features of the Tanimoto GP used when a fit fails (default: all of them)."""
        assert self.features_ is not None
        return self.features_

    def setup(self, space: CandidateSpace) -> None:
        features = self.featurize(space).to(torch.float64)
        if features.ndim != 2 or features.shape[0] != len(space):
            raise ValueError(f"Features of shape {tuple(features.shape)} for {len(space)} rows.")
        self.features_ = features

    def fit(self, train_index: Tensor, train_y: Tensor) -> FittedSurrogate:
        if self.features_ is None:
            raise RuntimeError("Call prepare(space) before fit().")
        idx, y = as_train_tensors(train_index, train_y)
        X = self.features_
        model = SingleTaskGP(
            X[idx],
            y,
            covar_module=self.covar(X.shape[-1]),
            likelihood=gaussian_likelihood(self.noise_lower_bound),
            outcome_transform=Standardize(m=1) if y.shape[0] > 1 else None,
        )
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        options = {} if self.warning_handler is None else {"warning_handler": self.warning_handler}
        with robust_cholesky():
            fit_gpytorch_mll(mll, **options)
        model.eval()
        return FittedSurrogate(model=model, features=X)

    def fallback(self, space: CandidateSpace) -> Surrogate | None:
        """A Tanimoto GP on :meth:`fallback_features` without constant columns and with a
        higher noise floor: llmbo's rule for its fixed-feature GPs."""
        if self.features_ is None:
            return None
        informative = informative_columns(self.fallback_features())
        if informative is None:
            return None
        gp = TanimotoGP(
            informative,
            name=f"{self.name}-regularised",
            noise_lower_bound=FIXED_FEATURE_FALLBACK_NOISE,
            warning_handler=self.warning_handler,
        )
        gp.prepare(space)
        return gp

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "class": type(self).__name__}


class TanimotoGP(KernelGP):
    """A scaled Tanimoto kernel on features computed elsewhere."""

    def __init__(self, features: Tensor, name: str = "tanimoto", **options: Any) -> None:
        super().__init__(name, **options)
        self.given = features

    def featurize(self, space: CandidateSpace) -> Tensor:
        return self.given

    def covar(self, d: int) -> Kernel:
        return ScaleKernel(TanimotoKernel())


# ------------------------------------------------------------------ campaigns
def run_campaign(
    pool_name: str,
    method: str,
    seed: int,
    surrogate: Surrogate,
    *,
    template: str = "procedure",
    options: Mapping[str, Any] | None = None,
    wrap: Callable[[Proposer], Proposer] = lambda proposer: proposer,
) -> dict[str, Any]:
    """The benchmark protocol once, as :func:`llmbo.benchmarks.runner.run_one` runs it
    (10 below-median starts, 50 iterations, batch 1, maximise), with the Bayesian proposer
    handed to ``wrap`` first. Returns ``top5_coverage`` and ``fit_fallbacks``."""
    protocol = ProtocolConfig()
    values = pool(pool_name).values
    space = pool_space(pool_name, template)
    acquisition = METHODS.get(method).acquisition_for(options)
    surrogate.reset()  # a surrogate shared across seeds forgets its warm-start state
    proposer = BayesianProposer(surrogate, acquisition, progress=False)
    optimizer = Optimizer(
        space, acquisition=acquisition, seed=int(seed), progress=False, proposer=wrap(proposer)
    )
    starts = initial_design(values, protocol.n_initial, int(seed))
    optimizer.tell([space.ids[i] for i in starts], values[starts].tolist())
    fallbacks = 0

    def count_fallbacks(opt: Optimizer, ids: list[str], vals: list[float]) -> None:
        nonlocal fallbacks
        if opt.last_fit.get("fallback") is not None:
            fallbacks += 1

    optimizer.run(
        TableObjective(space, pool(pool_name).target),
        protocol.iterations,
        batch_size=protocol.batch_size,
        callback=count_fallbacks,
    )
    history = optimizer.history
    done = history[history["state"] == "complete"].sort_values("trial")
    evaluated = done["value"].to_numpy(dtype=np.float64)
    return {
        "top5_coverage": top_fraction_coverage(evaluated, values, 0.05),
        "fit_fallbacks": fallbacks,
    }


def run_seeds(
    prefix: Sequence[object],
    pool_name: str,
    method: str,
    seeds: Iterable[int],
    surrogate: Surrogate,
    extra_columns: Sequence[str] = (),
    *,
    wrap: Callable[[Proposer], Proposer] | None = None,
    **run_options: Any,
) -> None:
    """Run ``method`` with ``surrogate`` on ``pool_name`` for each seed and print
    ``*prefix pool seed coverage seconds *extra_columns`` (values of the run's row).

    Without ``wrap`` each run is :func:`~llmbo.benchmarks.runner.run_one`; with it,
    :func:`run_campaign` (``run_options``: ``template`` and ``options``)."""
    for seed in seeds:
        start = time.time()
        if wrap is None:
            row = run_one(pool_name, method, seed, surrogate=surrogate, **run_options).row
        else:
            row = run_campaign(pool_name, method, seed, surrogate, wrap=wrap, **run_options)
        extra = [row[c] for c in extra_columns]
        coverage = row["top5_coverage"]
        print(*prefix, pool_name, seed, coverage, round(time.time() - start), *extra, flush=True)


def parse_options(settings: Iterable[str]) -> dict[str, object]:
    """``KEY=VALUE`` settings (as ``llmbo bench --set`` without ``METHOD:``) as a dict."""
    options = {}
    for item in settings:
        key, value = item.split("=", 1)
        options[key] = parse_value(value)
    return options


def run_pools(
    label: str,
    method: str,
    pools: str,
    seeds: str,
    template: str,
    options: dict[str, object],
    *,
    wrap: Callable[[Proposer], Proposer] | None = None,
) -> None:
    """:func:`run_seeds` for each comma-separated pool and ``LO-HI`` seed range, printing
    ``label pool seed coverage seconds fit_fallbacks``."""
    for name in pools.split(","):
        surrogate = build_surrogate(pool(name), method, template=template, options=options)
        run_seeds(
            [label],
            name,
            method,
            parse_seeds(seeds),
            surrogate,
            ["fit_fallbacks"],
            wrap=wrap,
            template=template,
            options=options,
        )
