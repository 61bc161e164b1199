"""``llmbo run``: simulated campaigns on a table with a known target, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_pool
from llmbo.cli import main

TEMPLATE = "{color} {animal} in the {place}"


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """A 60-candidate table (3 colours x 10 animals x 2 places) with target column y."""
    frame = synthetic_pool(seed=1)
    frame = frame[
        frame["color"].isin(["red", "green", "blue"]) & frame["place"].isin(["forest", "city"])
    ]
    path = tmp_path / "pool.csv"
    frame.to_csv(path, index=False)
    return path


def _run(table: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--table",
        str(table),
        "--template",
        TEMPLATE,
        "--target",
        "y",
        "--no-progress",
        *extra,
    ]


def test_random_campaign_writes_history_and_summary(table: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "history.csv"
    args = _run(table, "--surrogate", "random", "--n-initial", "3", "--iterations", "5")
    assert main([*args, "--batch-size", "2", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    history = pd.read_csv(out)
    assert len(history) == 3 + 5 * 2
    assert (history["state"] == "complete").all()
    assert history["candidate_id"].is_unique
    # Every value is the table's value for that candidate.
    frame = pd.read_csv(table)
    truth = {TEMPLATE.format(**r): r["y"] for r in frame.to_dict("records")}
    assert np.allclose(history["value"], [truth[t] for t in history["text"]])
    best = history["value"].max()
    assert f"best found    {best:.6g}" in printed
    rank = int((frame["y"] > best).sum()) + 1
    assert f"rank {rank} of 60" in printed
    assert "top-5% hits" in printed and "time" in printed


def test_components_campaign_on_a_table(table: Path, capsys) -> None:
    """The components GP reads every text column by default; no model is named for it."""
    args = _run(table, "--surrogate", "components", "--n-initial", "4", "--iterations", "3")
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "surrogate components, acquisition logei" in printed


def test_same_seed_same_campaign(table: Path, tmp_path: Path) -> None:
    outs = []
    for k in range(2):
        out = tmp_path / f"h{k}.csv"
        args = _run(table, "--surrogate", "random", "--iterations", "4", "--seed", "7")
        assert main([*args, "--output", str(out)]) == 0
        outs.append(pd.read_csv(out)["candidate_id"].tolist())
    assert outs[0] == outs[1]


def test_minimize(table: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "h.csv"
    args = _run(table, "--surrogate", "random", "--iterations", "3", "--minimize")
    assert main([*args, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "minimised" in printed
    assert f"best found    {pd.read_csv(out)['value'].min():.6g}" in printed


def test_deep_kernel_campaign_kept_in_study(table: Path, tmp_path: Path, tiny_model: str) -> None:
    from llmbo.optimizer import Optimizer

    study = tmp_path / "run.db"
    args = _run(table, "--surrogate", "projection", "--model", tiny_model, "--steps", "3")
    args += ["--n-initial", "4", "--iterations", "3", "--study", str(study), "--study-name", "s"]
    assert main(args) == 0
    opt = Optimizer.load(str(study), "s", progress=False)
    history = opt.history
    assert len(history) == 7 and (history["state"] == "complete").all()
    assert opt.surrogate_name == "projection"
    assert opt.spec is not None and opt.spec.deep_kernel.steps == 3


def test_lora_top_module_option_reaches_the_study(
    table: Path, tmp_path: Path, tiny_model: str, capsys
) -> None:
    from llmbo.optimizer import Optimizer

    study = tmp_path / "run.db"
    args = _run(
        table,
        "--surrogate",
        "lora",
        "--model",
        tiny_model,
        "--steps",
        "3",
        "--top-module",
        "output",
    )
    args += ["--n-initial", "4", "--iterations", "2", "--study", str(study), "--study-name", "s"]
    assert main(args) == 0
    opt = Optimizer.load(str(study), "s", progress=False)
    assert opt.spec is not None and opt.spec.top_module == "output"
    assert len(opt.history) == 6
    # Another surrogate, or a submodule the model does not have: exit 2, message says why.
    capsys.readouterr()
    assert main(_run(table, "--surrogate", "projection", "--top-module", "output")) == 2
    assert (
        "--top-module: Unknown setting 'top_module' for the projection surrogate"
        in capsys.readouterr().err
    )
    bad = _run(
        table, "--surrogate", "lora", "--model", tiny_model, "--top-module", "attention.nope",
        "--iterations", "1",
    )  # fmt: skip
    assert main(bad) == 2
    assert "top_module 'attention.nope' is not a submodule" in capsys.readouterr().err


@pytest.mark.parametrize("side", ["onehot", "components"])
def test_side_features_option_reaches_the_study(
    side: str, table: Path, tmp_path: Path, tiny_model: str, capsys
) -> None:
    from llmbo.optimizer import Optimizer

    study = tmp_path / "run.db"
    args = _run(table, "--surrogate", "projection", "--model", tiny_model, "--steps", "3")
    args += ["--side-features", side, "--fingerprint-columns", "color,animal"]
    args += ["--n-initial", "4", "--iterations", "2", "--study", str(study), "--study-name", "s"]
    side_fit = "fixed" if side == "components" else "joint"
    if side == "components":
        args += ["--side-fit", side_fit]
    assert main(args) == 0
    opt = Optimizer.load(str(study), "s", progress=False)
    assert opt.spec is not None and opt.spec.side_features == side
    assert opt.spec.deep_kernel.side_fit == side_fit
    assert opt.spec.side_featurizer == {"columns": ["color", "animal"]}
    assert len(opt.history) == 6 and (opt.history["state"] == "complete").all()
    # A surrogate without a deep kernel: exit 2, message says why.
    capsys.readouterr()
    assert main(_run(table, "--surrogate", "static", "--side-features", "onehot")) == 2
    assert (
        "--side-features: Unknown setting 'side_features' for the static surrogate"
        in capsys.readouterr().err
    )
    assert main(_run(table, "--surrogate", "projection", "--side-fit", "fixed")) == 2
    assert "set side_features too" in capsys.readouterr().err


def test_noise_prior_option_reaches_the_study(table: Path, tmp_path: Path, capsys) -> None:
    from llmbo.optimizer import Optimizer

    study = tmp_path / "run.db"
    args = _run(table, "--surrogate", "onehot", "--fingerprint-columns", "color,animal")
    args += ["--noise-prior", "--n-initial", "4", "--iterations", "2"]
    assert main([*args, "--study", str(study), "--study-name", "s"]) == 0
    opt = Optimizer.load(str(study), "s", progress=False)
    assert opt.spec is not None and opt.spec.noise_prior
    assert len(opt.history) == 6
    capsys.readouterr()
    assert main(_run(table, "--surrogate", "random", "--noise-prior")) == 2
    assert (
        "--noise-prior: Unknown setting 'noise_prior' for the random surrogate"
        in capsys.readouterr().err
    )


def test_outcome_power_option_reaches_the_study(table: Path, tmp_path: Path, capsys) -> None:
    from llmbo.optimizer import Optimizer

    study = tmp_path / "run.db"
    args = _run(table, "--surrogate", "onehot", "--fingerprint-columns", "color,animal")
    args += ["--outcome-power", "2", "--n-initial", "4", "--iterations", "2"]
    assert main([*args, "--study", str(study), "--study-name", "s"]) == 0
    opt = Optimizer.load(str(study), "s", progress=False)
    assert opt.acquisition.outcome_power == 2.0
    assert len(opt.history) == 6
    for bad in ("0", "-1", "nan", "two"):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main(_run(table, "--outcome-power", bad))
        assert exit_info.value.code == 2
        assert "--outcome-power" in capsys.readouterr().err


def test_lora_placement_option_values() -> None:
    import argparse

    from llmbo.cli.common import surrogate_spec

    def spec(*extra: str) -> object:
        args = argparse.Namespace(
            surrogate=None, model=None, device=None, steps=None, soft_tokens=None,
            fingerprint_columns=None, top_module=None,
        )  # fmt: skip
        for key, value in zip(extra[::2], extra[1::2], strict=True):
            setattr(args, key, value)
        return surrogate_spec(args).top_module  # type: ignore[attr-defined]

    assert spec() == "auto"  # the default preset, knowing no columns: the lora preset's
    assert spec("top_module", "none") is None
    assert spec("top_module", "auto") == "auto"
    assert spec("top_module", "output") == "output"


# ------------------------------------------------------------------------- bad input
def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


GOOD_ROWS = "name,size,y\nalpha,1,0.5\nbeta,2,0.7\ngamma,3,0.1\n"


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        (GOOD_ROWS, ["--target", "yield"], "Target column 'yield' is not in"),
        (GOOD_ROWS, ["--template", "{name} {colour}"], "['colour'] are not columns"),
        ("name,y\nalpha,0.5\nbeta,\ngamma,0.1\n", [], "missing, non-numeric or infinite"),
        ("name,y\nalpha,0.5\nbeta,inf\ngamma,0.1\n", [], "missing, non-numeric or infinite"),
        ("name,y\nalpha,0.5\nbeta,high\ngamma,0.1\n", [], "missing, non-numeric or infinite"),
        ("", [], "is empty"),
        ("name,y\n", [], "has a header but no rows"),
        (GOOD_ROWS, ["--batch-size", "5"], "--batch-size 5 is larger than the pool"),
        (GOOD_ROWS, ["--iterations", "4"], "the pool has only 3 candidates"),
        (GOOD_ROWS, ["--id-column", "nope"], "id_column 'nope' is not a column"),
    ],
)
def test_bad_input_exits_2_with_message(
    tmp_path: Path, capsys, content: str, options: list[str], expected: str
) -> None:
    path = _write(tmp_path, content)
    study = tmp_path / "s.db"
    args = ["run", "--table", str(path), "--template", "{name}", "--target", "y"]
    args += ["--surrogate", "random", "--n-initial", "1", "--iterations", "1", "--no-progress"]
    args += ["--study", str(study)]
    # later options win in argparse, so each case overrides one of the defaults above
    assert main([*args, *options]) == 2
    err = capsys.readouterr().err
    assert "llmbo run: error:" in err
    assert expected in err
    assert not study.exists()  # nothing was written


def test_missing_table_and_template(tmp_path: Path, capsys) -> None:
    assert main(["run", "--target", "y"]) == 2
    assert "--benchmark NAME, or --table FILE" in capsys.readouterr().err
    path = _write(tmp_path, GOOD_ROWS)
    assert main(["run", "--table", str(path), "--target", "y"]) == 2
    assert "--table needs --template" in capsys.readouterr().err
    assert (
        main(["run", "--table", str(tmp_path / "nope.csv"), "--template", "{a}", "--target", "y"])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_unknown_surrogate(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, GOOD_ROWS)
    args = ["run", "--table", str(path), "--template", "{name}", "--target", "y"]
    assert main([*args, "--n-initial", "1", "--iterations", "1", "--surrogate", "gaussian"]) == 2
    assert "Unknown surrogate or preset 'gaussian'" in capsys.readouterr().err


def test_unknown_model_path_fails_before_anything_is_stored(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, GOOD_ROWS)
    study = tmp_path / "s.db"
    args = ["run", "--table", str(path), "--template", "{name}", "--target", "y", "--no-progress"]
    args += ["--surrogate", "projection", "--model", str(tmp_path / "no-such-model")]
    args += ["--n-initial", "1", "--iterations", "1", "--study", str(study)]
    code = main(args)
    assert code != 0
    err = capsys.readouterr().err
    assert "no-such-model" in err and "does not exist" in err
    if study.exists():  # the file may stay, but holds no study
        from llmbo.storage import get_storage

        assert get_storage(str(study)).study_names() == []


def test_subprocess(table: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    args = _run(table, "--surrogate", "random", "--iterations", "2", "--n-initial", "2")
    done = subprocess.run(
        [sys.executable, "-m", "llmbo.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "best found" in done.stdout and "rank" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "llmbo.cli", *_run(table, "--surrogate", "random"), "--target", "z"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 2
    assert "Target column 'z'" in bad.stderr


def test_set_reaches_the_surrogate_and_acquisition_configs(
    table: Path, tmp_path: Path, tiny_model: str, capsys
) -> None:
    """``--set KEY=VALUE`` is the dialect of ``llmbo bench`` in ``run`` and ``suggest``: it
    sets any field of the surrogate's config (checked by that config) or the acquisition,
    only when the study is created."""
    from llmbo.optimizer import Optimizer

    study = tmp_path / "set.db"
    args = _run(
        table, "--surrogate", "lora", "--model", tiny_model, "--top-module", "output",
        "--set", "deep_kernel.steps=3", "--set", "lora.r=8", "--set", "lora.lora_alpha=32",
        "--set", "acquisition=ucb", "--set", "acquisition.beta=0.5",
        "--n-initial", "3", "--iterations", "1", "--study", str(study), "--study-name", "s",
    )  # fmt: skip
    assert main(args) == 0
    opt = Optimizer.load(str(study), "s", progress=False)
    assert opt.spec.deep_kernel.steps == 3  # type: ignore[union-attr]
    assert opt.spec.lora["r"] == 8 and opt.spec.lora["lora_alpha"] == 32  # type: ignore[union-attr]
    assert (opt.acquisition.name, opt.acquisition.beta) == ("ucb", 0.5)
    capsys.readouterr()
    for bad, message in (
        ("deep_kernel.stepz=3", "no field 'stepz'"),
        ("lora.rank=8", "Unknown LoRA setting(s) ['rank']"),
        ("deep_kernel.steps=-1", "steps must be an integer >= 0"),
        ("acquisition.beta=0.5", "acquisition.beta is UCB's exploration weight"),
        ("nokey", "--set needs KEY=VALUE"),
    ):
        assert main(_run(table, "--surrogate", "lora", "--model", tiny_model, "--set", bad)) == 2, (
            bad
        )
        assert message in capsys.readouterr().err, bad
    # The same form in suggest; on reopening it is refused rather than ignored.
    suggest = ["suggest", "--study", str(tmp_path / "s2.db"), "--table", str(table)]
    suggest += ["--template", TEMPLATE, "-n", "1", "--surrogate", "onehot", "--no-progress"]
    assert main([*suggest, "--set", "kernel=matern-ard"]) == 0
    stored = Optimizer.load(str(tmp_path / "s2.db"), "default", progress=False)
    assert stored.spec.kernel == "matern-ard"  # type: ignore[union-attr]
    capsys.readouterr()
    again = ["suggest", "--study", str(tmp_path / "s2.db"), "-n", "1", "--no-progress"]
    assert main([*again, "--set", "kernel=tanimoto"]) == 2
    assert "--set only applies when a study is created" in capsys.readouterr().err
