"""The deprecation rule (docs/deprecation.md) as code: warn for one minor version, then remove.

Deprecated names keep working and warn with a :class:`FutureWarning` (shown to users by
default, unlike :class:`DeprecationWarning`) naming the version they go away in and what to
use instead.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["deprecated", "warn_deprecated"]

T = TypeVar("T", bound=Callable[..., Any])


def _minor(version: str) -> tuple[int, int]:
    major, minor, *_ = (int(p) for p in version.split("."))
    return major, minor


def warn_deprecated(
    what: str, *, since: str, removed_in: str, instead: str, stacklevel: int = 3
) -> None:
    """Warn that ``what`` is deprecated since ``since`` and goes away in ``removed_in``.

    Raises:
        ValueError: ``removed_in`` is not exactly one minor version after ``since`` (the rule).
    """
    s, r = _minor(since), _minor(removed_in)
    if not (r == (s[0], s[1] + 1) or (r[0] == s[0] + 1 and r[1] == 0)):
        raise ValueError(
            f"Deprecations last one minor version: since {since} means removal in "
            f"{s[0]}.{s[1] + 1}, not {removed_in}."
        )
    warnings.warn(
        f"{what} is deprecated since llmbo {since} and will be removed in {removed_in}; "
        f"use {instead} instead.",
        FutureWarning,
        stacklevel=stacklevel,
    )


def deprecated(*, since: str, removed_in: str, instead: str) -> Callable[[T], T]:
    """Decorate a function or class so that each call warns (see :func:`warn_deprecated`)."""
    _minor(since), _minor(removed_in)

    def wrap(obj: T) -> T:
        name = getattr(obj, "__qualname__", repr(obj))

        @functools.wraps(obj)
        def inner(*args: Any, **kwargs: Any) -> Any:
            warn_deprecated(name, since=since, removed_in=removed_in, instead=instead)
            return obj(*args, **kwargs)

        inner.__doc__ = f"Deprecated since {since}, removed in {removed_in}: use {instead}.\n\n" + (
            obj.__doc__ or ""
        )
        return inner  # type: ignore[return-value]

    return wrap
