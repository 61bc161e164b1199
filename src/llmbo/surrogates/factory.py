"""Build surrogates by name from their typed configs (:mod:`llmbo.surrogates.config`)."""

from __future__ import annotations

from typing import Any

from llmbo.encoders.transformer import TextEncoder
from llmbo.errors import InputError
from llmbo.surrogates.base import SURROGATES, Surrogate
from llmbo.surrogates.config import (
    DeepKernelSurrogateConfig,
    FeatureGPConfig,
    LoraSurrogateConfig,
    StaticConfig,
    SurrogateConfig,
    TokenSurrogateConfig,
    surrogate_config,
)
from llmbo.surrogates.deep_kernel import DeepKernelGP
from llmbo.surrogates.feature_gp import FeatureGP
from llmbo.surrogates.random import RandomSurrogate

__all__ = ["make_surrogate", "uses_encoder"]


def uses_encoder(config: SurrogateConfig) -> bool:
    """Whether the surrogate a config describes loads ``config.encoder.model``."""
    return hasattr(config, "encoder")


def make_surrogate(config: SurrogateConfig | str) -> Surrogate:
    """Instantiate the surrogate a config (or a bare name, at its defaults) describes."""
    if isinstance(config, str):
        config = surrogate_config(config)
    return SURROGATES.get(config.name)(config)


def _encoder(config: StaticConfig | DeepKernelSurrogateConfig) -> TextEncoder:
    lora = isinstance(config, LoraSurrogateConfig)
    return TextEncoder(
        config.encoder,
        top_layers=config.top_layers,
        lora=config.lora if lora else None,
        soft_tokens=config.soft_tokens,
        cache_hidden_states=config.cache_hidden_states,
        top_module=config.top_module if lora else None,
    )


@SURROGATES.register("random")
def _random(config: SurrogateConfig) -> Surrogate:
    return RandomSurrogate()


@SURROGATES.register("static")
def _static(config: StaticConfig) -> Surrogate:
    if config.soft_tokens:
        # Soft tokens make the encoder trainable: train them by MLL, no projection head.
        from dataclasses import replace

        training = replace(config.deep_kernel, projection_dim=None)
        return DeepKernelGP(
            _encoder(config), training, name="static", noise_prior=config.noise_prior
        )
    from llmbo.encoders.embeddings import EmbeddingFeaturizer

    return FeatureGP(
        EmbeddingFeaturizer(config.encoder),
        kernel=config.kernel or "matern",  # type: ignore[arg-type]
        name="static",
        noise_prior=config.noise_prior,
    )


def _featurizer(name: str, options: dict[str, Any], what: str) -> Any:
    from llmbo.encoders import fingerprints, numeric  # noqa: F401  (registers featurizers)
    from llmbo.encoders.base import FEATURIZERS

    try:
        return FEATURIZERS.get(name)(**options)
    except TypeError as exc:
        raise InputError(f"Bad {what} options {options!r} for {name!r}: {exc}") from exc


def _deep_kernel(config: DeepKernelSurrogateConfig) -> Surrogate:
    side = config.side_features
    return DeepKernelGP(
        _encoder(config),
        config.deep_kernel,
        name=config.name,
        side_featurizer=_featurizer(side, config.side_featurizer, "side") if side else None,
        noise_prior=config.noise_prior,
    )


SURROGATES.register("projection")(_deep_kernel)
SURROGATES.register("lora")(_deep_kernel)

#: Default kernel of each fixed-feature surrogate.
FEATURE_GP_KERNELS = {"drfp": "tanimoto", "morgan": "tanimoto", "onehot": "matern",
                      "components": "components", "numeric": "matern-ard"}  # fmt: skip


def _feature_gp(config: FeatureGPConfig) -> Surrogate:
    return FeatureGP(
        _featurizer(config.name, config.featurizer, "featurizer"),
        kernel=(config.kernel or FEATURE_GP_KERNELS[config.name]),  # type: ignore[arg-type]
        name=config.name,
        noise_prior=config.noise_prior,
    )


for _name in FEATURE_GP_KERNELS:
    SURROGATES.register(_name)(_feature_gp)


@SURROGATES.register("token")
def _token(config: TokenSurrogateConfig) -> Surrogate:
    from llmbo.encoders.prompt_token import PromptTokenEncoder
    from llmbo.surrogates.token import TokenDeepKernelGP

    encoder = PromptTokenEncoder(config.encoder, token=config.token, in_context=config.in_context)
    side = config.side_features
    return TokenDeepKernelGP(
        encoder,
        config.deep_kernel,
        side_featurizer=_featurizer(side, config.side_featurizer, "side") if side else None,
        noise_prior=config.noise_prior,
    )
