"""Merge benchmark results written elsewhere (another directory, worktree or machine).

Benchmarks are often run as several ``llmbo bench`` processes, each with its own
``--results-dir`` so that no two write one file. :func:`merge_results` folds those
directories into one: every run not yet in the destination is added with its best-so-far
curve, a run already there is kept as it was measured, and the files are replaced
atomically, so an interrupted merge leaves the destination as it was.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from llmbo.benchmarks.runner import (
    CURVE_COLUMNS,
    CURVES_FILE,
    RESULT_COLUMNS,
    RESULTS_FILE,
    RUN_KEY,
    read_csv_rows,
)
from llmbo.errors import InputError

logger = logging.getLogger("llmbo.benchmarks")

__all__ = ["MergeSummary", "merge_results"]

#: Columns that name a run in ``reactions_curves.csv`` (a curve has one row per iteration).
CURVE_RUN_KEY: tuple[str, ...] = tuple(c for c in CURVE_COLUMNS if c in RUN_KEY)
#: Columns every results file has; a file without them is not an llmbo results file.
REQUIRED_COLUMNS: tuple[str, ...] = ("benchmark", "method", "seed")


@dataclass
class MergeSummary:
    """What :func:`merge_results` did.

    Attributes:
        added: Runs added to the destination, per source directory.
        already_present: Runs of the sources whose key was already in the destination (or in
            an earlier source) and that were therefore left out, per source directory.
        differing: Of those, the runs whose top-5 % coverage or best yield differs from the
            kept row (the same run measured twice with a different outcome, e.g. on another
            instruction set), per source directory.
        curves_added: Curve rows added to the destination.
        runs_without_curve: Added runs whose source has no curve for them.
    """

    added: dict[str, int] = field(default_factory=dict)
    already_present: dict[str, int] = field(default_factory=dict)
    differing: dict[str, int] = field(default_factory=dict)
    curves_added: int = 0
    runs_without_curve: int = 0

    @property
    def total_added(self) -> int:
        return sum(self.added.values())


def _check_results(frame: pd.DataFrame, path: Path) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path} is not an llmbo results file (no column(s) {', '.join(missing)}); "
            "give directories written by 'llmbo bench --results-dir'."
        )


def _keys(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[str, ...]]:
    if frame.empty:
        return []
    present = [c for c in columns if c in frame.columns]
    return [
        tuple(str(row[c]) if c in present else "" for c in columns)
        for row in frame.to_dict("records")
    ]


def _column_order(
    first: Sequence[str], frames: Sequence[pd.DataFrame], known: Sequence[str]
) -> list[str]:
    """The destination's columns first, then new ones in ``known`` order, then the rest."""
    order = list(first)
    seen = set(order)
    extra = {c for f in frames for c in f.columns} - seen
    order += [c for c in known if c in extra]
    order += sorted(extra - set(known))
    return order


def _write_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a temporary file and ``os.replace``."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _differs(kept: dict[str, str], new: dict[str, str]) -> bool:
    return any(str(kept.get(c, "")) != str(new.get(c, "")) for c in ("top5_coverage", "best_found"))


def merge_results(sources: Sequence[str | Path], destination: str | Path) -> MergeSummary:
    """Add the runs of ``sources`` (results directories) to ``destination``.

    A run is identified by :data:`~llmbo.benchmarks.runner.RUN_KEY`. Rows of the destination
    come first and are never changed; a source run whose key is already present (in the
    destination or an earlier source) is left out and counted in the summary. Each added
    run brings its curve rows from the same source. Columns missing from one file are
    left empty in its rows; new columns are appended after the destination's. Both files
    of the destination are replaced atomically.

    Raises:
        InputError: A source has no ``reactions.csv``, a file is not an llmbo results file,
            or a source is the destination itself.
    """
    destination = Path(destination)
    dest_results = destination / RESULTS_FILE
    dest_curves = destination / CURVES_FILE
    resolved = destination.resolve()
    for src in sources:
        src = Path(src)
        if src.resolve() == resolved:
            raise InputError(f"{src} is the destination itself; give other result directories.")
        if not (src / RESULTS_FILE).is_file():
            raise InputError(
                f"No {RESULTS_FILE} in {src}: give directories written by "
                "'llmbo bench --results-dir'."
            )

    results = read_csv_rows(dest_results)
    if not results.empty:
        _check_results(results, dest_results)
    curves = read_csv_rows(dest_curves)
    kept_rows = results.to_dict("records") if not results.empty else []
    index = {k: i for i, k in enumerate(_keys(results, RUN_KEY))}
    summary = MergeSummary()
    new_results: list[pd.DataFrame] = []
    new_curves: list[pd.DataFrame] = []
    for src in map(Path, sources):
        frame = read_csv_rows(src / RESULTS_FILE)
        name = str(src)
        summary.added.setdefault(name, 0)
        summary.already_present.setdefault(name, 0)
        summary.differing.setdefault(name, 0)
        if frame.empty:
            continue
        _check_results(frame, src / RESULTS_FILE)
        take = []
        for key, row in zip(_keys(frame, RUN_KEY), frame.to_dict("records"), strict=True):
            if key in index:
                summary.already_present[name] += 1
                summary.differing[name] += _differs(kept_rows[index[key]], row)
                take.append(False)
                continue
            index[key] = len(kept_rows)
            kept_rows.append(row)
            take.append(True)
        added = frame.loc[take]
        summary.added[name] += len(added)
        if added.empty:
            continue
        new_results.append(added)
        src_curves = read_csv_rows(src / CURVES_FILE)
        wanted = set(_keys(added, CURVE_RUN_KEY))
        if not src_curves.empty:
            mask = [k in wanted for k in _keys(src_curves, CURVE_RUN_KEY)]
            # A run redone after a crash left its first curve behind: keep the last, as the
            # report does.
            point = [c for c in (*CURVE_RUN_KEY, "iteration") if c in src_curves.columns]
            chosen = src_curves.loc[mask].drop_duplicates(subset=point, keep="last")
            new_curves.append(chosen)
            summary.curves_added += len(chosen)
            wanted -= set(_keys(chosen, CURVE_RUN_KEY))
        summary.runs_without_curve += len(wanted)

    if not new_results:
        return summary
    destination.mkdir(parents=True, exist_ok=True)
    first = list(results.columns) if not results.empty else list(RESULT_COLUMNS)
    order = _column_order(first, new_results, RESULT_COLUMNS)
    merged = pd.concat([results, *new_results], ignore_index=True).reindex(columns=order)
    if new_curves:
        first = list(curves.columns) if not curves.empty else list(CURVE_COLUMNS)
        curve_order = _column_order(first, new_curves, CURVE_COLUMNS)
        merged_curves = pd.concat([curves, *new_curves], ignore_index=True)
        # Curves first: a results row promises a complete curve (as when ``llmbo bench`` appends).
        _write_atomically(merged_curves.reindex(columns=curve_order).fillna(""), dest_curves)
    _write_atomically(merged.fillna(""), dest_results)
    if summary.runs_without_curve:
        logger.warning(
            "%d added run(s) have no curve in their source; the convergence plot omits them.",
            summary.runs_without_curve,
        )
    return summary
