"""Merging results directories: new runs added with their curves, measured runs kept."""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

import llmbo.benchmarks.merge as merge_module
from llmbo.benchmarks.merge import merge_results
from llmbo.benchmarks.runner import (
    CURVE_COLUMNS,
    CURVES_FILE,
    RESULT_COLUMNS,
    RESULTS_FILE,
    read_csv_rows,
)
from llmbo.cli import main
from llmbo.errors import InputError


def _row(seed: int, coverage: float, method: str = "drfp", **extra: object) -> dict:
    row = {c: "" for c in RESULT_COLUMNS}
    row.update(
        benchmark="bh1",
        method=method,
        seed=seed,
        iterations=3,
        top5_coverage=coverage,
        best_found=90.0 + seed,
        n_initial=10,
        batch_size=1,
        template="procedure",
        seconds=1.0,
        date="2026-11-25T00:00:00+00:00",
    )
    row.update(extra)
    return row


def _curve(row: dict) -> list[dict]:
    base = {c: row[c] for c in CURVE_COLUMNS if c in row}
    return [{**base, "iteration": i, "best_so_far": 80.0 + i} for i in range(row["iterations"] + 1)]


def _write(
    directory: Path,
    rows: list[dict],
    columns: Sequence[str] = RESULT_COLUMNS,
    curves: bool = True,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / RESULTS_FILE, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows([{c: r.get(c, "") for c in columns} for r in rows])
    if curves:
        frame = pd.DataFrame([c for r in rows for c in _curve(r)], columns=list(CURVE_COLUMNS))
        frame.to_csv(directory / CURVES_FILE, index=False, lineterminator="\n")
    return directory


def test_merge_adds_new_runs_and_keeps_measured_ones(tmp_path: Path) -> None:
    dest = _write(tmp_path / "main", [_row(0, 0.5), _row(1, 0.25)])
    before = (dest / RESULTS_FILE).read_text()
    # seed 1 again with another outcome (must not replace the kept row), seed 2 new
    src_a = _write(tmp_path / "a", [_row(1, 0.75), _row(2, 0.125)])
    # seed 2 again (already added from a: left out), seed 3 new
    src_b = _write(tmp_path / "b", [_row(2, 0.125), _row(3, 1.0)])

    summary = merge_results([src_a, src_b], dest)

    assert summary.added == {str(src_a): 1, str(src_b): 1}
    assert summary.already_present == {str(src_a): 1, str(src_b): 1}
    assert summary.differing == {str(src_a): 1, str(src_b): 0}
    merged = read_csv_rows(dest / RESULTS_FILE)
    assert merged["seed"].tolist() == ["0", "1", "2", "3"]
    assert merged["top5_coverage"].tolist() == ["0.5", "0.25", "0.125", "1.0"]
    assert list(merged.columns) == list(RESULT_COLUMNS)
    # the destination's rows are byte for byte what they were
    assert (dest / RESULTS_FILE).read_text().startswith(before)
    curves = read_csv_rows(dest / CURVES_FILE)
    assert summary.curves_added == 8  # two runs x (3 iterations + starts)
    assert curves.groupby("seed").size().to_dict() == {"0": 4, "1": 4, "2": 4, "3": 4}


def test_merge_into_a_new_directory_and_newer_columns(tmp_path: Path) -> None:
    older = [c for c in RESULT_COLUMNS if c != "library_versions"]
    dest = _write(tmp_path / "main", [_row(0, 0.5)], columns=older)
    src = _write(tmp_path / "new", [_row(1, 0.25, library_versions="botorch=0.18.1")])
    merge_results([src], dest)
    merged = read_csv_rows(dest / RESULTS_FILE)
    assert list(merged.columns) == [*older, "library_versions"]
    assert merged["library_versions"].tolist() == ["", "botorch=0.18.1"]

    fresh = tmp_path / "fresh"
    merge_results([src], fresh)
    assert read_csv_rows(fresh / RESULTS_FILE)["seed"].tolist() == ["1"]
    assert len(read_csv_rows(fresh / CURVES_FILE)) == 4


def test_merge_ignores_curves_of_unfinished_runs(tmp_path: Path) -> None:
    dest = _write(tmp_path / "main", [_row(0, 0.5)])
    src = _write(tmp_path / "src", [_row(1, 0.25)])
    # a crash after the curve was written, before the results row: seed 7 has a curve only
    extra = pd.DataFrame(_curve(_row(7, 0.0)), columns=list(CURVE_COLUMNS))
    extra.to_csv(src / CURVES_FILE, mode="a", header=False, index=False, lineterminator="\n")
    # and a crash after seed 1's curve, whose rerun wrote it again
    again = pd.DataFrame(_curve(_row(1, 0.25)), columns=list(CURVE_COLUMNS))
    again.to_csv(src / CURVES_FILE, mode="a", header=False, index=False, lineterminator="\n")
    summary = merge_results([src], dest)
    assert summary.curves_added == 4
    assert set(read_csv_rows(dest / CURVES_FILE)["seed"]) == {"0", "1"}


def test_merge_refuses_bad_sources_and_leaves_destination_alone(tmp_path: Path) -> None:
    dest = _write(tmp_path / "main", [_row(0, 0.5)])
    before = (dest / RESULTS_FILE).read_bytes()
    with pytest.raises(InputError, match=r"No reactions\.csv"):
        merge_results([tmp_path / "missing"], dest)
    with pytest.raises(InputError, match="destination itself"):
        merge_results([dest], dest)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / RESULTS_FILE).write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not an llmbo results file"):
        merge_results([bad], dest)
    assert (dest / RESULTS_FILE).read_bytes() == before
    assert not list(dest.glob(".*.tmp"))


