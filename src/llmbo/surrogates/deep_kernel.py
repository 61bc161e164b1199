"""LLM deep-kernel GP (GOLLuM): transformer features -> projection -> GP, trained jointly.

The encoder's trainable parts (LoRA adapters, soft tokens), the projection head and the GP
hyperparameters are optimised together by maximising the exact marginal likelihood of the
observations. After fitting, the features of the whole pool are computed once and the GP is
returned as a BoTorch model on those fixed features, so acquisition scores the pool in
large batches.

Variants measured without a gain on any benchmark (an ensemble of projection heads,
additive per-segment kernels, a kernel on the frozen features, warm starts, the
leave-one-out objective, staged/residual side fits and a cap on the learned output scale)
were removed from the core; their results are in research/LOG.md.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import gpytorch
import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from botorch.settings import validate_input_scaling
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.utils.grid import ScaleToBounds
from linear_operator.utils.errors import NotPSDError
from torch import Tensor, nn

from llmbo.encoders.base import Featurizer
from llmbo.encoders.transformer import TextEncoder
from llmbo.errors import FitError, InputError
from llmbo.space import CandidateSpace
from llmbo.surrogates.base import FittedSurrogate, Surrogate, as_train_tensors
from llmbo.surrogates.kernels import TanimotoKernel, component_kernel
from llmbo.surrogates.likelihood import gaussian_likelihood
from llmbo.surrogates.numerics import robust_cholesky

logger = logging.getLogger("llmbo.surrogates")

__all__ = [
    "AUTO_CPU_GP_MAX_TRAIN",
    "REMOVED_DEEP_KERNEL_OPTIONS",
    "DeepKernelConfig",
    "DeepKernelGP",
]

#: Largest training set whose GP ``gp_device="auto"`` keeps on the CPU when the encoder
#: runs on an accelerator. Measured only at 10-60 points (on an H100, 100 steps of the exact
#: marginal likelihood on 60 points took 0.45 s on the GPU and 0.32 s on the host's CPU;
#: benchmarks/results/RESULTS.md); the cap itself is a conservative guess, below which the
#: O(n^3) Cholesky stays cheap on a CPU.
AUTO_CPU_GP_MAX_TRAIN = 1024

#: How a side kernel's hyperparameters are fitted (``DeepKernelConfig.side_fit``).
SideFit = Literal["joint", "fixed"]
#: Where the GP algebra runs (``DeepKernelConfig.gp_device``).
GPDevice = Literal["auto", "cpu", "encoder"]

#: Options of earlier versions that measured no gain and were removed, with the value that
#: meant "off": a stored study that has them at that value still opens (see ``from_dict``).
REMOVED_DEEP_KERNEL_OPTIONS: dict[str, Any] = {
    "warm_start": False,
    "warm_steps": None,
    "frozen_kernel": False,
    "ensemble": 1,
    "additive": False,
    "deep_outputscale_max": None,
    "objective": "mll",
}


@dataclass
class DeepKernelConfig:
    """Training settings of the deep kernel (defaults follow GOLLuM where it states them).

    Attributes:
        projection_dim: Width of the Linear+ELU projection head; ``None`` feeds pooled
            features to the GP directly.
        steps: AdamW steps on the exact marginal likelihood per fit.
        lr: Learning rate of the encoder's trainable parameters and the projection.
        gp_lr: Learning rate of the GP hyperparameters.
        weight_decay: AdamW weight decay.
        noise_lower_bound: Smallest GP noise variance (standardised units).
        lengthscale_init: ``"median"`` starts the Matérn lengthscale at the median
            pairwise distance of the initial training features; ``"default"`` keeps
            GPyTorch's initial value.
        side_fit: How the side kernel's hyperparameters (``side_features``) are fitted.
            ``"joint"`` trains them with the network by AdamW from GPyTorch's initial
            values. ``"fixed"`` first fits a GP on the side features alone to convergence
            (L-BFGS, as for a fixed-feature GP), starts the joint model from it (side kernel,
            mean and noise) with the learned kernel's output scale at
            ``deep_outputscale_init``, and keeps the side kernel's hyperparameters at that
            fit while the rest trains: the learned kernel models what the side kernel
            leaves unexplained.
        deep_outputscale_init: Initial output scale of the learned kernel in a ``fixed``
            side fit (standardised units).
        gp_device: Where the GP algebra (kernel matrix, Cholesky, marginal likelihood,
            posterior) runs while the encoder runs on an accelerator. An exact GP on tens to
            hundreds of points is a few hundred tiny kernels per training step, so on a GPU
            it waits on kernel launches and host syncs, not arithmetic. ``"auto"`` runs it
            on the CPU up to ``AUTO_CPU_GP_MAX_TRAIN`` training points and on the encoder's
            device above; ``"cpu"`` and ``"encoder"`` force one or the other. The encoder
            and projection head stay on their device either way, and gradients flow across.
    """

    projection_dim: int | None = 64
    steps: int = 100
    lr: float = 2e-3
    gp_lr: float = 0.05
    weight_decay: float = 1e-3
    noise_lower_bound: float = 1e-4
    lengthscale_init: Literal["median", "default"] = "median"
    side_fit: SideFit = "joint"
    deep_outputscale_init: float = 0.1
    gp_device: GPDevice = "auto"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("gp_device", GPDevice),
            ("side_fit", SideFit),
            ("lengthscale_init", Literal["median", "default"]),
        ):
            value, choices = getattr(self, name), get_args(allowed)
            if value not in choices:
                raise InputError(
                    f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}."
                )
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise InputError(f"steps must be an integer >= 0, got {self.steps!r}.")
        if not self.deep_outputscale_init > 0:
            raise InputError(
                f"deep_outputscale_init must be positive, got {self.deep_outputscale_init!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeepKernelConfig:
        """Rebuild from stored settings; removed options are accepted at their "off" value
        (studies written before they were removed) and refused otherwise."""
        data = dict(data)
        for key, off in REMOVED_DEEP_KERNEL_OPTIONS.items():
            if key in data and data.pop(key) != off:
                raise InputError(
                    f"deep_kernel.{key} was removed from llmbo (it measured no gain; "
                    "research/LOG.md); open this study with the llmbo version that wrote it."
                )
        if data.get("side_fit") in ("staged", "residual"):
            raise InputError(
                f"side_fit={data['side_fit']!r} was removed from llmbo (it measured no gain; "
                "research/LOG.md); use 'joint' or 'fixed'."
            )
        return cls(**data)


class _FeatureHead(nn.Module):
    """Projection (optional) followed by scaling of features to [-1, 1]."""

    def __init__(self, in_dim: int, out_dim: int | None) -> None:
        super().__init__()
        self.proj: nn.Module = (
            nn.Sequential(nn.Linear(in_dim, out_dim), nn.ELU()) if out_dim else nn.Identity()
        )
        self.scale = ScaleToBounds(-1.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale(self.proj(x)).to(torch.float64)


class DeepKernelGP(Surrogate):
    """GP whose inputs are learned features of a (partly trainable) transformer.

    Args:
        encoder: A :class:`TextEncoder`; with LoRA/soft tokens its parameters are trained.
        config: Training settings.
        name: Label recorded in studies (``"projection"``, ``"lora"``, ...).
        side_featurizer: Features of a side kernel added to the learned one (``side_fit``).
        noise_prior: BoTorch's default LogNormal(-4, 1) prior on the noise variance, with
            the noise starting at its mode (see
            :func:`~llmbo.surrogates.likelihood.gaussian_likelihood`); off by default.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        config: DeepKernelConfig | None = None,
        *,
        name: str = "deep_kernel",
        side_featurizer: Featurizer | None = None,
        noise_prior: bool = False,
    ) -> None:
        super().__init__()
        self.noise_prior = noise_prior
        self.encoder = encoder
        self.side_featurizer = side_featurizer
        self._side: Tensor | None = None
        self.config_ = config or DeepKernelConfig()
        if self.config_.side_fit != "joint" and side_featurizer is None:
            raise InputError(
                f"side_fit={self.config_.side_fit!r} fits a side kernel first: give side "
                "features (side_features; CLI --side-features)."
            )
        self.name = name  # type: ignore[misc]
        self._head: _FeatureHead | None = None

    def reset(self) -> None:
        """Drop the projection head (a new one is drawn at the next fit)."""
        self._head = None

    def fallback(self, space: CandidateSpace) -> Surrogate | None:
        """A GP on the frozen embeddings of the same transformer (the ``static`` surrogate
        of this model): trainable encoder parts are reset, constant columns dropped."""
        from llmbo.surrogates.feature_gp import fixed_feature_gp

        self.encoder.reset_parameters()
        features = self.encoder.embed()
        self.reset()
        return fixed_feature_gp(features, space, kernel="matern", name="static")

    def input_features(self) -> Tensor | None:
        """The encoder's pooled embeddings with its trainable parts as they are now (before
        the first fit: the pretrained model's)."""
        with torch.no_grad():
            return self.encoder.embed()

    def _prepare(self, space: CandidateSpace, *, progress: bool) -> None:
        self.encoder.prepare(space.texts, progress=progress)
        if self.side_featurizer is not None:
            side = self.side_featurizer.featurize(space).to(self.encoder.device, torch.float64)
            self._side = side
        self._head = None

    # ------------------------------------------------------------------ pieces
    def _new_gp(self, z: Tensor, y: Tensor, covar: Kernel | None = None) -> SingleTaskGP:
        """The GP on features ``z``; ``covar`` replaces the configured kernel sum."""
        d = z.shape[-1] - self._side_dims()
        # Features live in [-1, 1] by construction; BoTorch's unit-cube check does not apply.
        with validate_input_scaling(False):
            return SingleTaskGP(
                z,
                y,
                covar_module=covar if covar is not None else self._covar(d),
                mean_module=ConstantMean(),
                likelihood=gaussian_likelihood(
                    self.config_.noise_lower_bound, noise_prior=self.noise_prior
                ),
                outcome_transform=Standardize(m=1) if y.shape[0] > 1 else None,
            ).to(z.device)

    def _fixed_side_gp(self, z: Tensor, y: Tensor) -> SingleTaskGP | None:
        """The joint GP started from a converged fit of the side kernel alone, whose
        hyperparameters then stay fixed (``side_fit="fixed"``).

        Returns ``None`` (joint training from scratch) when the side-only fit fails.
        """
        d = z.shape[-1] - self._side_dims()
        side_gp = self._new_gp(z, y, covar=self._side_kernel(d))
        try:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(side_gp.likelihood, side_gp))
        except (ModelFittingError, NotPSDError) as exc:
            logger.warning("Side-kernel fit failed (%s); training the deep kernel jointly.", exc)
            return None
        side = side_gp.covar_module
        gp = self._new_gp(z, y, covar=self._covar(d, side=side))
        gp.mean_module.load_state_dict(side_gp.mean_module.state_dict())
        gp.likelihood.load_state_dict(side_gp.likelihood.state_dict())
        gp.covar_module.kernels[0].outputscale = self.config_.deep_outputscale_init
        side.requires_grad_(False)
        return gp

    def _side_dims(self) -> int:
        return self._side.shape[1] if self._side is not None else 0

    def _covar(self, d: int, side: Kernel | None = None) -> Kernel:
        """Matérn-5/2 on the learned features, plus the side kernel when configured (a sum
        of scaled kernels). ``side`` is an already fitted side kernel to use."""
        if self._side is None:
            return ScaleKernel(MaternKernel(nu=2.5))
        learned = ScaleKernel(MaternKernel(nu=2.5, active_dims=tuple(range(d))))
        return learned + (side if side is not None else self._side_kernel(d))

    def _side_kernel(self, start: int) -> Kernel:
        """Kernel on the side features (columns ``start``...): the component kernel for
        :class:`~llmbo.encoders.fingerprints.ComponentsFeaturizer` features, a scaled
        Matérn-ARD (BoTorch's dimension-scaled lengthscale prior) for featurizers whose
        ``side_kernel`` says so (numeric configurations), else Tanimoto."""
        assert self._side is not None
        n = self._side.shape[1]
        dims = tuple(range(start, start + n))
        components = getattr(self.side_featurizer, "n_components_", None)
        if components is not None:
            return component_kernel(n, int(components), offset=start)
        if getattr(self.side_featurizer, "side_kernel", "tanimoto") == "matern-ard":
            return ScaleKernel(
                get_covar_module_with_dim_scaled_prior(
                    ard_num_dims=n, use_rbf_kernel=False, active_dims=dims
                )
            )
        return ScaleKernel(TanimotoKernel(active_dims=dims))

    def features(self, index: Tensor) -> Tensor:
        """Differentiable GP inputs (``n x d``, float64) for pool rows ``index``."""
        assert self._head is not None
        return self._with_side(self._head(self.encoder(index)), index)

    def _with_side(self, z: Tensor, index: Tensor | None = None) -> Tensor:
        """Append the side features of rows ``index`` (all rows if None)."""
        if self._side is None:
            return z
        rows = self._side if index is None else self._side[index.to(self._side.device)]
        return torch.cat([z, rows], dim=-1)

    # --------------------------------------------------------------------- fit
    def fit(self, train_index: Tensor, train_y: Tensor) -> FittedSurrogate:
        idx, y = as_train_tensors(train_index, train_y)
        device = self.encoder.device
        y = y.to(self.gp_device_for(len(idx)))
        last_error: Exception | None = None
        for attempt, jitter in enumerate((1e-6, 1e-5, 1e-4, 1e-3)):
            self.encoder.reset_parameters()
            self._head = _FeatureHead(self.encoder.output_size, self.config_.projection_dim)
            self._head.to(device)
            try:
                with robust_cholesky(jitter=jitter):
                    return self._fit(idx, y)
            except NotPSDError as exc:  # pragma: no cover - exercised via reliability tests
                last_error = exc
                logger.warning(
                    "Deep-kernel fit hit a non-positive-definite matrix (attempt %d, jitter %.0e); "
                    "retrying with more jitter.",
                    attempt + 1,
                    jitter,
                )
        raise FitError(
            f"Deep-kernel GP fit failed after jitter retries: {last_error}"
        ) from last_error

    def gp_device_for(self, n_train: int) -> torch.device:
        """Device of the GP algebra for ``n_train`` training points (``gp_device``)."""
        encoder = self.encoder.device
        choice = self.config_.gp_device
        if encoder.type == "cpu" or choice == "encoder":
            return encoder
        if choice == "cpu" or n_train <= AUTO_CPU_GP_MAX_TRAIN:
            return torch.device("cpu")
        return encoder

    def _fit(self, idx: Tensor, y: Tensor) -> FittedSurrogate:
        """One training run; ``y`` is already on the GP's device (:meth:`gp_device_for`)."""
        assert self._head is not None
        head = self._head
        with torch.no_grad():
            z0 = self.features(idx).to(y.device)
        gp = self._fixed_side_gp(z0, y) if self.config_.side_fit == "fixed" else None
        if gp is None:
            gp = self._new_gp(z0, y)
        if self.config_.lengthscale_init == "median":
            self._init_lengthscale(gp, z0)
        mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
        net_params = [*self.encoder.trainable_parameters(), *head.parameters()]
        gp_params = [p for p in gp.parameters() if p.requires_grad]
        groups = [{"params": gp_params, "lr": self.config_.gp_lr}]
        if net_params:
            groups.insert(0, {"params": net_params, "lr": self.config_.lr})
        opt = torch.optim.AdamW(groups, weight_decay=self.config_.weight_decay)
        gp.train()
        head.train()
        losses: list[Tensor] = []
        # The kernel matrix is needed at once on every step: skip GPyTorch's lazy-kernel
        # bookkeeping and debug checks (same arithmetic, less Python per step).
        with gpytorch.settings.lazily_evaluate_kernels(False), gpytorch.settings.debug(False):
            for _ in range(self.config_.steps):
                opt.zero_grad(set_to_none=True)
                z = self.features(idx).to(y.device)
                gp.set_train_data(inputs=z, strict=False)
                loss = -mll(gp(z), gp.train_targets).sum()
                loss.backward()
                opt.step()
                losses.append(loss.detach())  # read once after the loop, not every step
        # Final pass in train mode fixes the feature scaling on the training set.
        with torch.no_grad():
            self.features(idx)
        head.eval()
        with torch.no_grad():
            z_all = self._with_side(head(self.encoder.embed())).to(y.device)
        gp.set_train_data(inputs=z_all[..., idx, :], strict=False)
        gp.eval()
        return FittedSurrogate(
            model=gp, features=z_all.detach(), losses=torch.stack(losses).tolist() if losses else []
        )

    def _init_lengthscale(self, gp: SingleTaskGP, z: Tensor) -> None:
        """Median heuristic: start the Matérn lengthscale at the median pairwise distance."""
        d = z.shape[-1] - self._side_dims()
        if z.shape[-2] < 2:
            return
        median = torch.pdist(z[..., :d]).median()
        if not bool(median > 1e-6):
            return
        covar = gp.covar_module
        matern = covar.kernels[0] if hasattr(covar, "kernels") else covar
        shape = matern.base_kernel.lengthscale.shape
        matern.base_kernel.lengthscale = median.reshape(1, 1).expand(shape)

    def config(self) -> dict[str, Any]:
        enc = self.encoder
        return {
            "name": self.name,
            "encoder": enc.config.to_dict(),
            "top_layers": enc.n_top,
            "top_module": enc.top_module_name,
            "lora": dict(enc.lora_settings) if enc.lora_settings is not None else None,
            "soft_tokens": enc.n_soft,
            "side_features": type(self.side_featurizer).__name__ if self.side_featurizer else None,
            "noise_prior": self.noise_prior,
            "deep_kernel": self.config_.to_dict(),
        }
