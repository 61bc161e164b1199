"""Lazy access to optional dependencies with an actionable message when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from llmbo.errors import MissingDependencyError

_EXTRAS = {
    "rdkit": "chem",
    "drfp": "chem",
    "matplotlib": "plot",
    "pyarrow": "parquet",
    "optuna": "hpo",
    "ray": "hpo",
    "datasets": "hpo",
    "openai": "llm",
    "gguf": "llm",
    "accelerate": "llm",
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top)
        hint = f"pip install 'llmbo[{extra}]'" if extra else f"pip install {top}"
        raise MissingDependencyError(
            f"{feature} needs the optional package '{top}', which is not installed. "
            f"Install it with: {hint}"
        ) from exc
