"""GPyTorch kernels that llmbo adds to the standard set."""

from __future__ import annotations

from typing import Any

import torch
from gpytorch.kernels import Kernel

__all__ = ["TanimotoKernel", "component_kernel", "tanimoto_similarity"]


def tanimoto_similarity(x1: torch.Tensor, x2: torch.Tensor, diag: bool = False) -> torch.Tensor:
    r"""Tanimoto similarity :math:`\langle x, y\rangle / (\|x\|^2 + \|y\|^2 - \langle x, y\rangle)`.

    For binary vectors this is the Jaccard index :math:`|A \cap B| / |A \cup B|` (and
    equals the MinMax similarity). Two all-zero rows have similarity 1 (they are the same
    point); an all-zero row and a non-zero row have similarity 0. Gradients stay finite.

    Args:
        x1: ``batch_shape x n x d`` tensor of non-negative features.
        x2: ``batch_shape x m x d`` tensor (``m == n`` when ``diag``).
        diag: Return only the diagonal, ``k(x1[i], x2[i])``.

    Returns:
        ``batch_shape x n x m`` tensor (``batch_shape x n`` when ``diag``).
    """
    if diag:
        dot = (x1 * x2).sum(dim=-1)
        sq1 = x1.pow(2).sum(dim=-1)
        sq2 = x2.pow(2).sum(dim=-1)
    else:
        dot = x1 @ x2.transpose(-1, -2)
        sq1 = x1.pow(2).sum(dim=-1, keepdim=True)
        sq2 = x2.pow(2).sum(dim=-1, keepdim=True).transpose(-1, -2)
    denom = sq1 + sq2 - dot
    # denom = ||x1 - x2||^2 / 2 + (||x1||^2 + ||x2||^2) / 2 >= 0, and 0 only when both are 0.
    positive = denom > 0
    safe = torch.where(positive, denom, torch.ones_like(denom))
    sim = torch.where(positive, dot / safe, torch.ones_like(denom))
    return sim.clamp(min=0.0, max=1.0)


class TanimotoKernel(Kernel):
    r"""Tanimoto (Jaccard) kernel for fingerprints and other non-negative feature vectors.

    .. math::
        k(x, x') = \frac{\langle x, x'\rangle}{\|x\|^2 + \|x'\|^2 - \langle x, x'\rangle}

    Positive semi-definite on binary vectors (its classic use, e.g. Morgan or DRFP bits);
    also used on counts and other non-negative features. No hyperparameters (wrap it in a
    :class:`gpytorch.kernels.ScaleKernel` for an output scale). All-zero rows are handled
    (see :func:`tanimoto_similarity`). Inputs: ``batch_shape x n x d``.
    """

    has_lengthscale = False
    is_stationary = False

    def forward(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor,
        diag: bool = False,
        last_dim_is_batch: bool = False,
        **params: Any,
    ) -> torch.Tensor:
        if last_dim_is_batch:
            x1 = x1.transpose(-1, -2).unsqueeze(-1)
            x2 = x2.transpose(-1, -2).unsqueeze(-1)
        return tanimoto_similarity(x1, x2, diag=diag)


def component_kernel(
    n_features: int,
    n_components: int,
    *,
    offset: int = 0,
    batch_shape: torch.Size = torch.Size(),  # noqa: B008
) -> Kernel:
    r"""Kernel on :class:`~llmbo.encoders.fingerprints.ComponentsFeaturizer` features.

    The features are one-hot blocks followed by ``n_components`` integer codes, starting at
    column ``offset``. The kernel is the sum of

    * a scaled Tanimoto kernel on the one-hot part, :math:`s / (2C - s)` for two candidates
      sharing :math:`s` of their :math:`C` components, and
    * a scaled sum of one BoTorch :class:`~botorch.models.kernels.CategoricalKernel` per
      component code, each with its own output scale and lengthscale: an additive model in
      which the marginal likelihood decides how much each component (ligand, base, ...) matters
      on its own.

    Args:
        n_features: Width of the features (one-hot columns plus codes).
        n_components: Number of code columns at the end.
        offset: Column where the features start in the model's inputs.
        batch_shape: Batch shape of the kernel's hyperparameters (ensembles).
    """
    from botorch.models.kernels.categorical import CategoricalKernel
    from gpytorch.kernels import AdditiveKernel, ScaleKernel

    n_onehot = n_features - n_components
    if n_components < 1 or n_onehot < n_components:
        raise ValueError(
            f"component_kernel needs one-hot columns followed by {n_components} codes; got "
            f"{n_features} columns."
        )
    onehot_dims = tuple(range(offset, offset + n_onehot))
    shared = ScaleKernel(
        TanimotoKernel(active_dims=onehot_dims, batch_shape=batch_shape), batch_shape=batch_shape
    )
    per_component = [
        ScaleKernel(
            CategoricalKernel(active_dims=(offset + n_onehot + c,), batch_shape=batch_shape),
            batch_shape=batch_shape,
        )
        for c in range(n_components)
    ]
    return shared + ScaleKernel(AdditiveKernel(*per_component), batch_shape=batch_shape)
