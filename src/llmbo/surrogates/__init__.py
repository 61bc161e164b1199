"""Surrogate models: fixed-feature GPs, LLM deep-kernel GPs and the random baseline."""

from llmbo.surrogates.base import SURROGATES, FittedSurrogate, Surrogate
from llmbo.surrogates.config import SurrogateConfig, surrogate_config, surrogate_config_from_dict
from llmbo.surrogates.factory import make_surrogate

__all__ = [
    "SURROGATES",
    "FittedSurrogate",
    "Surrogate",
    "SurrogateConfig",
    "make_surrogate",
    "surrogate_config",
    "surrogate_config_from_dict",
]
