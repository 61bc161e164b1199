"""``llmbo suggest`` / ``observe`` / ``status``: campaigns continued across calls."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import pool_table
from llmbo.cli import main

TEMPLATE = "{color} {animal} in the {place}"


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """A 60-candidate table with an explicit id column and the (hidden) target y."""
    return pool_table(tmp_path / "pool.csv", seed=2)


def _truth(table: Path) -> dict[str, float]:
    frame = pd.read_csv(table, dtype={"id": str})
    return dict(zip(frame["id"], frame["y"], strict=True))


def _suggest(study: Path, out: Path, n: int, *extra: str) -> list[str]:
    return [
        "suggest",
        "--study",
        str(study),
        "-n",
        str(n),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _write_results(path: Path, ids: list[str], truth: dict[str, float]) -> Path:
    pd.DataFrame({"candidate_id": ids, "value": [truth[i] for i in ids]}).to_csv(path, index=False)
    return path


def _trial_rows(study: Path) -> list[tuple]:
    with sqlite3.connect(study) as con:
        return con.execute("SELECT * FROM llmbo_trials ORDER BY trial_id").fetchall()


def _subprocess(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "llmbo.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


# ------------------------------------------------------------------------ acceptance
def test_continued_study_matches_single_process_run(
    table: Path, tmp_path: Path, tiny_model: str
) -> None:
    """suggest/observe calls (one in a subprocess) suggest what one Optimizer would."""
    from llmbo.encoders.transformer import EncoderConfig
    from llmbo.optimizer import Optimizer, TableObjective
    from llmbo.space import CandidateSpace
    from llmbo.surrogates import surrogate_config
    from llmbo.surrogates.deep_kernel import DeepKernelConfig

    seed, n, rounds, steps = 3, 2, 4, 5
    study = tmp_path / "campaign.db"
    truth = _truth(table)

    # One process: the same table, template, surrogate settings and seed.
    space = CandidateSpace.from_file(table, TEMPLATE, id_column="id")
    spec = surrogate_config(
        name="lora",
        encoder=EncoderConfig(model=tiny_model),
        deep_kernel=DeepKernelConfig(steps=steps),
    )
    reference = Optimizer(space, spec, seed=seed, progress=False)
    objective = TableObjective(space, "y")

    create = ["--table", str(table), "--template", TEMPLATE, "--id-column", "id"]
    create += [
        "--surrogate",
        "lora",
        "--model",
        tiny_model,
        "--steps",
        str(steps),
        "--seed",
        str(seed),
    ]
    for r in range(rounds):
        out = tmp_path / f"next{r}.csv"
        args = _suggest(study, out, n, *(create if r == 0 else []))
        if r == 2:  # one round in a fresh process
            done = _subprocess(args)
            assert done.returncode == 0, done.stderr
        else:
            assert main(args) == 0
        suggested = pd.read_csv(out, dtype={"candidate_id": str})
        assert list(suggested.columns[:2]) == ["candidate_id", "text"]
        assert {"color", "animal", "place", "y"} <= set(suggested.columns)

        expected = reference.ask(n)
        assert suggested["candidate_id"].tolist() == expected, f"round {r}"
        reference.tell(expected, objective(space.rows(expected)))

        results = _write_results(tmp_path / f"measured{r}.csv", expected, truth)
        assert main(["observe", "--study", str(study), "--results", str(results)]) == 0

    # Rounds after the first two had a fitted deep kernel, not random picks.
    assert reference.last_fit["n_train"] == (rounds - 1) * n
    assert reference.last_fit["losses"]
    from llmbo.optimizer import Optimizer as Opt

    continued = Opt.load(str(study), "default", progress=False)
    assert continued.history["candidate_id"].tolist() == reference.history["candidate_id"].tolist()
    assert continued.history["value"].tolist() == reference.history["value"].tolist()


# --------------------------------------------------------------------- happy paths
def _start(table: Path, tmp_path: Path, n: int = 3) -> tuple[Path, list[str]]:
    study = tmp_path / "s.db"
    out = tmp_path / "first.csv"
    args = _suggest(study, out, n, "--table", str(table), "--template", TEMPLATE)
    assert main([*args, "--id-column", "id", "--surrogate", "random"]) == 0
    return study, pd.read_csv(out, dtype={"candidate_id": str})["candidate_id"].tolist()


def test_suggest_observe_status(table: Path, tmp_path: Path, capsys) -> None:
    study, ids = _start(table, tmp_path)
    printed = capsys.readouterr().out
    assert "created" in printed and all(i in printed for i in ids)
    truth = _truth(table)
    results = _write_results(tmp_path / "r.csv", ids[:2], truth)
    assert main(["observe", "--study", str(study), "--results", str(results)]) == 0
    assert "recorded 2 value(s)" in capsys.readouterr().out

    # Telling the same file again changes nothing.
    before = _trial_rows(study)
    assert main(["observe", "--study", str(study), "--results", str(results)]) == 0
    assert _trial_rows(study) == before

    assert main(["status", "--study", str(study), "--top", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 complete, 1 pending, 0 running, 0 failed" in printed
    assert ids[2] in printed  # awaiting results
    best = max(ids[:2], key=truth.get)
    assert f"{truth[best]:.6g}" in printed and best in printed

    # A second suggest with one suggestion still pending never repeats a candidate.
    out = tmp_path / "second.csv"
    assert main(_suggest(study, out, 4)) == 0
    again = pd.read_csv(out, dtype={"candidate_id": str})["candidate_id"].tolist()
    assert not set(again) & set(ids)


def test_observe_accepts_custom_columns_and_unsuggested_ids(
    table: Path, tmp_path: Path, capsys
) -> None:
    study, ids = _start(table, tmp_path)
    truth = _truth(table)
    other = next(i for i in truth if i not in ids)
    path = tmp_path / "custom.csv"
    pd.DataFrame({"rxn": [ids[0], other], "yield": [1.5, 2.5]}).to_csv(path, index=False)
    args = ["observe", "--study", str(study), "--results", str(path)]
    assert main([*args, "--id-col", "rxn", "--value-col", "yield"]) == 0
    assert "1 not suggested by llmbo" in capsys.readouterr().out


# ---------------------------------------------------------------------- bad calls
@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            "candidate_id,value\n{a},1.0\nnope,2.0\n",
            "ids not in the study's candidates: line 3 'nope'",
        ),
        (
            "candidate_id,value\n{a},1.0\n{b},nan\n",
            "NaN or infinite (report failed experiments with a finite value): line 3 'nan'",
        ),
        ("candidate_id,value\n{a},1.0\n{b},inf\n", "line 3 'inf'"),
        ("candidate_id,value\n{a},1.0\n{b},-Infinity\n", "NaN or infinite"),
        ("candidate_id,value\n{a},1.0\n{b},high\n", "not numbers: line 3 'high'"),
        ("candidate_id,value\n{a},1.0\n{b},\n", "not numbers: line 3 (empty)"),
        ("candidate_id,value\n{a},1.0\n{a},1.0\n", "more than once"),
        ("candidate_id,yield\n{a},1.0\n", "no column(s) ['value']"),
        ("id,value\n{a},1.0\n", "no column(s) ['candidate_id']"),
        ("", "is empty"),
        ("candidate_id,value\n", "no rows"),
        ("candidate_id,value\n,1.0\n", "missing candidate ids"),
    ],
)
def test_bad_results_file_changes_nothing(
    table: Path, tmp_path: Path, capsys, rows: str, expected: str
) -> None:
    study, ids = _start(table, tmp_path)
    before = _trial_rows(study)
    path = tmp_path / "results.csv"
    path.write_text(rows.format(a=ids[0], b=ids[1]))
    assert main(["observe", "--study", str(study), "--results", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert _trial_rows(study) == before


def test_conflicting_value_changes_nothing(table: Path, tmp_path: Path, capsys) -> None:
    study, ids = _start(table, tmp_path)
    first = tmp_path / "first-results.csv"
    pd.DataFrame({"candidate_id": [ids[0]], "value": [1.0]}).to_csv(first, index=False)
    assert main(["observe", "--study", str(study), "--results", str(first)]) == 0
    before = _trial_rows(study)
    # A good new row and a contradicting old one: neither is stored.
    path = tmp_path / "second-results.csv"
    pd.DataFrame({"candidate_id": [ids[1], ids[0]], "value": [3.0, 2.0]}).to_csv(path, index=False)
    assert main(["observe", "--study", str(study), "--results", str(path)]) == 2
    assert "already measured with a different value" in capsys.readouterr().err
    assert _trial_rows(study) == before


def test_observe_or_status_without_a_study(tmp_path: Path, capsys) -> None:
    study = tmp_path / "missing.db"
    results = tmp_path / "r.csv"
    results.write_text("candidate_id,value\na,1\n")
    assert main(["observe", "--study", str(study), "--results", str(results)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["status", "--study", str(study)]) == 2
    assert not study.exists()


def test_first_suggest_needs_candidates_and_leaves_no_file(tmp_path: Path, capsys) -> None:
    study = tmp_path / "s.db"
    assert main(["suggest", "--study", str(study)]) == 2
    assert "needs the candidates" in capsys.readouterr().err
    assert not study.exists()


def test_unknown_model_leaves_no_study(table: Path, tmp_path: Path, capsys) -> None:
    study = tmp_path / "s.db"
    args = _suggest(study, tmp_path / "o.csv", 1, "--table", str(table), "--template", TEMPLATE)
    assert main([*args, "--surrogate", "projection", "--model", str(tmp_path / "no-model")]) != 0
    assert "no-model" in capsys.readouterr().err
    assert not study.exists()
    assert not (tmp_path / "o.csv").exists()


def test_reopen_refuses_other_settings(table: Path, tmp_path: Path, capsys) -> None:
    study, _ = _start(table, tmp_path)
    before = _trial_rows(study)
    out = tmp_path / "o.csv"
    assert main([*_suggest(study, out, 1), "--surrogate", "lora"]) == 2
    assert "was created with --surrogate random" in capsys.readouterr().err
    assert main([*_suggest(study, out, 1), "--seed", "5"]) == 2
    capsys.readouterr()
    assert main([*_suggest(study, out, 1), "--noise-prior"]) == 2
    assert "--noise-prior" in capsys.readouterr().err
    assert main([*_suggest(study, out, 1), "--outcome-power", "2"]) == 2
    assert "--outcome-power" in capsys.readouterr().err
    other = tmp_path / "other.csv"
    pd.read_csv(table).head(10).to_csv(other, index=False)
    args = _suggest(
        study, out, 1, "--table", str(other), "--template", TEMPLATE, "--id-column", "id"
    )
    assert main(args) == 2
    assert "other candidates" in capsys.readouterr().err
    assert _trial_rows(study) == before
    assert not out.exists()


def test_bad_out_path_and_oversized_batch(table: Path, tmp_path: Path, capsys) -> None:
    study, _ = _start(table, tmp_path)
    before = _trial_rows(study)
    assert main(_suggest(study, tmp_path / "no-dir" / "o.csv", 1)) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(_suggest(study, tmp_path / "o.csv", 58)) == 2
    assert "only 57 of 60 remain" in capsys.readouterr().err
    assert _trial_rows(study) == before
