"""Lazy access to optional dependencies with an actionable message when one is missing."""

from __future__ import annotations

import importlib
import importlib.util
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
    "baybe": "peers",
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"{feature} needs the optional package '{top}', which is not installed. "
            f"Install it with: {install_hint(module)}"
        ) from exc


def install_hint(module: str) -> str:
    """How to install the optional package ``module``: ``pip install 'llmbo[extra]'``."""
    top = module.split(".")[0]
    extra = _EXTRAS.get(top)
    return f"pip install 'llmbo[{extra}]'" if extra else f"pip install {top}"


def is_available(module: str) -> bool:
    """Whether the optional package ``module`` can be imported (found, not imported)."""
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False
