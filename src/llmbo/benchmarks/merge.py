"""Merge benchmark results written elsewhere (another directory, worktree or machine).

Benchmarks are often run as several ``llmbo bench`` processes, each with its own
``--results-dir`` so that no two write one file. :func:`merge_results` folds those
directories into one: every run not yet in the destination is added with its best-so-far
curve, and a run already there is kept as it was measured. Each file is replaced
atomically, curves first; an interruption between the two leaves at most curve rows of runs
not yet in ``reactions.csv``, which a rerun of the merge completes (the report reads one
curve per run).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from llmbo._files import file_stamp, write_csv_atomic
from llmbo.benchmarks.runner import (
    CURVE_COLUMNS,
    CURVES_FILE,
    RESULT_COLUMNS,
    RESULTS_FILE,
    RUN_KEY,
    read_csv_rows,
    require_result_columns,
    row_keys,
)
from llmbo.errors import InputError

logger = logging.getLogger("llmbo.benchmarks")

__all__ = ["MergeSummary", "merge_results"]

#: Columns that name a run in ``reactions_curves.csv`` (a curve has one row per iteration).
CURVE_RUN_KEY: tuple[str, ...] = tuple(c for c in CURVE_COLUMNS if c in RUN_KEY)


@dataclass
class MergeSummary:
    """What :func:`merge_results` did, per source directory.

    Attributes:
        added: Runs added to the destination.
        already_present: Runs left out because their key was already present: in the
            destination, in an earlier source, or later in the same source (the last
            occurrence in a source is the one considered, as in the report).
        differing: Of those, the runs whose top-5 % coverage or best yield differs from the
            kept row (the same run measured twice with another outcome, e.g. on another
            instruction set).
        curves_added: Curve rows added to the destination (all sources).
        runs_without_curve: Added runs whose source has no curve for them (all sources).
    """

    added: dict[str, int] = field(default_factory=dict)
    already_present: dict[str, int] = field(default_factory=dict)
    differing: dict[str, int] = field(default_factory=dict)
    curves_added: int = 0
    runs_without_curve: int = 0

    @property
    def total_added(self) -> int:
        """Runs added from all sources."""
        return sum(self.added.values())


def _check_results(frame: pd.DataFrame, path: Path) -> None:
    hint = "; give directories written by 'llmbo bench --results-dir'"
    require_result_columns(list(frame.columns), path, hint)


def _column_order(
    first: Sequence[str], frames: Sequence[pd.DataFrame], known: Sequence[str]
) -> list[str]:
    """The destination's columns first, then new ones in ``known`` order, then the rest."""
    order = list(first)
    extra = {c for f in frames for c in f.columns} - set(order)
    order += [c for c in known if c in extra]
    order += sorted(extra - set(known))
    return order


def _write_unless_changed(frame: pd.DataFrame, path: Path, stamp: tuple[int, int] | None) -> None:
    """Replace ``path`` by ``frame`` atomically, unless it changed since it was read.

    Raises:
        InputError: ``path`` changed since it was read (``stamp``): another process is
            writing to it, and replacing it would lose that process's rows.
    """

    def unchanged() -> None:
        if file_stamp(path) != stamp:
            raise InputError(
                f"{path} changed during the merge (is 'llmbo bench' writing to it?); nothing "
                "was replaced in it. Merge again once no process writes to the destination."
            )

    write_csv_atomic(frame, path, before_replace=unchanged)


def _differs(kept: dict[str, str], new: dict[str, str]) -> bool:
    return any(str(kept.get(c, "")) != str(new.get(c, "")) for c in ("top5_coverage", "best_found"))


def _read_source(src: Path) -> pd.DataFrame:
    frame = read_csv_rows(src / RESULTS_FILE)
    if len(frame.columns):
        _check_results(frame, src / RESULTS_FILE)
    return frame


def _check_sources(sources: Sequence[Path], destination: Path) -> None:
    """Refuse the destination itself as a source, and a source without ``reactions.csv``."""
    resolved = destination.resolve()
    for src in sources:
        if src.resolve() == resolved:
            raise InputError(f"{src} is the destination itself; give other result directories.")
        if not (src / RESULTS_FILE).is_file():
            raise InputError(
                f"No {RESULTS_FILE} in {src}: give directories written by "
                "'llmbo bench --results-dir'."
            )


