"""Screen (2026-11-24): how well a benchmark method's surrogate predicts unseen reactions.

Throwaway diagnostic kept for reproducibility of benchmarks/results/kernel_screens.md
("Held-out fits"). For each pool and seed it fits the method's surrogate once on 60
reactions drawn at random (seeded) and scores the other reactions of the pool:

* ``rmse``: root mean squared error of the posterior mean (yield, %);
* ``nlpd``: mean negative log predictive density with observation noise (lower is better;
  large values mean confident and wrong);
* ``prec``: the fraction of the pool's top-5 % reactions among the held-out reactions the
  posterior mean ranks highest (as many as there are top-5 % reactions held out);
* ``scales``: the output scale of each kernel in the model's sum, and the noise variance
  (standardised units).

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/heldout_fit.py \
        hybrid-components-seg names '{"deep_kernel.side_fit": "fixed"}' bh1,bh2,bh3,bh4,bh5 2

Arguments: method, template, JSON overrides (as ``llmbo bench --set``), pools, seeds (0..N-1).
"""

import json
import math
import sys

import torch

from llmbo.benchmarks.methods import METHODS
from llmbo.datasets import load_pool
from llmbo.surrogates import make_surrogate

N_TRAIN = 60


def kernel_scales(model) -> list[float]:
    """Output scales of the top-level kernels (one for a single scaled kernel)."""
    covar = model.covar_module
    parts = covar.kernels if hasattr(covar, "kernels") else [covar]
    return [round(float(k.outputscale.detach()), 3) for k in parts if hasattr(k, "outputscale")]


def main() -> None:
    method, template, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    pools, seeds = sys.argv[4].split(","), int(sys.argv[5])
    rows = []
    for name in pools:
        pool = load_pool(name)
        space = pool.space(template)
        surrogate = make_surrogate(METHODS.get(method)(pool, template=template, options=options))
        surrogate.prepare(space, progress=False)
        y = torch.tensor(space.frame[pool.target].to_numpy(), dtype=torch.float64)
        top = y >= torch.quantile(y, 0.95)
        for seed in range(seeds):
            perm = torch.randperm(len(space), generator=torch.Generator().manual_seed(seed))
            train, test = perm[:N_TRAIN], perm[N_TRAIN:]
            torch.manual_seed(seed)
            fitted = surrogate.fit(train, y[train])
            with torch.no_grad():
                post = fitted.model.posterior(fitted.features[test], observation_noise=True)
            mean, var = post.mean.squeeze(-1), post.variance.squeeze(-1)
            err = y[test] - mean
            nlpd = float((0.5 * torch.log(2 * math.pi * var) + 0.5 * err**2 / var).mean())
            rmse = float(err.pow(2).mean().sqrt())
            k = int(top[test].sum())
            prec = float(top[test[torch.topk(mean, k).indices]].float().mean())
            noise = round(float(fitted.model.likelihood.noise.detach().mean()), 4)
            rows.append((nlpd, rmse, prec))
            print(
                f"{method} {name} seed {seed}: nlpd {nlpd:.3f} rmse {rmse:.2f} prec {prec:.2f} "
                f"scales {kernel_scales(fitted.model)} noise {noise}",
                flush=True,
            )
    mean_row = torch.tensor(rows).mean(0).tolist()
    print(
        f"{method} {options} MEAN nlpd {mean_row[0]:.3f} rmse {mean_row[1]:.2f} prec {mean_row[2]:.3f}"
    )


if __name__ == "__main__":
    main()
