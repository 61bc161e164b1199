"""Screen (2026-11-25): what the `static` GP learns with and without a noise prior.

Diagnostic kept for reproducibility of research/LOG.md ("Eleventh round"). For three
seeds it draws 10, 30 and 60 reactions of a pool at random, fits the `static` surrogate
(frozen MiniLM embeddings, Matérn kernel) once without and once with BoTorch's default noise
prior (the surrogate setting ``noise_prior``), and prints the fitted noise variance, output
scale and lengthscale (standardised yields):

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/static_noise_fits.py bh1 procedure
"""

import sys

import torch

from llmbo.benchmarks.runner import build_surrogate
from llmbo.datasets import load_pool


def main() -> None:
    pool_name, template = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    pool = load_pool(pool_name)
    space = pool.space(template)
    values = torch.tensor(pool.values)
    for prior in (False, True):
        options = {"noise_prior": True} if prior else {}
        surrogate = build_surrogate(pool, "static", template=template, options=options)
        surrogate.prepare(space, progress=False)
        for seed in (0, 1, 2):
            order = torch.randperm(len(space), generator=torch.Generator().manual_seed(seed))
            for n in (10, 30, 60):
                idx = order[:n]
                model = surrogate.fit(idx, values[idx]).model
                print(
                    "prior" if prior else "none",
                    seed,
                    n,
                    f"noise {float(model.likelihood.noise.detach()):.4f}",
                    f"outputscale {float(model.covar_module.outputscale.detach()):.3f}",
                    f"lengthscale {float(model.covar_module.base_kernel.lengthscale.detach()):.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
