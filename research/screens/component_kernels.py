"""Screen (2026-11-24): GP kernels on the reaction components, through the benchmark runner.

Throwaway exploration kept for reproducibility of benchmarks/results/kernel_screens.md;
``tan+add`` became the library's ``components`` kernel (same per-seed results).

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/component_kernels.py tan+add bh1,bh2 10

Arguments: kernel (``tanimoto``, ``cat-ard``, ``cat-add``, ``cat-add+ard``, ``tan+ard``,
``tan+add``), comma-separated pools, number of seeds (0..N-1).
"""

import sys

import numpy as np
import pandas as pd
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.kernels.categorical import CategoricalKernel
from botorch.models.transforms.outcome import Standardize
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import AdditiveKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from screen_tools import PreparedSurrogate, pool

from llmbo.benchmarks.runner import run_one
from llmbo.surrogates import FittedSurrogate
from llmbo.surrogates.base import as_train_tensors
from llmbo.surrogates.kernels import TanimotoKernel
from llmbo.surrogates.numerics import robust_cholesky


class CatGP(PreparedSurrogate):
    def __init__(self, kind, columns):
        super().__init__()
        self.kind = kind
        self.columns = columns
        self.name = "onehot"

    def setup(self, space):
        codes = []
        blocks = []
        for c in self.columns:
            s = space.frame[c].astype(str)
            cats = sorted(s.unique())
            cd = pd.Categorical(s, categories=cats).codes
            codes.append(cd)
            b = np.zeros((len(s), len(cats)))
            b[np.arange(len(s)), cd] = 1
            blocks.append(b)
        self.codes = torch.tensor(np.stack(codes, 1), dtype=torch.float64)
        self.oh = torch.tensor(np.concatenate(blocks, 1))
        self.nc = len(self.columns)

    def fit(self, train_index, train_y):
        idx, y = as_train_tensors(train_index, train_y)
        d = self.nc
        X = torch.cat([self.codes, self.oh], 1)
        ci = list(range(d))
        oi = list(range(d, X.shape[1]))
        k = self.kind
        if k == "tanimoto":
            cov = ScaleKernel(TanimotoKernel(active_dims=oi))
        elif k == "cat-ard":
            cov = ScaleKernel(CategoricalKernel(ard_num_dims=d, active_dims=ci))
        elif k == "cat-add":
            cov = ScaleKernel(
                AdditiveKernel(*[ScaleKernel(CategoricalKernel(active_dims=[i])) for i in ci])
            )
        elif k == "cat-add+ard":
            cov = ScaleKernel(
                AdditiveKernel(*[CategoricalKernel(active_dims=[i]) for i in ci])
            ) + ScaleKernel(CategoricalKernel(ard_num_dims=d, active_dims=ci))
        elif k == "tan+ard":
            cov = ScaleKernel(TanimotoKernel(active_dims=oi)) + ScaleKernel(
                CategoricalKernel(ard_num_dims=d, active_dims=ci)
            )
        elif k == "tan+add":
            cov = ScaleKernel(TanimotoKernel(active_dims=oi)) + ScaleKernel(
                AdditiveKernel(*[ScaleKernel(CategoricalKernel(active_dims=[i])) for i in ci])
            )
        else:
            raise ValueError(k)
        m = SingleTaskGP(
            X[idx],
            y,
            covar_module=cov,
            likelihood=GaussianLikelihood(noise_constraint=GreaterThan(1e-4)),
            outcome_transform=Standardize(m=1),
        )
        with robust_cholesky():
            fit_gpytorch_mll(ExactMarginalLogLikelihood(m.likelihood, m))
        m.eval()
        return FittedSurrogate(model=m, features=X)

    def config(self):
        return {"name": "cat", "kind": self.kind}


def main() -> None:
    kind = sys.argv[1]
    pools = sys.argv[2].split(",")
    seeds = range(int(sys.argv[3]))
    torch.set_num_threads(1)
    for p in pools:
        cols = list(pool(p).smiles_columns)
        covs = []
        for s in seeds:
            r = run_one(p, "onehot", s, surrogate=CatGP(kind, cols))
            covs.append(r.row["top5_coverage"])
        print(kind, p, np.mean(covs).round(3), [round(c, 3) for c in covs], flush=True)


if __name__ == "__main__":
    main()
