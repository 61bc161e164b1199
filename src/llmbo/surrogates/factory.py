"""Build surrogates by name from a serialisable :class:`SurrogateSpec`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from llmbo.encoders.transformer import EncoderConfig, LoraSettings, TextEncoder
from llmbo.errors import InputError
from llmbo.surrogates.base import SURROGATES, Surrogate
from llmbo.surrogates.deep_kernel import DeepKernelConfig, DeepKernelGP
from llmbo.surrogates.feature_gp import FeatureGP
from llmbo.surrogates.random import RandomSurrogate

__all__ = ["ENCODER_SURROGATES", "SurrogateSpec", "make_surrogate", "uses_encoder"]

#: Registered surrogates that read the candidates' texts with ``SurrogateSpec.encoder``.
ENCODER_SURROGATES = frozenset({"static", "projection", "lora"})


@dataclass
class SurrogateSpec:
    """Everything needed to rebuild a surrogate; stored in studies as JSON.

    Attributes:
        name: A registered surrogate: ``random``, ``static``, ``projection``, ``lora``,
            ``drfp``, ``morgan``, ``onehot``, ``components``.
        encoder: Transformer loading/running options (LLM surrogates).
        lora: LoRA settings (``lora`` surrogate).
        deep_kernel: Training settings of deep-kernel surrogates.
        soft_tokens: Learnable soft tokens appended to every input (any LLM surrogate).
        top_layers: Layers in the trainable top block (``None``: 25 %, at least one).
        cache_hidden_states: Cache frozen-layer outputs (``False``: naive reference path).
        top_module: Train only this submodule at the end of the last layer (``"output"``
            for BERT-style models); ``"auto"`` picks ``"output"`` for BERT-family models
            unless soft tokens or ``top_layers`` are set; ``None`` (default) trains whole
            top layers; see :class:`~llmbo.encoders.transformer.TextEncoder`.
        featurizer: Keyword arguments of the fingerprint featurizer (column names, sizes).
        kernel: Kernel of fixed-feature GPs (``matern``, ``matern-ard``, ``tanimoto`` or
            ``components``; default by method).
        side_features: A registered featurizer (e.g. ``drfp``) whose kernel is added to a deep
            kernel's learned-feature kernel (``projection``/``lora`` only): Tanimoto, or
            :func:`~llmbo.surrogates.kernels.component_kernel` for ``components``.
        side_featurizer: Keyword arguments of that featurizer.
        noise_prior: Put BoTorch's default LogNormal(-4, 1) prior on the GP's noise variance
            and start the noise at its mode (any GP surrogate; not the optimizer's fallback
            GP; see :func:`~llmbo.surrogates.likelihood.gaussian_likelihood`).
    """

    name: str = "lora"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    deep_kernel: DeepKernelConfig = field(default_factory=DeepKernelConfig)
    soft_tokens: int = 0
    top_layers: int | None = None
    cache_hidden_states: bool = True
    top_module: str | None = None
    featurizer: dict[str, Any] = field(default_factory=dict)
    kernel: str | None = None
    side_features: str | None = None
    side_featurizer: dict[str, Any] = field(default_factory=dict)
    noise_prior: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.noise_prior, bool):
            raise InputError(f"noise_prior must be true or false, got {self.noise_prior!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SurrogateSpec:
        data = dict(data)
        data["encoder"] = EncoderConfig(**data.get("encoder", {}))
        data["lora"] = LoraSettings(**data.get("lora", {}))
        data["deep_kernel"] = DeepKernelConfig(**data.get("deep_kernel", {}))
        return cls(**data)


def uses_encoder(spec: SurrogateSpec) -> bool:
    """Whether the surrogate a spec describes loads ``spec.encoder.model``."""
    return spec.name.lower() in ENCODER_SURROGATES


def make_surrogate(spec: SurrogateSpec | str) -> Surrogate:
    """Instantiate the surrogate a spec (or a bare name) describes."""
    if isinstance(spec, str):
        spec = SurrogateSpec(name=spec)
    factory = SURROGATES.get(spec.name)
    return factory(spec)


def _encoder(spec: SurrogateSpec, *, lora: bool) -> TextEncoder:
    return TextEncoder(
        spec.encoder,
        top_layers=spec.top_layers,
        lora=spec.lora if lora else None,
        soft_tokens=spec.soft_tokens,
        cache_hidden_states=spec.cache_hidden_states,
        top_module=spec.top_module if lora else None,
    )


@SURROGATES.register("random")
def _random(spec: SurrogateSpec) -> Surrogate:
    if spec.noise_prior:
        raise InputError("noise_prior applies to GP surrogates, not to random search.")
    return RandomSurrogate()


@SURROGATES.register("static")
def _static(spec: SurrogateSpec) -> Surrogate:
    if spec.soft_tokens:
        # Soft tokens make the encoder trainable: train them by MLL, no projection head.
        config = DeepKernelConfig(**{**spec.deep_kernel.to_dict(), "projection_dim": None})
        return DeepKernelGP(
            _encoder(spec, lora=False), config, name="static", noise_prior=spec.noise_prior
        )
    from llmbo.encoders.embeddings import EmbeddingFeaturizer

    return FeatureGP(
        EmbeddingFeaturizer(spec.encoder),
        kernel=spec.kernel or "matern",  # type: ignore[arg-type]
        name="static",
        noise_prior=spec.noise_prior,
    )


def _side(spec: SurrogateSpec) -> Any:
    if spec.side_features is None:
        return None
    from llmbo.encoders import fingerprints  # noqa: F401  (registers featurizers)
    from llmbo.encoders.base import FEATURIZERS

    return FEATURIZERS.get(spec.side_features)(**spec.side_featurizer)


@SURROGATES.register("projection")
def _projection(spec: SurrogateSpec) -> Surrogate:
    return DeepKernelGP(
        _encoder(spec, lora=False),
        spec.deep_kernel,
        name="projection",
        side_featurizer=_side(spec),
        noise_prior=spec.noise_prior,
    )


@SURROGATES.register("lora")
def _lora(spec: SurrogateSpec) -> Surrogate:
    return DeepKernelGP(
        _encoder(spec, lora=True),
        spec.deep_kernel,
        name="lora",
        side_featurizer=_side(spec),
        noise_prior=spec.noise_prior,
    )


def _fingerprint(name: str, default_kernel: str) -> None:
    def build(spec: SurrogateSpec) -> Surrogate:
        from llmbo.encoders import fingerprints  # noqa: F401  (registers featurizers)
        from llmbo.encoders.base import FEATURIZERS

        try:
            featurizer = FEATURIZERS.get(name)(**spec.featurizer)
        except TypeError as exc:
            raise InputError(
                f"Bad featurizer options {spec.featurizer!r} for {name!r}: {exc}"
            ) from exc
        return FeatureGP(
            featurizer,
            kernel=spec.kernel or default_kernel,  # type: ignore[arg-type]
            name=name,
            noise_prior=spec.noise_prior,
        )

    SURROGATES.register(name)(build)


_fingerprint("drfp", "tanimoto")
_fingerprint("morgan", "tanimoto")
_fingerprint("onehot", "matern")
_fingerprint("components", "components")
