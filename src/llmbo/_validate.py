"""Checks of small user-given values, and message hygiene, shared by the library and the
CLI (no heavy imports)."""

from __future__ import annotations

import re
from typing import Any

from llmbo.errors import InputError

__all__ = ["MAX_SEED", "check_seed", "check_study_name", "redact_passwords"]

#: ``scheme://user:password@``: the password part of any URL in a text (also with the
#: double slash collapsed, as a file path made of a URL shows it).
#: Anchored at ``:/`` (no scheme part), so a long text is scanned in linear time.
_URL_PASSWORD = re.compile(r"(:/{1,2}[^\s:/@]*):([^\s@/]*)@")


def redact_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` shown as ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


#: Seeds are stored as signed 64-bit integers and feed NumPy and torch generators.
MAX_SEED = 2**63 - 1
#: Longest study name the storage keeps.
_MAX_NAME = 512


def _is_numpy_integer(value: Any) -> bool:
    import numpy as np

    return isinstance(value, np.integer)


def check_seed(seed: Any, what: str = "seed") -> int:
    """``seed`` as an int in [0, 2**63 - 1]; :class:`InputError` for anything else."""
    if isinstance(seed, bool) or not (isinstance(seed, int) or _is_numpy_integer(seed)):
        raise InputError(
            f"{what} must be a whole number between 0 and {MAX_SEED}, got {seed!r} "
            f"({type(seed).__name__})."
        )
    if not 0 <= int(seed) <= MAX_SEED:
        raise InputError(f"{what} must be between 0 and {MAX_SEED}, got {int(seed)}.")
    return int(seed)


def check_study_name(name: Any) -> str:
    """A study name: a non-empty string without surrounding blanks or control characters."""
    if not isinstance(name, str):
        raise InputError(f"study_name must be a string, got {type(name).__name__}.")
    if not name.strip() or name != name.strip():
        raise InputError(
            f"Study name {name!r} is empty or starts or ends with blanks; give a name such as "
            "'default' or 'campaign-1'."
        )
    if len(name) > _MAX_NAME or not name.isprintable():
        raise InputError(
            f"Study name {name[:40]!r}... must be at most {_MAX_NAME} printable characters."
        )
    return name
