"""Screen (2026-11-25): BoTorch's default noise prior on llmbo's GPs.

Exploration kept for reproducibility of benchmarks/results/kernel_screens.md. llmbo's GPs
bound the noise variance from below (1e-4, standardised units) but put no prior on it, so
with 10-60 yields the marginal likelihood alone sets it. BoTorch's ``SingleTaskGP`` default
likelihood carries a LogNormal(-4, 1) prior on the noise (Hvarfner et al., 2024). The
screen's first version patched that likelihood into every llmbo GP; the same likelihood is
now the surrogate setting ``noise_prior`` (``llmbo bench --set METHOD:noise_prior=true``,
:func:`llmbo.surrogates.likelihood.gaussian_likelihood`), which this script sets:

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/noise_prior.py \
        components bh1,bh2,bh3,bh4,bh5 0-9 [--template names] [--set KEY=VALUE ...]

Arguments: a benchmark method (``llmbo bench --list-methods``), comma-separated pools, seed
range ``LO-HI``; ``--template`` (default procedure); ``--set`` method options as in
``llmbo bench`` (no ``METHOD:`` prefix). ``--control`` runs without the prior (to check the
screen reproduces ``llmbo bench``). Prints ``label pool seed coverage seconds fit_fallbacks``.
"""

import argparse

import torch
from screen_tools import parse_options, run_pools


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
    options = parse_options(args.settings)
    label = ("control" if args.control else "noise-prior") + f" {args.method}"
    if options:
        label += "{" + ",".join(f"{k}={v}" for k, v in options.items()) + "}"
    if not args.control:
        options["noise_prior"] = True
    run_pools(label, args.method, args.pools, args.seeds, args.template, options)


if __name__ == "__main__":
    main()
