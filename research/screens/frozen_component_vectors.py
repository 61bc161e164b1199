"""Screen (2026-11-24): components kernel + one Matérn per component on frozen MiniLM vectors.

Throwaway exploration kept for reproducibility of benchmarks/results/kernel_screens.md; the
library's registered methods are what the results tables use.

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/frozen_component_vectors.py perseg bh3 10

Arguments: kind (``perseg``: one Matérn per component segment; ``joint``: one over all),
comma-separated pools, number of seeds (0..N-1).
"""

import math
import sys

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior
from screen_tools import PreparedSurrogate, pool, pool_space

from llmbo.benchmarks.runner import run_one
from llmbo.encoders.embeddings import EmbeddingFeaturizer
from llmbo.encoders.fingerprints import ComponentsFeaturizer
from llmbo.encoders.transformer import EncoderConfig
from llmbo.surrogates import FittedSurrogate
from llmbo.surrogates.base import as_train_tensors
from llmbo.surrogates.kernels import component_kernel
from llmbo.surrogates.numerics import robust_cholesky


class Mix(PreparedSurrogate):
    def __init__(self, kind, columns, names_space):
        super().__init__()
        self.kind = kind
        self.columns = columns
        self.name = "components"
        self.names_space = names_space

    def setup(self, space):
        f = ComponentsFeaturizer(columns=self.columns)
        c = f.featurize(space)
        self.nc = f.n_components_
        self.nfeat = c.shape[1]
        emb = EmbeddingFeaturizer(
            EncoderConfig(model="minilm", device="cpu", pooling="segments", segment_separator="; ")
        ).featurize(self.names_space)
        lo, hi = emb.min(0).values, emb.max(0).values
        emb = (emb - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        self.X = torch.cat([c, emb], 1)
        self.nseg = 4
        self.w = emb.shape[1] // 4

    def fit(self, train_index, train_y):
        idx, y = as_train_tensors(train_index, train_y)
        cov = component_kernel(self.nfeat, self.nc)

        def mat(dims):
            n = len(dims)
            prior = LogNormalPrior(loc=math.sqrt(2) + 0.5 * math.log(n), scale=math.sqrt(3))
            k = MaternKernel(
                nu=2.5,
                active_dims=tuple(dims),
                lengthscale_prior=prior,
                lengthscale_constraint=GreaterThan(2.5e-2),
            )
            k.lengthscale = prior.mode
            return ScaleKernel(k)

        start = self.nfeat
        if self.kind == "perseg":
            for s in range(self.nseg):
                cov = cov + mat(range(start + s * self.w, start + (s + 1) * self.w))
        elif self.kind == "joint":
            cov = cov + mat(range(start, start + self.nseg * self.w))
        m = SingleTaskGP(
            self.X[idx],
            y,
            covar_module=cov,
            likelihood=GaussianLikelihood(noise_constraint=GreaterThan(1e-4)),
            outcome_transform=Standardize(m=1),
        )
        with robust_cholesky():
            fit_gpytorch_mll(ExactMarginalLogLikelihood(m.likelihood, m))
        m.eval()
        return FittedSurrogate(model=m, features=self.X)

    def config(self):
        return {"name": "mix", "kind": self.kind}


def main() -> None:
    kind = sys.argv[1]
    pools = sys.argv[2].split(",")
    seeds = range(int(sys.argv[3]))
    torch.set_num_threads(1)
    for p in pools:
        cols = list(pool(p).smiles_columns)
        sur = Mix(kind, cols, pool_space(p, "names"))
        covs = []
        for s in seeds:
            r = run_one(p, "components", s, surrogate=sur, template="procedure")
            covs.append(r.row["top5_coverage"])
            print(kind, p, s, covs[-1], r.row["seconds"], flush=True)
        print("MEAN", kind, p, np.mean(covs).round(3), [round(c, 3) for c in covs], flush=True)


if __name__ == "__main__":
    main()
