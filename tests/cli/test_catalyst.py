"""``llmbo catalyst``: a tiny run with and without a mentor, resume, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbo.catalyst import CatalystRecord
from llmbo.cli import main
from llmbo.storage import get_storage


def _args(data: Path, model: str, study: Path, *extra: str) -> list[str]:
    return [
        "catalyst",
        "--data",
        str(data),
        "--model",
        model,
        "--epochs",
        "2",
        "--prompt-tokens",
        "3",
        "--batch-size",
        "8",
        "--study",
        str(study),
        "--no-progress",
        *extra,
    ]


def test_gradient_only_run_prints_the_result_and_resumes(data, tiny_model, tmp_path, capsys):
    study = tmp_path / "c.db"
    assert main(_args(data, tiny_model, study, "--llm-backend", "none")) == 0
    out = capsys.readouterr().out
    assert "mentor: none (gradients only); restarts: 0" in out
    assert "best validation rmse:" in out and "test rmse:" in out
    storage = get_storage(str(study), readonly=True)
    assert storage.study_names() == ["catalyst-tiny"]
    # Run again: nothing to train, the stored run is finished and reported again.
    assert main(_args(data, tiny_model, study, "--llm-backend", "none")) == 0
    assert "restarts: 0" in capsys.readouterr().out


def test_a_dead_http_mentor_is_reported_and_training_finishes(data, tiny_model, tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    study = tmp_path / "c.db"
    extra = ["--llm-backend", "openai", "--llm-model", "m", "--llm-api-key-env", "none",
             "--llm-base-url", f"http://127.0.0.1:{port}/v1", "--rounds", "1"]  # fmt: skip
    assert main(_args(data, tiny_model, study, *extra)) == 0
    assert "restarts: 0" in capsys.readouterr().out
    record = CatalystRecord.open(str(study), "catalyst-tiny")
    assert [e["epoch"] for e in record.events("no_restart")] == [0]
    assert record.settings()["llm"]["base_url"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--label-column", "rating"], "no column 'rating'"),
        (["--rounds", "0"], "--rounds 0: the mentor needs at least one round"),
        (["--rounds", "5"], "mentor_epochs"),
        (
            ["--llm-backend", "openai", "--llm-model", "m", "--llm-base-url", "not a url"],
            "not a url",
        ),
        (
            [
                "--llm-backend",
                "openai",
                "--llm-model",
                "m",
                "--llm-api-key-env",
                "LLMBO_NO_SUCH_KEY",
            ],
            "LLMBO_NO_SUCH_KEY",
        ),
        (["--llm-backend", "openai"], "--llm-backend openai needs --llm-model"),
        (["--llm-base-url", "http://127.0.0.1:1/v1"], "apply to --llm-backend openai only"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_writes_no_study(
    data, tiny_model, tmp_path, capsys, extra, message
):
    study = tmp_path / "c.db"
    assert main(_args(data, tiny_model, study, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("llmbo catalyst: error: ")
    assert "Traceback" not in err
    assert not study.exists()


def test_a_missing_model_is_named(data, tmp_path, capsys):
    study = tmp_path / "c.db"
    assert main(_args(data, "/no/such/model", study, "--llm-backend", "none")) != 0
    err = capsys.readouterr().err
    assert "/no/such/model" in err and "Traceback" not in err
    assert not study.exists()


def test_an_empty_data_file_is_refused(tiny_model, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    study = tmp_path / "c.db"
    assert main(_args(empty, tiny_model, study, "--llm-backend", "none")) == 2
    assert "empty" in capsys.readouterr().err
    assert not study.exists()
