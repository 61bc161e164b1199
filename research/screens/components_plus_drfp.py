"""Screen (2026-11-24): the ``components`` kernel plus a DRFP Tanimoto kernel, through the runner.

Throwaway exploration kept for reproducibility of benchmarks/results/kernel_screens.md. The
surrogate is the ``components`` GP with one more summand: a scaled Tanimoto kernel on the
2048-bit DRFP fingerprint of the reaction SMILES, all weights fitted by marginal likelihood.

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/components_plus_drfp.py \
        bh1,bh2,bh3,bh4,bh5 0-4

Arguments: comma-separated pools, seed range ``LO-HI``. Prints ``pool seed coverage seconds``.
"""

import sys

import torch
from gpytorch.kernels import ScaleKernel
from screen_tools import KernelGP, pool, run_seeds

from llmbo.encoders.fingerprints import ComponentsFeaturizer, DrfpFeaturizer
from llmbo.surrogates.kernels import TanimotoKernel, component_kernel


class ComponentsPlusDrfp(KernelGP):
    """``components`` features followed by DRFP bits; the sum of the two kernels."""

    def __init__(self, columns: list[str]) -> None:
        super().__init__("components")
        self.featurizer = ComponentsFeaturizer(columns=columns)
        self.drfp = DrfpFeaturizer(column="rxn")
        self.n_components_features = 0

    def featurize(self, space):
        components = self.featurizer.featurize(space).to(torch.float64)
        fingerprints = self.drfp.featurize(space).to(torch.float64)
        self.n_components_features = components.shape[1]
        return torch.cat([components, fingerprints], dim=1)

    def covar(self, d):
        start = self.n_components_features
        fingerprint_dims = tuple(range(start, d))
        return component_kernel(start, int(self.featurizer.n_components_)) + ScaleKernel(
            TanimotoKernel(active_dims=fingerprint_dims)
        )

    def fallback_features(self):
        return self.features_[:, self.n_components_features :]


def main() -> None:
    pools = sys.argv[1].split(",")
    lo, hi = (int(s) for s in sys.argv[2].split("-"))
    torch.set_num_threads(1)
    for name in pools:
        surrogate = ComponentsPlusDrfp(list(pool(name).smiles_columns))
        run_seeds([], name, "components", range(lo, hi + 1), surrogate)


if __name__ == "__main__":
    main()
