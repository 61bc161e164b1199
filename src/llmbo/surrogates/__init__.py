"""Surrogate models: fixed-feature GPs, LLM deep-kernel GPs and the random baseline."""

from llmbo.surrogates.base import SURROGATES, FittedSurrogate, Surrogate
from llmbo.surrogates.factory import SurrogateSpec, make_surrogate

__all__ = ["SURROGATES", "FittedSurrogate", "Surrogate", "SurrogateSpec", "make_surrogate"]
