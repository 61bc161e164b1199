"""Write files so that a crash or a failure leaves either the old file or the new one."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["file_stamp", "write_csv_atomic", "write_text_atomic"]


def file_stamp(path: Path) -> tuple[int, int] | None:
    """Size and modification time of ``path`` (``None`` if absent): has it changed?"""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _file_mode(path: Path) -> int:
    """Permission bits for a rewritten ``path``: its own, or 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_csv_atomic(
    frame: Any, path: Path, *, before_replace: Callable[[], None] | None = None
) -> None:
    """Write a DataFrame to ``path`` as CSV (``\\n`` line ends, no index) atomically.

    The text goes to a temporary file in the same folder, is flushed to disk and then
    renamed over ``path`` (``os.replace``), keeping ``path``'s permissions; a failure at any
    point leaves ``path`` as it was and no temporary file behind. ``before_replace`` runs
    just before the rename; an exception from it cancels the write.
    """
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    write_text_atomic(path, buf.getvalue(), before_replace=before_replace)


def write_text_atomic(
    path: Path, text: str, *, before_replace: Callable[[], None] | None = None
) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`write_csv_atomic` does."""
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