def test_bench_merge_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dest = _write(tmp_path / "main", [_row(0, 0.5)])
    src = _write(tmp_path / "src", [_row(0, 0.5), _row(1, 0.25)])
    assert main(["bench-merge", str(src), "--results-dir", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "1 run(s) added, 1 already present" in out
    assert (dest / "reactions.md").exists()
    assert main(["bench-merge", str(tmp_path / "nowhere"), "--results-dir", str(dest)]) == 2
    assert "No reactions.csv" in capsys.readouterr().err


def test_merge_matches_runs_on_the_key_columns_every_file_has(tmp_path: Path) -> None:
    # a destination written before batch_size existed: its run is the source's seed 0
    older = [c for c in RESULT_COLUMNS if c != "batch_size"]
    dest = _write(tmp_path / "main", [_row(0, 0.5)], columns=older)
    src = _write(tmp_path / "src", [_row(0, 0.5), _row(1, 0.25)])
    summary = merge_results([src], dest)
    assert summary.added[str(src)] == 1
    assert summary.already_present[str(src)] == 1
    assert read_csv_rows(dest / RESULTS_FILE)["seed"].tolist() == ["0", "1"]


def test_merge_keeps_the_last_of_a_run_repeated_in_one_source(tmp_path: Path) -> None:
    dest = _write(tmp_path / "main", [_row(0, 0.5)])
    src = _write(tmp_path / "src", [_row(1, 0.25), _row(1, 0.75)])
    summary = merge_results([src], dest)
    assert (summary.added[str(src)], summary.already_present[str(src)]) == (1, 1)
    assert read_csv_rows(dest / RESULTS_FILE)["top5_coverage"].tolist() == ["0.5", "0.75"]


def test_merge_keeps_file_permissions(tmp_path: Path) -> None:
    dest = _write(tmp_path / "main", [_row(0, 0.5)])
    os.chmod(dest / RESULTS_FILE, 0o640)
    src = _write(tmp_path / "src", [_row(1, 0.25)])
    merge_results([src], dest)
    assert stat.S_IMODE((dest / RESULTS_FILE).stat().st_mode) == 0o640
    # new files get what any other new file gets (not the 0o600 of a temporary file)
    umask = os.umask(0o022)
    try:
        merge_results([src], tmp_path / "fresh")
    finally:
        os.umask(umask)
    for name in (RESULTS_FILE, CURVES_FILE):
        assert stat.S_IMODE((tmp_path / "fresh" / name).stat().st_mode) == 0o644


def test_an_interrupted_merge_leaves_the_results_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = _write(tmp_path / "main", [_row(0, 0.5)])
    before = (dest / RESULTS_FILE).read_bytes()
    src = _write(tmp_path / "src", [_row(1, 0.25)])
    replace = os.replace
    calls = []

    def fail_on_results(a: str, b: str | Path) -> None:
        calls.append(b)
        if Path(b).name == RESULTS_FILE:
            raise KeyboardInterrupt
        replace(a, b)

    monkeypatch.setattr(os, "replace", fail_on_results)
    with pytest.raises(KeyboardInterrupt):
        merge_results([src], dest)
    assert (dest / RESULTS_FILE).read_bytes() == before
    assert not list(dest.glob(".*.tmp"))
    # the curves went first; merging again completes the results, one curve per run
    monkeypatch.setattr(os, "replace", replace)
    merge_results([src], dest)
    assert read_csv_rows(dest / RESULTS_FILE)["seed"].tolist() == ["0", "1"]
    curves = read_csv_rows(dest / CURVES_FILE)
    assert len(curves.drop_duplicates(subset=["seed", "iteration"])) == 8


def test_merge_refuses_a_destination_that_changes_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = _write(tmp_path / "main", [_row(0, 0.5)])
    src = _write(tmp_path / "src", [_row(1, 0.25)])
    read = merge_module.read_csv_rows

    def read_then_append(path: str | Path) -> pd.DataFrame:
        frame = read(path)
        if Path(path) == dest / RESULTS_FILE:  # a bench process appends a row right after
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(",".join(str(v) for v in _row(5, 0.125).values()) + "\n")
        return frame

    monkeypatch.setattr(merge_module, "read_csv_rows", read_then_append)
    with pytest.raises(InputError, match="changed during the merge"):
        merge_results([src], dest)
    assert read(dest / RESULTS_FILE)["seed"].tolist() == ["0", "5"]


def test_header_only_file_that_is_not_results_is_refused(tmp_path: Path) -> None:
    dest = _write(tmp_path / "main", [_row(0, 0.5)])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / RESULTS_FILE).write_text("a,b\n")
    with pytest.raises(InputError, match="not an llmbo results file"):
        merge_results([bad], dest)
