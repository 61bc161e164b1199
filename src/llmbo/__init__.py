"""llmbo: Bayesian optimisation over candidates described in text, with LLM deep kernels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["CandidateSpace", "Optimizer", "__version__"]

if TYPE_CHECKING:
    from llmbo.optimizer import Optimizer
    from llmbo.space import CandidateSpace


def __getattr__(name: str) -> Any:
    # Lazy so that ``import llmbo`` stays fast (torch/transformers load on first use).
    if name == "CandidateSpace":
        from llmbo.space import CandidateSpace

        return CandidateSpace
    if name == "Optimizer":
        from llmbo.optimizer import Optimizer

        return Optimizer
    raise AttributeError(f"module 'llmbo' has no attribute {name!r}")
