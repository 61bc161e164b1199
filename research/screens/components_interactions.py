"""Screen (2026-11-24): the ``components`` kernel plus pairwise component interactions.

Throwaway exploration kept for reproducibility of benchmarks/results/kernel_screens.md. The
surrogate is the ``components`` GP with extra summands: one scaled BoTorch
``CategoricalKernel`` on each pair of component codes (ligand x base, ligand x additive...),
so the marginal likelihood can give weight to combinations, not only to single components.
Variant ``all`` adds one scaled ``CategoricalKernel`` on all codes at once instead.

    OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore python research/screens/components_interactions.py \
        pairs bh1,bh2,bh3,bh4,bh5 0-9

Arguments: variant (``pairs``, ``all`` or ``none``: the plain components kernel),
comma-separated pools, seed range ``LO-HI``; ``--accept-abnormal`` keeps fits that L-BFGS
ends on an abnormal line search instead of falling back.
Prints ``variant pool seed coverage seconds fit_fallbacks`` (fits that fell back to the
Tanimoto GP).
"""

import itertools
import sys
import warnings

import torch
from botorch.exceptions.warnings import OptimizationWarning
from botorch.fit import DEFAULT_WARNING_HANDLER
from botorch.models.kernels.categorical import CategoricalKernel
from gpytorch.kernels import AdditiveKernel, ScaleKernel
from screen_tools import KernelGP, pool, run_seeds

from llmbo.encoders.fingerprints import ComponentsFeaturizer
from llmbo.surrogates.kernels import component_kernel


class ComponentsWithInteractions(KernelGP):
    """``components`` features; the components kernel plus interaction kernels on the codes.

    The fallback, as for the library's ``components`` GP, is a Tanimoto GP on the one-hot
    blocks (the trailing codes dropped).
    """

    def __init__(self, columns: list[str], variant: str, **options) -> None:
        super().__init__("components", **options)
        self.featurizer = ComponentsFeaturizer(columns=columns)
        self.variant = variant

    def featurize(self, space):
        return self.featurizer.featurize(space)

    def fallback_features(self):
        return self.features_[:, : -int(self.featurizer.n_components_)]

    def covar(self, d):
        n_codes = int(self.featurizer.n_components_)
        codes = list(range(d - n_codes, d))
        if self.variant == "none":
            return component_kernel(d, n_codes)
        if self.variant == "pairs":
            groups = list(itertools.combinations(codes, 2))
        elif self.variant == "all":
            groups = [tuple(codes)]
        else:
            raise ValueError(f"unknown variant {self.variant!r}")
        interactions = [
            ScaleKernel(CategoricalKernel(active_dims=group, ard_num_dims=len(group)))
            for group in groups
        ]
        return component_kernel(d, n_codes) + ScaleKernel(AdditiveKernel(*interactions))


def accept_abnormal_line_search(warning: warnings.WarningMessage) -> bool:
    """BoTorch's warning handler, except that a fit L-BFGS ended on an abnormal line search
    is kept rather than retried (BoTorch counts that warning as a failed attempt).
    """
    abnormal = issubclass(warning.category, OptimizationWarning) and "ABNORMAL" in str(
        warning.message
    )
    return abnormal or DEFAULT_WARNING_HANDLER(warning)


def main() -> None:
    variant = sys.argv[1]
    pools = sys.argv[2].split(",")
    lo, hi = (int(s) for s in sys.argv[3].split("-"))
    torch.set_num_threads(1)
    if "--accept-abnormal" in sys.argv:
        handler, label = accept_abnormal_line_search, variant + "+accept-abnormal"
    else:
        handler, label = None, variant
    for name in pools:
        columns = list(pool(name).smiles_columns)
        surrogate = ComponentsWithInteractions(columns, variant, warning_handler=handler)
        run_seeds([label], name, "components", range(lo, hi + 1), surrogate, ["fit_fallbacks"])


if __name__ == "__main__":
    main()