class _Merge:
    """The runs a merge adds, source by source, and their curve rows."""

    def __init__(self, results: pd.DataFrame, key: list[str]) -> None:
        self.key = key
        self.kept_rows = results.to_dict("records") if not results.empty else []
        self.index = {k: i for i, k in enumerate(row_keys(results, key))}
        self.summary = MergeSummary()
        self.new_results: list[pd.DataFrame] = []
        self.new_curves: list[pd.DataFrame] = []
        self.curve_keys_added: set[tuple[str, ...]] = set()
        self.shared_curve_keys = 0

    def add_source(self, name: str, frame: pd.DataFrame) -> None:
        """Add the runs of one source not yet kept, with their curves."""
        summary = self.summary
        summary.added[name] = summary.already_present[name] = summary.differing[name] = 0
        if frame.empty:
            return
        added = self._new_runs(name, frame)
        summary.added[name] = len(added)
        if added.empty:
            return
        self.new_results.append(added)
        self._add_curves(name, added)

    def _new_runs(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        """The last occurrence of each run of ``frame`` whose key is not kept yet."""
        summary = self.summary
        last = frame.drop_duplicates(subset=self.key, keep="last")
        summary.already_present[name] += len(frame) - len(last)
        take = []
        for run, row in zip(row_keys(last, self.key), last.to_dict("records"), strict=True):
            if run in self.index:
                summary.already_present[name] += 1
                summary.differing[name] += _differs(self.kept_rows[self.index[run]], row)
                take.append(False)
                continue
            self.index[run] = len(self.kept_rows)
            self.kept_rows.append(row)
            take.append(True)
        return last.loc[take]

    def _add_curves(self, name: str, added: pd.DataFrame) -> None:
        """The curve rows of the ``added`` runs of source ``name``."""
        src_curves = read_csv_rows(Path(name) / CURVES_FILE)
        curve_key = [c for c in CURVE_RUN_KEY if c in src_curves.columns and c in added.columns]
        for run in row_keys(added, curve_key):
            self.shared_curve_keys += run in self.curve_keys_added
            self.curve_keys_added.add(run)
        wanted = set(row_keys(added, curve_key))
        if not src_curves.empty and curve_key:
            mask = [k in wanted for k in row_keys(src_curves, curve_key)]
            # A run redone after a crash left its first curve behind: keep the last, as the
            # report does.
            point = [*curve_key, "iteration"] if "iteration" in src_curves.columns else curve_key
            chosen = src_curves.loc[mask].drop_duplicates(subset=point, keep="last")
            self.new_curves.append(chosen)
            self.summary.curves_added += len(chosen)
            wanted -= set(row_keys(chosen, curve_key))
        self.summary.runs_without_curve += len(wanted)


def _write_merged(
    merge: _Merge,
    results: pd.DataFrame,
    curves: pd.DataFrame,
    destination: Path,
    stamps: tuple[tuple[int, int] | None, tuple[int, int] | None],
) -> None:
    """Replace the destination's files by the merged ones, curves first."""
    dest_results = destination / RESULTS_FILE
    dest_curves = destination / CURVES_FILE
    destination.mkdir(parents=True, exist_ok=True)
    if (file_stamp(dest_results), file_stamp(dest_curves)) != stamps:
        raise InputError(
            f"{destination} changed during the merge (is 'llmbo bench' writing to it?); "
            "nothing was replaced. Merge again once no process writes to the destination."
        )
    first = list(results.columns) if len(results.columns) else list(RESULT_COLUMNS)
    order = _column_order(first, merge.new_results, RESULT_COLUMNS)
    merged = pd.concat([results, *merge.new_results], ignore_index=True).reindex(columns=order)
    if merge.new_curves:
        first = list(curves.columns) if len(curves.columns) else list(CURVE_COLUMNS)
        curve_order = _column_order(first, merge.new_curves, CURVE_COLUMNS)
        merged_curves = pd.concat([curves, *merge.new_curves], ignore_index=True)
        # Curves first: a results row promises a complete curve (as when ``llmbo bench`` appends).
        _write_unless_changed(
            merged_curves.reindex(columns=curve_order).fillna(""), dest_curves, stamps[1]
        )
    _write_unless_changed(merged.fillna(""), dest_results, stamps[0])


def merge_results(sources: Sequence[str | Path], destination: str | Path) -> MergeSummary:
    """Add the runs of ``sources`` (results directories) to ``destination``.

    A run is identified by the :data:`~llmbo.benchmarks.runner.RUN_KEY` columns that every
    file involved has (as ``llmbo bench`` compares runs with an older file). Rows of the
    destination come first and are never changed; a source run whose key is already present
    is left out and counted in the summary. Each added run brings its curve rows from the
    same source. Columns missing from one file are left empty in its rows; new columns are
    appended after the destination's. No process may write to the destination meanwhile: a
    file that changes during the merge is not replaced (:class:`InputError`).

    Raises:
        InputError: A source has no ``reactions.csv``, a file is not an llmbo results file,
            a source is the destination itself, or the destination changed meanwhile.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    destination = Path(destination)
    dest_results = destination / RESULTS_FILE
    dest_curves = destination / CURVES_FILE
    _check_sources(list(map(Path, sources)), destination)

    stamps = (file_stamp(dest_results), file_stamp(dest_curves))
    results = read_csv_rows(dest_results)
    if len(results.columns):
        _check_results(results, dest_results)
    curves = read_csv_rows(dest_curves)
    frames = {str(src): _read_source(Path(src)) for src in sources}
    key = [
        c
        for c in RUN_KEY
        if all(c in f.columns for f in (results, *frames.values()) if len(f.columns))
    ]
    merge = _Merge(results, key)
    for name, frame in frames.items():
        merge.add_source(name, frame)
    summary = merge.summary

    if merge.shared_curve_keys:
        logger.warning(
            "%d added run(s) share their curve key with another added run (they differ only in "
            "columns the curves file does not record); the plot shows one of each.",
            merge.shared_curve_keys,
        )
    if not merge.new_results:
        return summary
    _write_merged(merge, results, curves, destination, stamps)
    if summary.runs_without_curve:
        logger.warning(
            "%d added run(s) have no curve in their source; the convergence plot omits them.",
            summary.runs_without_curve,
        )
    return summary
