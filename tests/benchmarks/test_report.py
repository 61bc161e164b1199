"""Benchmark report: table numbers against hand computation; the convergence figure."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from llmbo.benchmarks.report import (
    MEAN_COLUMN,
    convergence_figure,
    load_curves,
    load_results,
    markdown_table,
    summarize,
)
from llmbo.benchmarks.runner import CURVES_FILE, RESULTS_FILE

# random on bh1: coverages 0.1, 0.3, 0.5 -> mean 0.3, sd 0.2, s.e. 0.2 / sqrt(3) = 0.11547.
# drfp on each of bh1..bh5: 0.4, 0.6 -> mean 0.5, sd sqrt(0.02), s.e. 0.1 per pool;
# mean over the five pools 0.5 with s.e. sqrt(5 * 0.1**2) / 5 = 0.04472.
RANDOM_BH1 = [0.1, 0.3, 0.5]
DRFP = [0.4, 0.6]


def _results() -> pd.DataFrame:
    rows = []
    for seed, cov in enumerate(RANDOM_BH1):
        rows.append(
            {
                "benchmark": "bh1",
                "method": "random",
                "seed": seed,
                "iterations": 50,
                "top5_coverage": cov,
                "best_found": 80.0 + seed,
                "template": "procedure",
                "model": "",
                "device": "cpu",
                "seconds": 2.0 * (seed + 1),
                "date": "2026-01-01T00:00:00+00:00",
            }
        )
    for bench in ("bh1", "bh2", "bh3", "bh4", "bh5"):
        for seed, cov in enumerate(DRFP):
            rows.append(
                {
                    "benchmark": bench,
                    "method": "drfp",
                    "seed": seed,
                    "iterations": 50,
                    "top5_coverage": cov,
                    "best_found": 90.0,
                    "template": "procedure",
                    "model": "",
                    "device": "cpu",
                    "seconds": 10.0,
                    "date": "2026-01-01T00:00:00+00:00",
                }
            )
    return pd.DataFrame(rows)


def _curves() -> pd.DataFrame:
    rows = []
    for bench in ("bh1", "bh2"):
        for method in ("random", "drfp"):
            for seed in range(2):
                for it in range(4):
                    rows.append(
                        {
                            "benchmark": bench,
                            "method": method,
                            "seed": seed,
                            "iterations": 3,
                            "template": "procedure",
                            "model": "",
                            "iteration": it,
                            "best_so_far": 10.0 * it + seed,
                        }
                    )
    return pd.DataFrame(rows)


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    _results().to_csv(tmp_path / RESULTS_FILE, index=False)
    _curves().to_csv(tmp_path / CURVES_FILE, index=False)
    return tmp_path


def test_summary_numbers_by_hand(results_dir: Path) -> None:
    summary = summarize(load_results(results_dir))
    rnd = summary[(summary["label"] == "random") & (summary["benchmark"] == "bh1")].iloc[0]
    assert rnd["n"] == 3
    assert rnd["coverage_mean"] == pytest.approx(0.3)
    assert rnd["coverage_sem"] == pytest.approx(0.2 / math.sqrt(3))
    assert rnd["best_found_mean"] == pytest.approx(81.0)
    assert rnd["seconds_mean"] == pytest.approx(4.0)
    drfp = summary[summary["label"] == "drfp"]
    assert list(drfp["benchmark"]) == ["bh1", "bh2", "bh3", "bh4", "bh5"]
    assert drfp["coverage_sem"].tolist() == pytest.approx([0.1] * 5)
    # Methods in registry order: random before drfp.
    assert summary["label"].tolist()[0] == "random"


def test_markdown_table_by_hand(results_dir: Path) -> None:
    text = markdown_table(load_results(results_dir))
    lines = text.splitlines()
    assert lines[0] == f"| method | bh1 | bh2 | bh3 | bh4 | bh5 | {MEAN_COLUMN} |"
    assert lines[2] == "| random | 0.300 ± 0.115 | — | — | — | — | — |"
    assert lines[3] == (
        "| drfp | 0.500 ± 0.100 | 0.500 ± 0.100 | 0.500 ± 0.100 | 0.500 ± 0.100 "
        "| 0.500 ± 0.100 | 0.500 ± 0.045 |"
    )
    assert "| bh1 | random | 3 | 0.300 ± 0.115 | 81.00 | 4.0 |" in lines
    assert "| bh3 | drfp | 2 | 0.500 ± 0.100 | 90.00 | 10.0 |" in lines


def test_labels_show_what_varies(results_dir: Path) -> None:
    frame = load_results(results_dir)
    extra = frame[frame["method"] == "random"].assign(template="names", top5_coverage=1.0)
    text = markdown_table(pd.concat([frame, extra], ignore_index=True))
    assert "| random [names] | 1.000 ± 0.000 |" in text
    assert "| random [procedure] | 0.300 ± 0.115 |" in text


def test_partial_last_line_and_duplicates_ignored(results_dir: Path) -> None:
    path = results_dir / RESULTS_FILE
    text = path.read_text()
    first_row = text.splitlines()[1]
    path.write_text(text + first_row.replace(",0.1,", ",0.9,") + "\n" + "bh2,random,7,5")
    frame = load_results(results_dir)
    assert len(frame) == 13  # 3 + 10 rows; the re-recorded run keeps its last row
    assert frame["top5_coverage"].max() == pytest.approx(0.9)


def test_convergence_figure_panels(results_dir: Path) -> None:
    from matplotlib.figure import Figure

    fig = convergence_figure(load_curves(results_dir))
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["bh1", "bh2"]
    for ax in fig.axes:
        labels = [line.get_label() for line in ax.get_lines()]
        assert labels == ["random", "drfp"]
        # mean over seeds 0 and 1 of 10 * it + seed
        assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([0.5, 10.5, 20.5, 30.5])
    # One shared legend for all panels, each method once.
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["random", "drfp"]
    fig = convergence_figure(load_curves(results_dir), benchmarks=["bh2"])
    assert [ax.get_title() for ax in fig.axes] == ["bh2"]
    fig = convergence_figure(load_curves(results_dir), methods=["drfp"])
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["drfp"]
    with pytest.raises(ValueError, match="No curves for methods"):
        convergence_figure(load_curves(results_dir), methods=["nope"])


def test_complete_labels_keep_methods_on_every_pool(results_dir: Path) -> None:
    from llmbo.benchmarks.report import complete_labels

    curves = load_curves(results_dir)
    assert complete_labels(curves) == ["random", "drfp"]
    only_bh1 = curves[~((curves["method"] == "drfp") & (curves["benchmark"] == "bh2"))]
    assert complete_labels(only_bh1) == ["random"]
    # Required pools given: drfp counts as complete on bh1 alone, wherever else it ran.
    assert complete_labels(only_bh1, ["bh1"]) == ["random", "drfp"]
    assert complete_labels(only_bh1, ["bh1", "bh2", "suzuki"]) == []
    # One pool may be given as a bare name (not read as the letters b, h, 2).
    assert complete_labels(only_bh1, "bh2") == ["random"]


def test_figure_draws_methods_complete_on_bh_pools_when_crowded() -> None:
    from llmbo.benchmarks.report import BH_POOLS, figure_methods

    def rows(method: str, pools: tuple[str, ...]) -> list[dict]:
        return [
            {"benchmark": b, "method": method, "seed": 0, "iterations": 2, "template": "",
             "model": "", "iteration": it, "best_so_far": float(it)}
            for b in pools
            for it in range(3)
        ]  # fmt: skip

    complete = rows("random", (*BH_POOLS, "suzuki")) + rows("drfp", BH_POOLS)
    explored = [r for k in range(12) for r in rows(f"trial{k}", ("bh1",))]
    curves = pd.DataFrame(complete + explored)
    # drfp has no suzuki run, but it ran on every pool of the mean column.
    methods, title = figure_methods(curves)
    assert methods == ["random", "drfp"]
    assert title is not None and "bh1–bh5" in title
    # Not crowded: every method is drawn.
    assert figure_methods(pd.DataFrame(complete)) == (None, None)
    # Without all five BH pools, "complete" means every pool in the curves.
    no_bh5 = curves[curves["benchmark"] != "bh5"]
    methods, title = figure_methods(no_bh5)
    assert methods is None  # only random covers bh1-bh4 and suzuki: fewer than two
    assert figure_methods(no_bh5[no_bh5["benchmark"] != "suzuki"])[0] == ["random", "drfp"]


def test_bench_report_cli(results_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from llmbo.cli import main

    assert main(["bench-report", "--results-dir", str(results_dir)]) == 0
    out = capsys.readouterr().out
    assert "| drfp | 0.500 ± 0.100 |" in out
    assert (results_dir / "reactions.md").read_text().count("0.500 ± 0.045") == 1
    assert (results_dir / "reactions_convergence.png").stat().st_size > 1000
    assert main(["bench-report", "--results-dir", str(results_dir / "missing")]) == 2
