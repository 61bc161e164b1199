"""Screen (2026-11-25): warp the observed yields monotonically before each fit.

Exploration kept for reproducibility of benchmarks/results/kernel_screens.md. llmbo's GPs
standardise the yields and otherwise model them as they are, but a pool's yields are far
from Gaussian (many near zero, a long upper tail), and the campaign starts from ten yields
below the median. A monotone warp keeps the ranking (so the best-so-far and the acquisition's
incumbent mean the same thing) and gives the GP more Gaussian targets. The screen wraps the
benchmark's Bayesian proposer in one that warps the observations it is handed, so the fit
and the LogEI incumbent both see the warped values while the campaign records the real
yields (the screen's first version patched the optimizer's view of the observations to the
same effect):

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/outcome_warp.py \
        WARP components bh1,bh2,bh3,bh4,bh5 0-9 [--template names] [--set KEY=VALUE ...]

WARP is ``none`` (control), ``log`` (log(1 + y)), ``yeojohnson`` (Yeo-Johnson power
transform of the standardised yields, lambda by maximum likelihood, scipy), ``copula``
(ranks mapped to standard normal quantiles), ``square`` (y ** 2, yields clipped at 0),
``power2`` (((y - min) / (max - min)) ** 2, what ``acquisition.outcome_power=2`` does) or
``exp`` (exp of the standardised yields; not run). Prints ``label pool seed coverage seconds fit_fallbacks``.
"""

import argparse
from dataclasses import replace

import numpy as np
import torch
from scipy import stats
from screen_tools import parse_options, run_pools

from llmbo.acquisition import warp_outcomes
from llmbo.proposers import Observations, Proposal, Proposer
from llmbo.space import CandidateSpace


def warp(name: str, values: np.ndarray) -> np.ndarray:
    if name == "none" or len(values) < 2:
        return values
    if name == "log":
        return np.log1p(np.clip(values, 0.0, None))
    if name == "power2":
        return warp_outcomes(values, 2.0)
    if name == "square":
        return np.square(np.clip(values, 0.0, None))
    if name == "exp":
        scaled = (values - values.mean()) / max(values.std(), 1e-9)
        return np.exp(scaled)
    if name == "yeojohnson":
        scaled = (values - values.mean()) / max(values.std(), 1e-9)
        return stats.yeojohnson(scaled)[0]
    if name == "copula":
        ranks = stats.rankdata(values)  # ties share their mean rank
        return stats.norm.ppf((ranks - 0.5) / len(values))
    raise SystemExit(f"unknown warp {name!r}")


class WarpedProposer(Proposer):
    """Hands ``inner`` the observations with their values warped by :func:`warp`."""

    name = "warped"

    def __init__(self, inner: Proposer, warp_name: str) -> None:
        self.inner = inner
        self.warp_name = warp_name

    @property
    def label(self) -> str:
        return self.inner.label

    def prepare(self, space: CandidateSpace, *, progress: bool = False) -> None:
        self.inner.prepare(space, progress=progress)

    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        warped = replace(observed, values=warp(self.warp_name, observed.values))
        return self.inner.propose(space, warped, n, seed=seed)

    def config(self) -> dict[str, object]:
        return {"name": self.name, "warp": self.warp_name, "inner": self.inner.config()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("warp")
    parser.add_argument("method")
    parser.add_argument("pools")
    parser.add_argument("seeds")
    parser.add_argument("--template", default="procedure")
    parser.add_argument("--set", dest="settings", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = parse_options(args.settings)
    label = f"warp={args.warp} {args.method}"
    if options:
        label += "{" + ",".join(f"{k}={v}" for k, v in options.items()) + "}"
    run_pools(
        label,
        args.method,
        args.pools,
        args.seeds,
        args.template,
        options,
        wrap=lambda proposer: WarpedProposer(proposer, args.warp),
    )


if __name__ == "__main__":
    main()
