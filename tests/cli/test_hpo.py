"""``llmbo hpo``: bad input fails early and clearly; a tiny search runs, resumes, survives."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbo.cli import main
from llmbo.storage import TrialState, get_storage

STUDY = "lora-tiny-random"  # the default study name: lora-<data file stem>-<method>


def _args(data: Path, model: str, study: Path, *extra: str) -> list[str]:
    return [
        "hpo",
        "--data",
        str(data),
        "--model",
        model,
        "--grid",
        "r=2,4",
        "--grid",
        "alpha_ratio=1",
        "--grid",
        "lora_dropout=0",
        "--grid",
        "batch_size=8",
        "--grid",
        "learning_rate=1e-3,1e-2",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--max-length",
        "16",
        "--method",
        "random",
        "--study",
        str(study),
        "--no-progress",
        *extra,
    ]


def _stored(study: Path, name: str = STUDY) -> list[tuple[str, str, float | None]]:
    storage = get_storage(str(study), readonly=True)
    trials = storage.trials(storage.load_study(name).study_id)
    return [(t.candidate_id, t.state.value, t.value) for t in trials]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grid", "rank=1,2"], "Unknown hyperparameter 'rank'"),
        (["--grid", "r="], "--grid r= has no values"),
        (["--grid", "r=a,b"], "--grid r: values must be numbers"),
        (["--grid", "learning_rate=fast"], "--grid learning_rate: values must be numbers"),
        (["--grid", "r=-4,8"], "r values must be positive numbers"),
        (["--grid", "lora_alpha=16"], "lora_alpha is derived"),
        (["--grid", "r"], "--grid needs NAME=VALUES"),
        (["--text-column", "smiles"], "no column 'smiles'"),
        (["--label-column", "logS"], "no column 'logS'"),
        (["--ray-address", "127.0.0.1:1"], "Cannot reach the Ray cluster at '127.0.0.1:1'"),
        (["--task", "esol"], "Give either --task (esol or sentiment-lexicon) or --data FILE"),
        (["--metric", "no-such-metric"], "Unknown metric 'no-such-metric'"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_writes_no_study(
    data: Path, tiny_model: str, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    study = tmp_path / "h.db"
    assert main(_args(data, tiny_model, study, *extra)) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.err.startswith("llmbo hpo: error: ")
    assert "Traceback" not in captured.err
    assert not study.exists()


def test_a_missing_model_or_data_file_fails_before_the_study_is_created(
    data: Path, tiny_model: str, tmp_path: Path, capsys
) -> None:
    study = tmp_path / "h.db"
    missing = str(tmp_path / "no-such-model")
    assert main(_args(data, missing, study)) != 0
    err = capsys.readouterr().err
    assert "does not exist" in err and "no-such-model" in err
    assert not study.exists()
    assert main(_args(tmp_path / "nothing.csv", tiny_model, study)) == 2
    err = capsys.readouterr().err
    assert "nothing.csv" in err and "does not exist" in err
    assert not study.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "two"], "expected a whole number of workers"),
        (["--trials", "-1"], "--trials"),
        (["--method", "grid"], "invalid choice: 'grid'"),
    ],
)
def test_bad_options_are_usage_errors(
    data: Path, tiny_model: str, tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    study = tmp_path / "h.db"
    with pytest.raises(SystemExit) as info:
        main(_args(data, tiny_model, study, *extra))
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not study.exists()


def test_a_tiny_search_runs_resumes_and_survives_a_failing_command(
    data: Path, tiny_model: str, tmp_path: Path, capsys
) -> None:
    study = tmp_path / "h.db"
    assert main(_args(data, tiny_model, study)) == 0
    out = capsys.readouterr().out
    assert "trials: 2 (2 new, 0 failed)" in out
    assert "best validation rmse: " in out
    best = next(line for line in out.splitlines() if line.startswith("best configuration: "))
    assert "alpha_ratio=1" in best and "batch_size=8" in best and "lora_dropout=0" in best
    assert any(f"r={r}," in best for r in (2, 4))
    assert any(f"learning_rate={lr}" in best for lr in ("0.001", "0.01"))
    first = _stored(study)
    assert len(first) == 2
    assert all(state == "COMPLETE" for _, state, _ in first)
    assert len({cid for cid, _, _ in first}) == 2
    # The best value printed is the lowest stored RMSE.
    printed = float(next(ln for ln in out.splitlines() if "best validation" in ln).split()[-1])
    assert printed == pytest.approx(min(v for _, _, v in first), rel=1e-5)

    # Again with --trials 3: exactly one more trial, the first two unchanged.
    i = _args(data, tiny_model, study).index("--trials")
    again = _args(data, tiny_model, study)
    again[i + 1] = "3"
    assert main(again) == 0
    assert "trials: 3 (1 new, 0 failed)" in capsys.readouterr().out
    second = _stored(study)
    assert second[:2] == first
    assert len(second) == 3
    assert len({cid for cid, _, _ in second}) == 3

    # Failing commands on the existing study leave it as it was.
    assert main(_args(data, tiny_model, study, "--grid", "rank=1,2")) == 2
    assert main(_args(data, tiny_model, study, "--grid", "r=")) == 2
    assert main(_args(data, tiny_model, study, "--ray-address", "127.0.0.1:1")) == 2
    capsys.readouterr()
    assert _stored(study) == second

    # The same study name with another method or grid is a settings error, not a new study.
    named = [*again, "--study-name", "named"]
    assert main(named) == 0
    capsys.readouterr()
    tpe = [*named]
    tpe[tpe.index("random")] = "tpe"
    assert main(tpe) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmbo hpo: error: ")
    assert "named" in err
    other_grid = [*named, "--grid", "r=2,4,8"]
    assert main(other_grid) == 2
    capsys.readouterr()
    assert len(_stored(study, "named")) == 3
    assert _stored(study) == second
    storage = get_storage(str(study), readonly=True)
    assert sorted(storage.study_names()) == ["lora-tiny-random", "named"]
    trials = storage.trials(storage.load_study("named").study_id)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
