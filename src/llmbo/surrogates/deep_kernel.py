"""LLM deep-kernel GP (GOLLuM): transformer features -> projection -> GP, trained jointly.

The encoder's trainable parts (LoRA adapters, soft tokens), the projection head and the GP
hyperparameters are optimised together by maximising the exact marginal likelihood of the
observations. After fitting, the features of the whole pool are computed once and the GP is
returned as a BoTorch model on those fixed features, so acquisition scores the pool in
large batches.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import gpytorch
import torch
from botorch.exceptions.errors import ModelFittingError
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior
from botorch.settings import validate_input_scaling
from gpytorch.constraints import GreaterThan, Interval
from gpytorch.kernels import Kernel, MaternKernel, ScaleKernel
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood, LeaveOneOutPseudoLikelihood
from gpytorch.priors import LogNormalPrior
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

__all__ = ["AUTO_CPU_GP_MAX_TRAIN", "DeepKernelConfig", "DeepKernelGP", "EnsembleDeepKernelGP"]

#: Largest training set whose GP ``gp_device="auto"`` keeps on the CPU when the encoder
#: runs on an accelerator. Measured only at 10-60 points (on an H100, 100 steps of the exact
#: marginal likelihood on 60 points took 0.45 s on the GPU and 0.32 s on the host's CPU;
#: benchmarks/results/RESULTS.md); the cap itself is a conservative guess, below which the
#: O(n^3) Cholesky stays cheap on a CPU.
AUTO_CPU_GP_MAX_TRAIN = 1024

#: Lower end of the learned kernel's output scale when ``deep_outputscale_max`` caps it.
CAPPED_SCALE_FLOOR = 1e-6

#: How a side kernel's hyperparameters are fitted (``DeepKernelConfig.side_fit``).
SideFit = Literal["joint", "staged", "fixed", "residual"]
#: Where the GP algebra runs (``DeepKernelConfig.gp_device``).
GPDevice = Literal["auto", "cpu", "encoder"]
#: What the deep kernel's training maximises (``DeepKernelConfig.objective``).
Objective = Literal["mll", "loo"]


@dataclass
class DeepKernelConfig:
    """Training settings of the deep kernel (defaults follow GOLLuM where it states them).

    Attributes:
        projection_dim: Width of the Linear+ELU projection head; ``None`` feeds pooled
            features to the GP directly.
        steps: AdamW steps on the training objective per fit.
        lr: Learning rate of the encoder's trainable parameters and the projection.
        gp_lr: Learning rate of the GP hyperparameters.
        weight_decay: AdamW weight decay.
        noise_lower_bound: Smallest GP noise variance (standardised units).
        warm_start: Continue from the previous fit's parameters instead of re-initialising
            (fewer steps needed; results then depend on the fit history).
        warm_steps: Steps used for warm-started fits (``None``: ``steps``).
        lengthscale_init: ``"median"`` starts the Matérn lengthscale at the median
            pairwise distance of the initial training features; ``"default"`` keeps
            GPyTorch's initial value.
        frozen_kernel: Add a Matérn kernel on the encoder's frozen pooled features (before
            LoRA and projection; scaled to the pool's range, one lengthscale with BoTorch's
            dimension-scaled prior) to the learned kernel. The learned features can pull
            candidates together and make the GP overconfident away from its data; the
            frozen part keeps some uncertainty there.
        ensemble: Number of deep kernels trained side by side from different random
            projection heads (on the same encoder output) and read as an equal-weight
            mixture. Each member's fit can collapse candidates it has not seen onto its
            data; where members disagree the mixture keeps the uncertainty one member
            loses. The cost per step grows little (one batched GP), acquisition averages
            over members (BoTorch's ensemble convention).
        additive: With segment pooling (one vector per reaction component), give each
            segment its own projection (``projection_dim`` split evenly) and add one
            Matérn kernel per segment to the Matérn kernel over all of them. The GP can
            then credit a component's effect on its own and carry it to untested
            combinations, as well as learn interactions.
        side_fit: How the side kernel's hyperparameters (``side_features``) are fitted.
            ``"joint"`` trains them with the network by AdamW from GPyTorch's initial
            values. ``"staged"`` first fits a GP on the side features alone to convergence
            (L-BFGS, as for a fixed-feature GP), starts the joint model from it (side kernel,
            mean and noise) with the learned kernel's output scale at
            ``deep_outputscale_init``, then trains everything jointly. ``"fixed"`` does the
            same but keeps the side kernel's hyperparameters at the staged fit. The learned
            kernel then models what the side kernel leaves unexplained. ``"residual"`` also
            keeps the side fit's constant mean and noise, so the learned kernel can only add
            covariance on top of that fit and cannot shrink its noise estimate.
        deep_outputscale_init: Initial output scale of the learned kernel in a staged fit
            (standardised units).
        deep_outputscale_max: Upper bound on the learned kernel's output scale when a side
            kernel is staged (``None``: unbounded; it also holds if the side-only fit fails
            and training falls back to a joint fit). It caps how much of the data's variance
            the learned kernel may claim next to the side kernel, which in ``fixed`` fits
            otherwise rose to about 1.
        gp_device: Where the GP algebra (kernel matrix, Cholesky, marginal likelihood,
            posterior) runs while the encoder runs on an accelerator. An exact GP on tens to
            hundreds of points is a few hundred tiny kernels per training step, so on a GPU
            it waits on kernel launches and host syncs, not arithmetic. ``"auto"`` runs it
            on the CPU up to ``AUTO_CPU_GP_MAX_TRAIN`` training points and on the encoder's
            device above; ``"cpu"`` and ``"encoder"`` force one or the other. The encoder
            and projection head stay on their device either way, and gradients flow across.
        objective: What the training steps maximise. ``"mll"``: the exact marginal log
            likelihood (GOLLuM). ``"loo"``: the leave-one-out predictive log likelihood
            (GPyTorch's ``LeaveOneOutPseudoLikelihood``; Rasmussen & Williams, sec. 5.4.2),
            which scores each observation by the GP's prediction from the others. It measures
            predictive calibration directly and is reported to be more robust when the kernel
            is misspecified. The features are still learned from every observation, so it
            does not by itself keep a flexible feature map from overfitting. A side-only fit
            (``side_fit``) is always by marginal likelihood (L-BFGS).
    """

    projection_dim: int | None = 64
    steps: int = 100
    lr: float = 2e-3
    gp_lr: float = 0.05
    weight_decay: float = 1e-3
    noise_lower_bound: float = 1e-4
    warm_start: bool = False
    warm_steps: int | None = None
    lengthscale_init: Literal["median", "default"] = "median"
    frozen_kernel: bool = False
    ensemble: int = 1
    additive: bool = False
    side_fit: SideFit = "joint"
    deep_outputscale_init: float = 0.1
    deep_outputscale_max: float | None = None
    gp_device: GPDevice = "auto"
    objective: Objective = "mll"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("gp_device", GPDevice),
            ("side_fit", SideFit),
            ("objective", Objective),
        ):
            value, choices = getattr(self, name), get_args(allowed)
            if value not in choices:
                raise InputError(
                    f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}."
                )
        if self.side_fit != "joint" and (self.ensemble > 1 or self.warm_start):
            raise InputError(
                f"side_fit={self.side_fit!r} refits the side GP at every fit for a single deep "
                "kernel: use ensemble=1 and warm_start=False."
            )
        if not self.deep_outputscale_init > 0:
            raise InputError(
                f"deep_outputscale_init must be positive, got {self.deep_outputscale_init!r}."
            )
        cap, init = self.deep_outputscale_max, self.deep_outputscale_init
        if cap is not None and not (
            self.side_fit != "joint" and CAPPED_SCALE_FLOOR < init < cap < math.inf
        ):
            raise InputError(
                f"deep_outputscale_max={cap!r} bounds the learned kernel of a staged fit: use it "
                "with side_fit 'staged', 'fixed' or 'residual', finite and above "
                f"deep_outputscale_init ({init!r}), which must exceed {CAPPED_SCALE_FLOOR:g}."
            )
        if self.additive and (not self.projection_dim or self.ensemble > 1):
            raise InputError("additive needs a projection head (projection_dim) and no ensemble.")
        if int(self.ensemble) < 1:
            raise InputError(f"ensemble must be at least 1, got {self.ensemble!r}.")
        if self.ensemble > 1 and not self.projection_dim:
            raise InputError(
                "An ensemble needs a projection head (projection_dim): without one every "
                "member would see the same features."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class _SegmentHead(nn.Module):
    """One Linear+ELU projection per segment of segment-pooled features, then scaling.

    Input ``n x (segments * width)``; output ``n x (segments * per_segment)`` in [-1, 1],
    segment ``s`` in columns ``s * per_segment ... (s + 1) * per_segment - 1``.
    """

    def __init__(self, width: int, segments: int, per_segment: int) -> None:
        super().__init__()
        self.width, self.segments, self.per_segment = width, segments, per_segment
        self.projs = nn.ModuleList(
            nn.Sequential(nn.Linear(width, per_segment), nn.ELU()) for _ in range(segments)
        )
        self.scale = ScaleToBounds(-1.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        parts = x.reshape(*x.shape[:-1], self.segments, self.width).unbind(-2)
        z = torch.cat([proj(part) for proj, part in zip(self.projs, parts, strict=True)], -1)
        return self.scale(z).to(torch.float64)


class _EnsembleHead(nn.Module):
    """``members`` independent projection heads on the same input: ``members x n x d``."""

    def __init__(self, in_dim: int, out_dim: int, members: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(_FeatureHead(in_dim, out_dim) for _ in range(members))

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([head(x) for head in self.heads])


class EnsembleDeepKernelGP(SingleTaskGP):
    """A batch of deep-kernel GPs read as an equal-weight mixture (a BoTorch ensemble).

    The model's inputs are the members' feature vectors side by side (``... x q x m*d``),
    so a pool keeps one feature row per candidate; :meth:`posterior` splits them and
    returns a :class:`~botorch.posteriors.GaussianMixturePosterior` with the members at
    ``MCMC_DIM``, which BoTorch's acquisition functions average over.
    """

    _is_ensemble = True

    @property
    def num_members(self) -> int:
        return int(self.train_inputs[0].shape[-3])

    def split_features(self, X: Tensor) -> Tensor:
        """``... x q x (m*d)`` side-by-side features -> ``... x m x q x d``."""
        m = self.num_members
        return X.reshape(*X.shape[:-1], m, X.shape[-1] // m).movedim(-2, -3)

    def posterior(  # type: ignore[override]
        self,
        X: Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | Tensor = False,
        posterior_transform: Any = None,
        **kwargs: Any,
    ) -> GaussianMixturePosterior:
        post = super().posterior(
            self.split_features(X),
            output_indices=output_indices,
            observation_noise=observation_noise,
            posterior_transform=posterior_transform,
            **kwargs,
        )
        return GaussianMixturePosterior(distribution=post.distribution)

    def condition_on_observations(self, X: Tensor, Y: Tensor, **kwargs: Any) -> Any:
        X_split = self.split_features(X)
        Y = Y.unsqueeze(-3).expand(*X_split.shape[:-1], Y.shape[-1])
        return super().condition_on_observations(X_split, Y, **kwargs)


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
        self._frozen: Tensor | None = None
        self.config_ = config or DeepKernelConfig()
        if self.config_.side_fit != "joint" and side_featurizer is None:
            raise InputError(
                f"side_fit={self.config_.side_fit!r} fits a side kernel first: give side "
                "features (SurrogateSpec side_features, CLI --side-features)."
            )
        self.name = name  # type: ignore[misc]
        self._head: _FeatureHead | _EnsembleHead | _SegmentHead | None = None
        self._gp_state: dict[str, Tensor] | None = None

    def reset(self) -> None:
        """Drop the warm-start state (projection head, GP hyperparameters)."""
        self._head = None
        self._gp_state = None

    def fallback(self, space: CandidateSpace) -> Surrogate | None:
        """A GP on the frozen embeddings of the same transformer (the ``static`` surrogate
        of this model): trainable encoder parts are reset, constant columns dropped."""
        from llmbo.surrogates.feature_gp import fixed_feature_gp

        self.encoder.reset_parameters()
        features = self.encoder.embed()
        self.reset()  # its warm-start state no longer matches the reset encoder
        return fixed_feature_gp(features, space, kernel="matern", name="static")

    def _prepare(self, space: CandidateSpace, *, progress: bool) -> None:
        self.encoder.prepare(space.texts, progress=progress)
        if self.side_featurizer is not None:
            side = self.side_featurizer.featurize(space).to(self.encoder.device, torch.float64)
            self._side = side
        if self.config_.frozen_kernel:
            self._frozen = self._frozen_features(progress=progress)
        self._head = None
        self._gp_state = None

    # ------------------------------------------------------------------ pieces
    def _new_head(self) -> _FeatureHead | _EnsembleHead | _SegmentHead:
        if self.config_.additive:
            segments = self._segments()
            assert self.config_.projection_dim
            per = max(4, self.config_.projection_dim // segments)
            return _SegmentHead(self.encoder.output_size // segments, segments, per)
        members = int(self.config_.ensemble)
        if members > 1:
            assert self.config_.projection_dim
            return _EnsembleHead(self.encoder.output_size, self.config_.projection_dim, members)
        return _FeatureHead(self.encoder.output_size, self.config_.projection_dim)

    def _new_gp(self, z: Tensor, y: Tensor, covar: Kernel | None = None) -> SingleTaskGP:
        # Features live in [-1, 1] by construction; BoTorch's unit-cube check does not apply.
        with validate_input_scaling(False):
            return self._build_gp(z, y, covar)

    def _staged_gp(self, z: Tensor, y: Tensor) -> SingleTaskGP | None:
        """The joint GP started from a converged fit of the side kernel alone (``side_fit``).

        Returns ``None`` (joint training from scratch) when the side-only fit fails.
        """
        d = z.shape[-1] - self._extra_dims()
        side_gp = self._new_gp(z, y, covar=self._side_kernel(d, torch.Size()))
        try:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(side_gp.likelihood, side_gp))
        except (ModelFittingError, NotPSDError) as exc:
            logger.warning("Side-kernel fit failed (%s); training the deep kernel jointly.", exc)
            return None
        side = side_gp.covar_module
        gp = self._new_gp(z, y, covar=self._covar(d, torch.Size(), side=side))
        gp.mean_module.load_state_dict(side_gp.mean_module.state_dict())
        gp.likelihood.load_state_dict(side_gp.likelihood.state_dict())
        gp.covar_module.kernels[0].outputscale = self.config_.deep_outputscale_init
        if self.config_.side_fit in ("fixed", "residual"):
            side.requires_grad_(False)
        if self.config_.side_fit == "residual":
            gp.mean_module.requires_grad_(False)
            gp.likelihood.requires_grad_(False)
        return gp

    @torch.no_grad()
    def _frozen_features(self, *, progress: bool) -> Tensor:
        """Pooled features of the untrained encoder, scaled to [0, 1] per dimension."""
        if self.encoder.n_soft:
            raise InputError(
                "frozen_kernel needs the encoder's untrained features; it cannot be combined "
                "with soft tokens (they are random until trained)."
            )
        self.encoder.reset_parameters()  # fresh LoRA: B = 0, the pretrained model
        x = self.encoder.embed(progress=progress).to(torch.float64)
        lo, hi = x.min(0).values, x.max(0).values
        return (x - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))

    def _extra_dims(self) -> int:
        return sum(t.shape[1] for t in (self._side, self._frozen) if t is not None)

    def _segments(self) -> int:
        """Number of pooled segments (components) of the encoder's features."""
        enc = self.encoder
        segments = enc.output_size // enc.hidden_size
        if enc.config.pooling != "segments" or segments < 2:
            raise InputError(
                "additive kernels need segment pooling with at least two segments "
                "(encoder.pooling='segments'; a -seg benchmark method)."
            )
        return segments

    def _covar(self, d: int, batch: torch.Size, side: Kernel | None = None) -> Kernel:
        """Matérn-5/2 on the learned features, plus Tanimoto on side fingerprints and a
        Matérn on frozen features when configured (a sum of scaled kernels).

        ``side`` is an already fitted side kernel to use (staged fits)."""
        if self._side is None and self._frozen is None and not self.config_.additive:
            return ScaleKernel(MaternKernel(nu=2.5, batch_shape=batch), batch_shape=batch)
        cap = self.config_.deep_outputscale_max
        kernel: Kernel = ScaleKernel(
            MaternKernel(nu=2.5, active_dims=tuple(range(d)), batch_shape=batch),
            batch_shape=batch,
            outputscale_constraint=None if cap is None else Interval(CAPPED_SCALE_FLOOR, cap),
        )
        if self.config_.additive:
            segments = self._segments()
            per = d // segments
            for s in range(segments):
                dims = tuple(range(s * per, (s + 1) * per))
                kernel = kernel + ScaleKernel(MaternKernel(nu=2.5, active_dims=dims))
        start = d
        if self._side is not None:
            kernel = kernel + (side if side is not None else self._side_kernel(start, batch))
            start += self._side.shape[1]
        if self._frozen is not None:
            n = self._frozen.shape[1]
            prior = LogNormalPrior(loc=math.sqrt(2) + 0.5 * math.log(n), scale=math.sqrt(3))
            frozen = MaternKernel(
                nu=2.5,
                active_dims=tuple(range(start, start + n)),
                lengthscale_prior=prior,
                lengthscale_constraint=GreaterThan(2.5e-2),
                batch_shape=batch,
            )
            frozen.lengthscale = prior.mode
            kernel = kernel + ScaleKernel(frozen, batch_shape=batch)
        return kernel

    def _side_kernel(self, start: int, batch: torch.Size) -> Kernel:
        """Kernel on the side features (columns ``start``...): Tanimoto, or the component
        kernel for :class:`~llmbo.encoders.fingerprints.ComponentsFeaturizer` features."""
        assert self._side is not None
        n = self._side.shape[1]
        components = getattr(self.side_featurizer, "n_components_", None)
        if components is not None:
            return component_kernel(n, int(components), offset=start, batch_shape=batch)
        dims = tuple(range(start, start + n))
        return ScaleKernel(TanimotoKernel(active_dims=dims, batch_shape=batch), batch_shape=batch)

    def _build_gp(self, z: Tensor, y: Tensor, covar: Kernel | None = None) -> SingleTaskGP:
        """The GP on features ``z``; ``covar`` replaces the configured kernel sum."""
        d = z.shape[-1] - self._extra_dims()
        batch = z.shape[:-2]  # (members,) for an ensemble
        model_class = EnsembleDeepKernelGP if len(batch) else SingleTaskGP
        return model_class(
            z,
            y.expand(*batch, *y.shape),
            covar_module=covar if covar is not None else self._covar(d, batch),
            mean_module=ConstantMean(batch_shape=batch),
            likelihood=gaussian_likelihood(
                self.config_.noise_lower_bound, noise_prior=self.noise_prior, batch_shape=batch
            ),
            outcome_transform=Standardize(m=1, batch_shape=batch) if y.shape[0] > 1 else None,
        ).to(z.device)

    def features(self, index: Tensor) -> Tensor:
        """Differentiable GP inputs (``n x d``, float64) for pool rows ``index``."""
        assert self._head is not None
        return self._with_fixed(self._head(self.encoder(index)), index)

    def _with_fixed(self, z: Tensor, index: Tensor | None = None) -> Tensor:
        """Append the fixed side and frozen features of rows ``index`` (all rows if None)."""
        for fixed in (self._side, self._frozen):
            if fixed is not None:
                rows = fixed if index is None else fixed[index.to(fixed.device)]
                z = torch.cat([z, rows.expand(*z.shape[:-2], *rows.shape)], dim=-1)
        return z

    # --------------------------------------------------------------------- fit
    def fit(self, train_index: Tensor, train_y: Tensor) -> FittedSurrogate:
        idx, y = as_train_tensors(train_index, train_y)
        device = self.encoder.device
        y = y.to(self._gp_device(len(idx)))
        warm = self.config_.warm_start and self._head is not None
        if not warm:
            self.encoder.reset_parameters()
            self._head = self._new_head().to(device)
        steps = self.config_.steps
        if warm and self.config_.warm_steps is not None:
            steps = self.config_.warm_steps

        last_error: Exception | None = None
        for attempt, jitter in enumerate((1e-6, 1e-5, 1e-4, 1e-3)):
            try:
                with robust_cholesky(jitter=jitter):
                    return self._fit(idx, y, steps=steps, warm=warm)
            except NotPSDError as exc:  # pragma: no cover - exercised via reliability tests
                last_error = exc
                logger.warning(
                    "Deep-kernel fit hit a non-positive-definite matrix (attempt %d, jitter %.0e); "
                    "retrying with more jitter.",
                    attempt + 1,
                    jitter,
                )
                self.encoder.reset_parameters()
                self._head = self._new_head().to(device)
                warm = False
        raise FitError(
            f"Deep-kernel GP fit failed after jitter retries: {last_error}"
        ) from last_error

    def _gp_device(self, n_train: int) -> torch.device:
        """Device of the GP algebra for ``n_train`` training points (``gp_device``)."""
        encoder = self.encoder.device
        choice = self.config_.gp_device
        if encoder.type == "cpu" or choice == "encoder":
            return encoder
        if choice == "cpu" or n_train <= AUTO_CPU_GP_MAX_TRAIN:
            return torch.device("cpu")
        return encoder

    def _fit(self, idx: Tensor, y: Tensor, *, steps: int, warm: bool) -> FittedSurrogate:
        """One training run; ``y`` is already on the GP's device (:meth:`_gp_device`)."""
        assert self._head is not None
        head = self._head
        with torch.no_grad():
            z0 = self.features(idx).to(y.device)
        gp = None
        if self.config_.side_fit != "joint":
            gp = self._staged_gp(z0, y)
        if gp is None:
            gp = self._new_gp(z0, y)
        if warm and self._gp_state is not None:
            gp.load_state_dict(self._gp_state, strict=False)
        elif self.config_.lengthscale_init == "median":
            self._init_lengthscale(gp, z0)
        objective = (
            LeaveOneOutPseudoLikelihood
            if self.config_.objective == "loo"
            else ExactMarginalLogLikelihood
        )
        mll = objective(gp.likelihood, gp)
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
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                z = self.features(idx).to(y.device)
                gp.set_train_data(inputs=z, strict=False)
                loss = -mll(gp(z), gp.train_targets).sum()  # summed over ensemble members
                loss.backward()
                opt.step()
                losses.append(loss.detach())  # read once after the loop, not every step
        # Final pass in train mode fixes the feature scaling on the training set.
        with torch.no_grad():
            z_train = self.features(idx)
        head.eval()
        with torch.no_grad():
            z_all = self._with_fixed(head(self.encoder.embed())).to(y.device)
        gp.set_train_data(inputs=z_all[..., idx, :], strict=False)
        gp.eval()
        self._gp_state = {k: v.detach().clone() for k, v in gp.state_dict().items()}
        del z_train
        if z_all.dim() == 3:  # members x N x d -> N x (members*d), split again by the model
            z_all = z_all.movedim(0, 1).reshape(z_all.shape[1], -1)
        return FittedSurrogate(
            model=gp, features=z_all.detach(), losses=torch.stack(losses).tolist() if losses else []
        )

    def _init_lengthscale(self, gp: SingleTaskGP, z: Tensor) -> None:
        """Median heuristic: start the Matérn lengthscale at the median pairwise distance."""
        d = z.shape[-1] - self._extra_dims()
        if z.shape[-2] < 2:
            return
        members = z[..., :d].reshape(-1, z.shape[-2], d)
        medians = torch.stack([torch.pdist(m).median() for m in members])
        if not bool((medians > 1e-6).all()):
            return
        covar = gp.covar_module
        matern = covar.kernels[0] if hasattr(covar, "kernels") else covar
        shape = matern.base_kernel.lengthscale.shape
        matern.base_kernel.lengthscale = medians.reshape(*shape[:-2], 1, 1).expand(shape)
        if self.config_.additive:  # each segment's kernel at its own median distance
            segments = self._segments()
            per = d // segments
            for s, part in enumerate(covar.kernels[1 : 1 + segments]):
                dist = torch.pdist(z[..., s * per : (s + 1) * per].reshape(-1, per))
                median = float(dist.median())
                if median > 1e-6:
                    part.base_kernel.lengthscale = median

    def config(self) -> dict[str, Any]:
        enc = self.encoder
        return {
            "name": self.name,
            "encoder": enc.config.to_dict(),
            "top_layers": enc.n_top,
            "top_module": enc.top_module_name,
            "lora": enc.lora_settings.to_dict() if enc.lora_settings else None,
            "soft_tokens": enc.n_soft,
            "side_features": type(self.side_featurizer).__name__ if self.side_featurizer else None,
            "noise_prior": self.noise_prior,
            "deep_kernel": self.config_.to_dict(),
        }
