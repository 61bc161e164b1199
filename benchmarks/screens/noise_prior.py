"""Screen (2026-11-25): BoTorch's default noise prior on llmbo's GPs.

Throwaway exploration kept for reproducibility of benchmarks/results/kernel_screens.md.
llmbo's GPs bound the noise variance from below (1e-4, standardised units) but put no
prior on it, so with 10-60 yields the marginal likelihood may interpolate them. BoTorch's
``SingleTaskGP`` default likelihood instead carries a LogNormal(-4, 1) prior on the noise
(Hvarfner et al., 2024; ``get_gaussian_likelihood_with_lognormal_prior``). This screen
replaces the likelihood of every llmbo GP (fixed-feature GPs and deep kernels, including the
side-only fit of a hybrid) by BoTorch's default one and runs a benchmark method:

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python benchmarks/screens/noise_prior.py \
        components bh1,bh2,bh3,bh4,bh5 0-9 [--template names] [--set KEY=VALUE ...]

Arguments: a benchmark method (``llmbo bench --list-methods``), comma-separated pools, seed
range ``LO-HI``; ``--template`` (default procedure); ``--set`` method options as in
``llmbo bench`` (no ``METHOD:`` prefix). ``--control`` runs without the prior (to check the
screen reproduces ``llmbo bench``). Prints ``label pool seed coverage seconds fit_fallbacks``.
"""

import argparse

import torch
from _runs import run_seeds
from botorch.models.utils.gpytorch_modules import get_gaussian_likelihood_with_lognormal_prior
from gpytorch.constraints import GreaterThan

import llmbo.surrogates.deep_kernel as deep_kernel
import llmbo.surrogates.feature_gp as feature_gp
from llmbo.benchmarks.runner import build_surrogate
from llmbo.cli.bench import parse_seeds, parse_value


def likelihood_with_noise_prior(noise_constraint: GreaterThan, batch_shape=None):
    """BoTorch's default likelihood, keeping llmbo's lower bound on the noise."""
    likelihood = get_gaussian_likelihood_with_lognormal_prior(batch_shape=batch_shape)
    likelihood.noise_covar.register_constraint("raw_noise", noise_constraint)
    likelihood.noise = likelihood.noise_covar.noise_prior.mode
    return likelihood


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("method")
    parser.add_argument("pools")
    parser.add_argument("seeds")
    parser.add_argument("--template", default="procedure")
    parser.add_argument("--set", dest="settings", action="append", default=[])
    parser.add_argument("--control", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = {}
    for item in args.settings:
        key, value = item.split("=", 1)
        options[key] = parse_value(value)
    if not args.control:
        for module in (feature_gp, deep_kernel):
            module.GaussianLikelihood = likelihood_with_noise_prior
    label = ("control" if args.control else "noise-prior") + f" {args.method}"
    if options:
        label += "{" + ",".join(f"{k}={v}" for k, v in options.items()) + "}"
    for pool in args.pools.split(","):
        surrogate = build_surrogate(pool, args.method, template=args.template, options=options)
        run_seeds(
            [label],
            pool,
            args.method,
            parse_seeds(args.seeds),
            surrogate,
            ["fit_fallbacks"],
            template=args.template,
            options=options,
        )


if __name__ == "__main__":
    main()
