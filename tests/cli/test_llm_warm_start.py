"""``--warm-start llm`` on ``llmbo run`` and ``llmbo suggest``, against a chat server on
127.0.0.1: the initial design comes from the LLM, BO follows, the settings are stored (never
the key), and bad LLM options fail before a study exists."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import pool_table
from llmbo.cli import main
from llmbo.testing.chat import ChatServer

TEMPLATE = "{color} {animal} in the {place}"
KEY_ENV, KEY = "LLMBO_TEST_WARM_KEY", "sk-warm-start-do-not-store"
#: The server's answer: three candidates of the table, one line that is none.
PICKS = ["red fox in the farm", "Blue fox in the river", "black fox in the farm"]
REPLY = "Here they are:\n" + "\n".join(f"{k + 1}. {t}" for k, t in enumerate(PICKS))


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return pool_table(tmp_path / "pool.csv", seed=2)  # 60 rows, ids x000..., target y


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer(lambda i, body: [REPLY]) as srv:
        yield srv


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def _llm(server: ChatServer, *extra: str) -> list[str]:
    return [
        "--warm-start",
        "llm",
        "--llm-backend",
        "openai",
        "--llm-model",
        "tiny-chat",
        "--llm-base-url",
        server.base_url,
        "--llm-api-key-env",
        KEY_ENV,
        *extra,
    ]


def _run(table: Path, study: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--table",
        str(table),
        "--template",
        TEMPLATE,
        "--target",
        "y",
        "--id-column",
        "id",
        "--study",
        str(study),
        "--no-progress",
        *extra,
    ]


def _suggest(study: Path, *extra: str) -> list[str]:
    return ["suggest", "--study", str(study), "--no-progress", *extra]


def _create(table: Path) -> list[str]:
    return ["--table", str(table), "--template", TEMPLATE, "--id-column", "id"]


def _stored_config(study: Path) -> dict[str, Any]:
    with sqlite3.connect(study) as con:
        (text,) = con.execute("SELECT config_json FROM llmbo_studies").fetchone()
    return json.loads(text)["proposer"]


def _trials(study: Path) -> list[tuple]:
    with sqlite3.connect(study) as con:
        return con.execute("SELECT * FROM llmbo_trials ORDER BY trial_id").fetchall()


def test_run_takes_its_initial_design_from_the_llm(
    table: Path,
    tmp_path: Path,
    server: ChatServer,
    key: str,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    study, out = tmp_path / "s.db", tmp_path / "history.csv"
    args = _run(table, study, "--surrogate", "onehot", "--n-initial", "4", "--iterations", "3")
    assert main([*args, *_llm(server), "--output", str(out)]) == 0
    printed = capsys.readouterr()
    history = pd.read_csv(out)
    assert len(history) == 7 and (history["state"] == "complete").all()
    assert [t.lower() for t in history["text"][:3]] == [t.lower() for t in PICKS]
    assert history["candidate_id"].is_unique
    assert (
        "warm start: 3 from the LLM (openai:tiny-chat), 1 reply line(s) rejected, 1 at random"
        in (printed.out)
    )
    assert "gave 3 usable candidate(s) of 4" in caplog.text  # the random one is logged
    (body,) = server.bodies()  # one request for the whole initial design
    assert body["model"] == "tiny-chat" and "Propose 7 different" in body["messages"][1]["content"]
    config = _stored_config(study)
    assert config["name"] == "warm_start" and config["n_initial"] == 4
    assert config["then"]["surrogate"]["name"] == "onehot"
    assert config["initial"]["backend_options"]["base_url"] == server.base_url
    assert config["initial"]["backend_options"]["api_key_env"] == KEY_ENV
    assert KEY.encode() not in study.read_bytes()
    # The same command again resumes: nothing is missing, the LLM is not asked again.
    assert main([*args, *_llm(server)]) == 0
    assert len(server.requests) == 1 and len(_trials(study)) == 7
    # The options that are left out come from the study.
    assert main([*args, "--iterations", "4"]) == 0
    assert len(server.requests) == 1 and len(_trials(study)) == 8


def test_run_warm_start_random_is_the_default(table: Path, tmp_path: Path) -> None:
    runs = []
    for k, extra in enumerate([(), ("--warm-start", "random")]):
        out = tmp_path / f"h{k}.csv"
        args = _run(table, tmp_path / f"s{k}.db", "--surrogate", "random", "--iterations", "2")
        assert main([*args, *extra, "--output", str(out)]) == 0
        runs.append(pd.read_csv(out)["candidate_id"].tolist())
    assert runs[0] == runs[1]


def test_server_errors_still_give_a_full_initial_design(
    table: Path,
    tmp_path: Path,
    key: str,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusing = ChatServer(lambda i, body: (400, {"error": {"message": "no such model"}}))
    with refusing:
        args = _run(table, tmp_path / "s.db", "--surrogate", "random", "--n-initial", "3")
        assert main([*args, "--iterations", "1", *_llm(refusing)]) == 0
    printed = capsys.readouterr()
    assert "could not answer" in caplog.text and "HTTP 400" in caplog.text
    assert "0 from the LLM" in printed.out and "3 at random" in printed.out
    assert len(_trials(tmp_path / "s.db")) == 4


def test_suggest_warm_start_then_bo(
    table: Path, tmp_path: Path, server: ChatServer, key: str, capsys: pytest.CaptureFixture
) -> None:
    study = tmp_path / "s.db"
    first = _suggest(study, *_create(table), "-n", "3", "--surrogate", "onehot", *_llm(server))
    assert main(first) == 0
    printed = capsys.readouterr().out
    assert "warm start: 3 from the LLM (openai:tiny-chat), 1 reply line(s) rejected" in printed
    assert all(t.lower() in printed.lower() for t in PICKS)
    assert _stored_config(study)["n_initial"] == 3  # this call's -n
    # The initial design is handed out (pending): later suggestions are the model's.
    assert main(_suggest(study, "-n", "2")) == 0
    assert len(server.requests) == 1 and len(_trials(study)) == 5
    assert "warm start" not in capsys.readouterr().out
    assert main(["status", "--study", str(study)]) == 0
    shown = capsys.readouterr().out
    assert "warm start: the first 3 trial(s) proposed by llm (openai:tiny-chat)" in shown
    assert "surrogate onehot" in shown


def test_suggest_n_initial_spans_calls(
    table: Path, tmp_path: Path, server: ChatServer, key: str
) -> None:
    study = tmp_path / "s.db"
    args = _suggest(study, *_create(table), "-n", "2", "--n-initial", "3", "--surrogate", "random")
    assert main([*args, *_llm(server)]) == 0
    assert main(_suggest(study, "-n", "2")) == 0  # one more from the LLM, one at random
    assert len(server.requests) == 2
    assert main(_suggest(study, "-n", "2")) == 0
    assert len(server.requests) == 2


def test_reopening_with_other_warm_start_settings_is_refused(
    table: Path, tmp_path: Path, server: ChatServer, key: str, capsys: pytest.CaptureFixture
) -> None:
    study = tmp_path / "s.db"
    assert main(_suggest(study, *_create(table), "--surrogate", "random", *_llm(server))) == 0
    before = _trials(study)
    capsys.readouterr()
    for extra, expected in [
        (("--llm-model", "other"), "was created with --llm-model tiny-chat"),
        (("--warm-start", "random"), "was created with --warm-start llm"),
        (("--n-initial", "5"), "--n-initial 2"),
        (("--llm-backend", "local"), "was created with --llm-backend openai"),
    ]:
        assert main(_suggest(study, *extra)) == 2, extra
        assert expected in capsys.readouterr().err, extra
    assert _trials(study) == before
    # The settings it has, given again, are fine.
    assert main(_suggest(study, "--warm-start", "llm", "--llm-model", "tiny-chat")) == 0


def test_llm_options_on_a_study_without_warm_start_are_refused(
    table: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    study = tmp_path / "s.db"
    assert main(_suggest(study, *_create(table), "--surrogate", "random")) == 0
    capsys.readouterr()
    assert main(_suggest(study, "--llm-model", "x")) == 2
    assert "created without --warm-start llm" in capsys.readouterr().err
    assert main(_suggest(study, "--n-initial", "4")) == 2
    assert "created without --warm-start llm" in capsys.readouterr().err
    assert main(_suggest(study, "--warm-start", "random")) == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--llm-base-url", "not-a-url"], "is not an http(s) URL"),
        (["--llm-api-key-env", "LLMBO_TEST_UNSET_KEY"], "LLMBO_TEST_UNSET_KEY is not set"),
        (["--llm-model", ""], "needs --llm-model"),
        (["--n-initial", "0"], "positive integer"),
    ],
)
def test_bad_llm_options_leave_no_study(
    table: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    options: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("LLMBO_TEST_UNSET_KEY", raising=False)
    monkeypatch.setenv(KEY_ENV, KEY)
    study = tmp_path / "s.db"
    base = [
        "--warm-start", "llm", "--llm-backend", "openai", "--llm-model", "m",
        "--llm-base-url", "http://127.0.0.1:9/v1", "--llm-api-key-env", KEY_ENV,
    ]  # fmt: skip
    code = _exit_code(_suggest(study, *_create(table), *base, *options))
    assert code == 2
    assert message in capsys.readouterr().err
    assert not study.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--llm-backend", "telepathy"], "invalid choice: 'telepathy'"),
        (["--llm-model", "x"], "--llm-model applies with --warm-start llm only"),
        (["--warm-start", "llm", "--llm-base-url", "http://x/v1"], "openai only"),
        (["--warm-start", "llm", "--llm-backend", "openai"], "needs --llm-model"),
        (["--warm-start", "llm", "--n-initial", "0"], "asks the LLM for nothing"),
    ],
)
def test_bad_warm_start_options_of_run(
    table: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    options: list[str],
    message: str,
) -> None:
    study = tmp_path / "s.db"
    code = _exit_code(_run(table, study, "--surrogate", "random", *options))
    assert code == 2
    assert message in capsys.readouterr().err
    assert not study.exists()


def test_unset_default_key_variable(
    table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    args = ["--warm-start", "llm", "--llm-backend", "openai", "--llm-model", "gpt-4o-mini"]
    assert main(_suggest(tmp_path / "s.db", *_create(table), *args)) == 2
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY is not set" in err and "--llm-api-key-env none" in err
    assert not (tmp_path / "s.db").exists()


def _exit_code(argv: list[str]) -> int:
    """``main``'s exit code, argparse's own refusals (SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
