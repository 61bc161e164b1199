"""Progress bars of long steps: one look everywhere, silent when nobody watches.

A bar shows the step count, seconds per step and the time left (tqdm's), plus what the
caller posts (``best=...``). It draws on stderr only when stderr is a terminal (tqdm's
``disable=None``), so logs and pipes stay clean; commands turn it off with
``--no-progress``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(
    total: int | None, desc: str, *, unit: str = "it", initial: int = 0, leave: bool = False
) -> Any:
    """A tqdm bar over ``total`` steps, disabled when stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, leave=leave, disable=None,
        dynamic_ncols=True,
    )  # fmt: skip
