"""Nothing lost, nobody in: what the CLI does with racing processes, outputs that would
overwrite inputs, code-execution settings in study files, odd column names, broken study
files, contradicting options and other bad input (RELIABILITY.md lists every case).

Every test here failed before the fix it guards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from llmbo.cli import main
from llmbo.errors import InputError

TEMPLATE = "{name} with {kind}"


def _table(path: Path, n: int = 80, *, seed: int = 0, extra: dict | None = None) -> Path:
    rows = [
        {"name": f"item{i:03d}", "kind": ["acid", "base", "salt", "metal"][i % 4], "y": 0.5 * i}
        for i in range(n)
    ]
    frame = pd.DataFrame(rows)
    for key, values in (extra or {}).items():
        frame[key] = values
    if seed:
        frame["kind"] = frame["kind"] + f"-{seed}"
    frame.to_csv(path, index=False)
    return path


def _cli(*argv: str) -> tuple[int, str, str]:
    """Run ``llmbo`` in-process: (exit code, stdout, stderr); an escaping exception fails."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _proc(*argv: str, **kwargs) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-m", "llmbo.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def _suggest(study: Path | str, table: Path | str, *extra: str) -> list[str]:
    return [
        "suggest",
        "--study",
        str(study),
        "--table",
        str(table),
        "--template",
        TEMPLATE,
        "--surrogate",
        "random",
        "--no-progress",
        *extra,
    ]


def _trials(study: Path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(study)) as con:
        return con.execute(
            "SELECT candidate_id, state, value FROM llmbo_trials ORDER BY number"
        ).fetchall()


def _observe(study: Path, results: Path, ids: list[str], values: list[float]) -> None:
    pd.DataFrame({"candidate_id": ids, "value": values}).to_csv(results, index=False)
    code, _, err = _cli("observe", "--study", str(study), "--results", str(results))
    assert code == 0, err


def _suggested_ids(out_csv: Path) -> list[str]:
    return pd.read_csv(out_csv, dtype=str)["candidate_id"].tolist()


# -------------------------------------------------------------- 1. racing first suggests
def test_failing_first_suggest_never_removes_a_study_another_process_created(
    tmp_path: Path,
) -> None:
    """Deterministic form of the race: A blocks reading its table (a FIFO) while B creates
    the study and records two values; A then fails on another table. B's study, its two
    measurements and the file stay."""
    study, table = tmp_path / "race.db", _table(tmp_path / "t.csv")
    fifo = tmp_path / "slow.csv"
    os.mkfifo(fifo)
    a = _proc(*_suggest(study, fifo, "-n", "2"))
    time.sleep(1.0)  # A is waiting for its table
    code, _, err = _cli(*_suggest(study, table, "-n", "2", "--out", str(tmp_path / "b.csv")))
    assert code == 0, err
    ids = _suggested_ids(tmp_path / "b.csv")
    _observe(study, tmp_path / "res.csv", ids, [1.0, 2.0])
    with fifo.open("w") as fh:  # A reads a different table and fails
        fh.write(_table(tmp_path / "other.csv", seed=7).read_text())
    _, a_err = a.communicate(timeout=300)
    assert a.returncode == 2, a_err
    assert "Traceback" not in a_err
    assert "different candidate space" in a_err or "other candidates" in a_err
    assert study.exists()
    assert [(c, s, v) for c, s, v in _trials(study)] == [
        (ids[0], "COMPLETE", 1.0),
        (ids[1], "COMPLETE", 2.0),
    ]


_AT_ONCE = """
import os, sys, time
import llmbo.cli, llmbo.optimizer  # the slow imports happen before the start signal
go, argv = sys.argv[1], sys.argv[2:]
while not os.path.exists(go):
    time.sleep(0.0005)
sys.exit(llmbo.cli.main(argv))
"""


@pytest.mark.slow
def test_concurrent_first_suggests_on_a_new_file_lose_nothing(tmp_path: Path) -> None:
    """Three real processes start the same new study at the same moment (they wait for one
    signal file after their imports), four times over: every one succeeds, and every
    suggestion any of them reported is in the study."""
    table = _table(tmp_path / "t.csv", n=200)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for attempt in range(4):
        study, go = tmp_path / f"race{attempt}.db", tmp_path / f"go{attempt}"
        outs = [tmp_path / f"out{attempt}-{k}.csv" for k in range(3)]
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _AT_ONCE,
                    str(go),
                    *_suggest(study, table, "-n", "20", "--out", str(o)),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for o in outs
        ]
        time.sleep(8.0)  # imports done
        go.touch()
        results = [p.communicate(timeout=600) for p in procs]
        for p, (_, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err
            assert "Traceback" not in err
        reported = [cid for o in outs for cid in _suggested_ids(o)]
        stored = [c for c, s, _ in _trials(study) if s == "PENDING"]
        assert len(reported) == 60 and sorted(reported) == sorted(stored)


# ---------------------------------------------------------------- 2. outputs never inputs
def test_outputs_never_replace_the_study_the_table_or_a_device(tmp_path: Path) -> None:
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv")
    code, _, err = _cli(*_suggest(study, table, "-n", "3", "--out", str(tmp_path / "n.csv")))
    assert code == 0, err
    _observe(study, tmp_path / "r.csv", _suggested_ids(tmp_path / "n.csv"), [1.0, 2.0, 3.0])
    before = study.read_bytes(), table.read_bytes()

    for out in (study, Path(str(study) + "-wal")):
        code, _, err = _cli("suggest", "--study", str(study), "-n", "1", "--out", str(out))
        assert code == 2 and "--study file" in err, err
    code, _, err = _cli(*_suggest(study, table, "-n", "1", "--out", str(table)))
    assert code == 2 and "--table file" in err, err
    code, _, err = _cli(
        "run", "--table", str(table), "--template", TEMPLATE, "--target", "y",
        "--surrogate", "random", "--n-initial", "2", "--iterations", "1", "--no-progress",
        "--output", str(table),
    )  # fmt: skip
    assert code == 2 and "--table file" in err, err
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = _cli("suggest", "--study", str(study), "-n", "1", "--out", str(fifo))
    assert code == 2 and "not a regular file" in err, err
    assert fifo.is_fifo()
    code, _, err = _cli("suggest", "--study", "/dev/null", "-n", "1")
    assert code == 2 and "not a regular file" in err, err
    assert (study.read_bytes(), table.read_bytes()) == before
    assert [s for _, s, _ in _trials(study)] == ["COMPLETE"] * 3


# ---------------------------------------------------------- 3. no code execution from data
def _edit_config(study: Path, edit) -> None:
    with contextlib.closing(sqlite3.connect(study)) as con:
        (text,) = con.execute("SELECT config_json FROM llmbo_studies").fetchone()
        config = json.loads(text)
        edit(config)
        con.execute("UPDATE llmbo_studies SET config_json = ?", (json.dumps(config),))
        con.commit()


def test_a_study_file_cannot_switch_on_trust_remote_code(tmp_path: Path) -> None:
    """Editing ``trust_remote_code: true`` into a study does not make the next call run the
    model folder's code: the call is refused until the user passes --trust-remote-code."""
    from conftest import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    marker = tmp_path / "code-ran"
    (model / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(config))
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv", n=12)
    code, _, err = _cli(
        *_suggest(study, table, "-n", "1"), "--surrogate", "static", "--model", str(model)
    )
    assert code == 0, err
    assert not marker.exists()

    def switch_on(cfg: dict) -> None:
        cfg["proposer"]["surrogate"]["encoder"]["trust_remote_code"] = True

    _edit_config(study, switch_on)
    before = _trials(study)
    code, _, err = _cli("suggest", "--study", str(study), "-n", "1", "--no-progress")
    assert code == 2, err
    assert "--trust-remote-code" in err and "never takes that from stored data" in err
    assert not marker.exists()
    assert _trials(study) == before
    # status loads no model: it shows the setting, so the user sees it is on.
    code, out, err = _cli("status", "--study", str(study))
    assert code == 0, err
    assert "trust_remote_code: ON" in out
    assert not marker.exists()

    from llmbo.optimizer import Optimizer

    with pytest.raises(InputError, match="trust_remote_code"):
        Optimizer.load(study, "default", progress=False)
    opt = Optimizer.load(study, "default", trust_remote_code=True, progress=False)
    assert opt.spec is not None and opt.spec.encoder.trust_remote_code


def test_observe_and_status_need_no_model(tmp_path: Path) -> None:
    """Reading or recording works where the study's model is gone; suggesting says so."""
    from conftest import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv", n=12)
    out = tmp_path / "n.csv"
    code, _, err = _cli(
        *_suggest(study, table, "-n", "2", "--out", str(out)), "--surrogate", "static",
        "--model", str(model),
    )  # fmt: skip
    assert code == 0, err
    for f in model.iterdir():
        f.unlink()
    model.rmdir()
    _observe(study, tmp_path / "r.csv", _suggested_ids(out), [1.0, 2.0])
    code, out_text, err = _cli("status", "--study", str(study))
    assert code == 0 and "2 complete" in out_text, err
    code, _, err = _cli("suggest", "--study", str(study), "-n", "1", "--no-progress")
    assert code == 1 and "does not exist" in err, err


# ------------------------------------------------------------- 4. any column name works
def test_columns_named_like_llmbo_columns(tmp_path: Path) -> None:
    n = 12
    extra = {"text": [f"t{i}" for i in range(n)], "candidate_id": [f"c{i}" for i in range(n)]}
    table = _table(tmp_path / "t.csv", n=n, extra={**extra, "value": [float(i) for i in range(n)]})
    study, out = tmp_path / "s.db", tmp_path / "next.csv"
    code, stdout, err = _cli(
        "suggest", "--study", str(study), "--table", str(table), "--template",
        "{name} {text} {value}", "--surrogate", "random", "--no-progress", "-n", "2",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    written = pd.read_csv(out, dtype=str)
    # llmbo's columns step aside; the table's own keep their names and values.
    assert list(written.columns[:2]) == ["candidate_id_", "text_"]
    assert {"text", "candidate_id", "value"} <= set(written.columns)
    assert "--id-col candidate_id_ --value-col value_" in stdout
    results = written[["candidate_id_"]].assign(value_=[5.0, 6.0])
    results.to_csv(tmp_path / "r.csv", index=False)
    code, _, err = _cli(
        "observe", "--study", str(study), "--results", str(tmp_path / "r.csv"),
        "--id-col", "candidate_id_", "--value-col", "value_",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = _cli("suggest", "--study", str(study), "-n", "1", "--no-progress")
    assert code == 0, err
    assert [s for _, s, _ in _trials(study)].count("PENDING") == 1  # no leaked trial
    code, stdout, err = _cli("status", "--study", str(study))
    assert code == 0, err
    assert "6" in stdout.split("best")[1]
    code, stdout, err = _cli(
        "run", "--table", str(table), "--template", "{name} {text}", "--target", "value",
        "--surrogate", "random", "--n-initial", "2", "--iterations", "2", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "best found" in stdout


# ----------------------------------------------------------- 5. broken or foreign studies
def _damaged_files(tmp_path: Path) -> dict[str, Path]:
    study, table = tmp_path / "good.db", _table(tmp_path / "t.csv")
    code, _, err = _cli(*_suggest(study, table, "-n", "3", "--out", str(tmp_path / "n.csv")))
    assert code == 0, err
    with contextlib.closing(sqlite3.connect(study)) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = study.read_bytes()
    files = {"csv": table, "random": tmp_path / "random.db", "truncated": tmp_path / "cut.db"}
    files["random"].write_bytes(os.urandom(5000))
    files["truncated"].write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[1024 : len(data) - 512] = os.urandom(len(data) - 1536)
    files["corrupt"] = tmp_path / "corrupt.db"
    files["corrupt"].write_bytes(bytes(corrupt))
    foreign = tmp_path / "other-app.db"
    with contextlib.closing(sqlite3.connect(foreign)) as con:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        con.execute("INSERT INTO notes (body) VALUES ('keep me')")
        con.commit()
    files["foreign"] = foreign
    return files


@pytest.mark.parametrize("command", ["suggest", "observe", "status", "run"])
def test_broken_or_foreign_study_files_give_a_clear_error(tmp_path: Path, command: str) -> None:
    table = _table(tmp_path / "table.csv")
    results = tmp_path / "res.csv"
    results.write_text("candidate_id,value\nx,1\n")
    for kind, path in _damaged_files(tmp_path).items():
        before = path.read_bytes()
        run = [
            "run", "--table", str(table), "--template", TEMPLATE, "--target", "y",
            "--surrogate", "random", "--n-initial", "2", "--iterations", "1",
            "--no-progress", "--study", str(path),
        ]  # fmt: skip
        argv = {
            "suggest": [*_suggest(path, table, "-n", "1")],
            "observe": ["observe", "--study", str(path), "--results", str(results)],
            "status": ["status", "--study", str(path)],
            "run": run,
        }[command]
        code, _, err = _cli(*argv)
        assert code == 2, (kind, err)
        assert "not an llmbo study" in err or "damaged" in err, (kind, err)
        assert path.read_bytes() == before, kind
        assert not Path(str(path) + "-wal").exists() or kind not in ("csv", "foreign")


def test_status_never_writes(tmp_path: Path) -> None:
    """`status` on a study on read-only media works and changes no byte."""
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv")
    code, _, err = _cli(*_suggest(study, table, "-n", "2"))
    assert code == 0, err
    from llmbo.space import CandidateSpace
    from llmbo.storage import TrialState, get_storage

    # A worker that died: its lease has passed and nobody has expired it yet.
    store = get_storage(study)
    study_id = store.load_study("default").study_id
    taken = {t.candidate_id for t in store.trials(study_id)}
    free = [c for c in CandidateSpace.from_file(table, TEMPLATE).ids if c not in taken]
    store.reserve(study_id, free[:1], state=TrialState.RUNNING, worker="w", lease_seconds=0.001)
    time.sleep(0.05)
    with contextlib.closing(sqlite3.connect(study)) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for side in ("-wal", "-shm"):
        Path(str(study) + side).unlink(missing_ok=True)
    before = study.read_bytes(), os.stat(study).st_mtime_ns
    study.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        code, out, err = _cli("status", "--study", str(study))
    finally:
        tmp_path.chmod(0o755)
        study.chmod(0o644)
    assert code == 0, err
    assert "2 pending, 1 running" in out  # status shows the stale trial; it does not expire it
    assert (study.read_bytes(), os.stat(study).st_mtime_ns) == before
    assert not Path(str(study) + "-wal").exists()


# -------------------------------------------------------------- 6. one rule on reopening
def test_reopening_refuses_contradicting_options_everywhere(tmp_path: Path) -> None:
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv")
    code, _, err = _cli(*_suggest(study, table, "-n", "1"), "--surrogate", "random")
    assert code == 0, err
    run = [
        "run", "--table", str(table), "--template", TEMPLATE, "--target", "y",
        "--n-initial", "2", "--iterations", "1", "--no-progress", "--study", str(study),
    ]  # fmt: skip
    for extra in (
        ["--surrogate", "onehot"],
        ["--acquisition", "ucb"],
        ["--pooling", "segments"],
        ["--top-module", "output"],
        ["--segment-separator", " | "],
        ["--seed", "3"],
    ):
        for argv in (run + extra, ["suggest", "--study", str(study), "-n", "1", *extra]):
            code, _, err = _cli(*argv)
            assert code == 2, (argv, err)
            assert "was created with" in err, err
    code, _, err = _cli("suggest", "--study", str(study), "-n", "1", "--id-column", "name")
    assert code == 2 and "--id-column" in err, err
    # The study's own settings, given again, are fine; `run` continues it.
    code, out, err = _cli(*run, "--surrogate", "random", "--acquisition", "logei")
    assert code == 0, err
    code, out, err = _cli("status", "--study", str(study))
    assert "surrogate random" in out and "acquisition logei" in out


def test_every_option_has_a_reopening_rule() -> None:
    """A new option must say whether it is a study setting (checked on reopening), part of
    the candidates, creation-only or about this call only."""
    from llmbo.cli import build_parser
    from llmbo.cli.common import (
        CREATION_ONLY_OPTIONS,
        REOPEN_SETTINGS,
        RUNTIME_OPTIONS,
        SPACE_OPTIONS,
    )

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    known = set(REOPEN_SETTINGS) | SPACE_OPTIONS | CREATION_ONLY_OPTIONS | RUNTIME_OPTIONS
    for command in ("suggest", "run", "observe", "status"):
        dests = {a.dest for a in sub.choices[command]._actions if a.dest != "help"}
        assert dests <= known, (command, sorted(dests - known))


# ------------------------------------------------------------------ 7. segment separator
def test_segment_separator_is_taken_as_typed(tmp_path: Path) -> None:
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv")
    code, _, err = _cli(*_suggest(study, table, "-n", "1"), "--segment-separator", "\\x")
    assert code == 2 and "not an escape" in err, err
    assert not study.exists()
    code, _, err = _cli(
        *_suggest(study, table, "-n", "1"), "--surrogate", "static", "--pooling", "segments",
        "--segment-separator", " → ",
    )  # fmt: skip
    assert code == 0, err
    with contextlib.closing(sqlite3.connect(study)) as con:
        (text,) = con.execute("SELECT config_json FROM llmbo_studies").fetchone()
    assert json.loads(text)["proposer"]["surrogate"]["encoder"]["segment_separator"] == " → "

    from llmbo.cli.common import decode_separator

    assert decode_separator(" → ") == " → "
    assert decode_separator("\\n") == "\n"
    assert decode_separator("a\\\\b") == "a\\b"


# ------------------------------------------------------------------------ 8. atomic observe
def _big_results(tmp_path: Path, n: int) -> tuple[Path, Path]:
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv", n=n)
    code, _, err = _cli(*_suggest(study, table, "-n", "1"))
    assert code == 0, err
    from llmbo.space import CandidateSpace

    ids = CandidateSpace.from_file(table, TEMPLATE).ids
    results = tmp_path / "big.csv"
    pd.DataFrame({"candidate_id": ids, "value": range(n)}).to_csv(results, index=False)
    return study, results


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_observe_stores_a_file_whole_or_not_at_all(tmp_path: Path, sig: int) -> None:
    n = 4000
    study, results = _big_results(tmp_path, n)
    proc = _proc("observe", "--study", str(study), "--results", str(results))
    # Kill it while it works: once the results file was opened (psutil-free: poll /proc).
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        fds = Path(f"/proc/{proc.pid}/fd")
        try:
            if any(os.readlink(fd).endswith("big.csv") for fd in fds.iterdir()):
                break
        except OSError:
            pass
        time.sleep(0.005)
    time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    completed = sum(s == "COMPLETE" for _, s, _ in _trials(study))
    assert completed in (0, n), completed
    if sig == signal.SIGINT and proc.returncode == 130:
        assert "stored whole or not at all" in err


def test_observe_of_thousands_of_rows_is_one_quick_transaction(tmp_path: Path) -> None:
    study, results = _big_results(tmp_path, 2000)
    started = time.perf_counter()
    code, out, err = _cli("observe", "--study", str(study), "--results", str(results))
    assert code == 0, err
    assert "recorded 2000 value(s)" in out
    assert sum(s == "COMPLETE" for _, s, _ in _trials(study)) == 2000
    # One transaction, not one per row (which took 35 s): generous bound, not a benchmark.
    assert time.perf_counter() - started < 30


# ------------------------------------------------------------------------- 9. small ones
def test_small_input_problems_get_clear_messages(tmp_path: Path) -> None:
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv")
    cases = [
        (["--study-name", ""], "empty"),
        (["--seed", str(2**70)], "between 0 and"),
        (["--seed", "1.7"], "between 0 and"),
        (["--seed", "abc"], "between 0 and"),
    ]
    for extra, message in cases:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as info:
            main([*_suggest(study, table, "-n", "1"), *extra])
        assert info.value.code == 2 and message in err.getvalue(), err.getvalue()
    assert not study.exists()
    for url in ("sqlite://", "sqlite:///:memory:"):
        code, _, err = _cli(*_suggest(url, table, "-n", "1"))
        assert code == 2 and "in-memory" in err, err
    for url in ("foo://x", "postgresql+psycopg://u:secret@host:notaport/db"):
        code, out, err = _cli(*_suggest(url, table, "-n", "1"))
        assert code == 2 and "Traceback" not in err, err
        assert "secret" not in out + err


def test_results_values_must_be_plain_numbers(tmp_path: Path) -> None:
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv")
    out = tmp_path / "n.csv"
    code, _, err = _cli(*_suggest(study, table, "-n", "3", "--out", str(out)))
    assert code == 0, err
    ids = _suggested_ids(out)
    for bad in ("1_000", "１２", "0x10", "1,5", "True"):
        results = tmp_path / "r.csv"
        pd.DataFrame({"candidate_id": ids[:1], "value": [bad]}).to_csv(results, index=False)
        code, _, err = _cli("observe", "--study", str(study), "--results", str(results))
        assert code == 2 and "not numbers" in err, (bad, err)
    assert all(s == "PENDING" for _, s, _ in _trials(study))


def test_terminal_escapes_in_table_values_are_not_printed_raw(tmp_path: Path) -> None:
    n = 8
    names = [f"\x1b[31mred{i}\x1b]0;title\x07" for i in range(n)]
    table = _table(tmp_path / "t.csv", n=n, extra={"name": names})
    code, out, err = _cli(*_suggest(tmp_path / "s.db", table, "-n", "2"))
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mred" in out
    code, out, err = _cli("status", "--study", str(tmp_path / "s.db"))
    assert "\x1b" not in out


def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    study, table = tmp_path / "s.db", _table(tmp_path / "t.csv")
    out = tmp_path / "n.csv"
    code, _, err = _cli(*_suggest(study, table, "-n", "60", "--out", str(out)))
    assert code == 0, err
    _observe(study, tmp_path / "r.csv", _suggested_ids(out), [float(i) for i in range(60)])
    status = _proc("status", "--study", str(study), "--top", "60")
    assert status.stdout is not None
    status.stdout.close()  # the reader goes away at once, like `| head -0`
    _, err = status.communicate(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_template_reads_columns_only(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv", n=6, extra={"temp.C": [20 + i for i in range(6)]})
    for template in ("{name.__class__}", "{name[0]}", "{kind.__class__.__mro__}"):
        code, _, err = _cli(
            "suggest", "--study", str(tmp_path / "s.db"), "--table", str(table),
            "--template", template, "--surrogate", "random", "-n", "1",
        )  # fmt: skip
        assert code == 2 and "not columns of the table" in err, (template, err)
    code, out, err = _cli(
        "suggest", "--study", str(tmp_path / "s.db"), "--table", str(table),
        "--template", "{name} at {temp.C} C", "--surrogate", "random", "-n", "1",
    )  # fmt: skip
    assert code == 0, err
    assert " C" in out and "class" not in out


# ------------------------------------------------------------------- found by the review
def test_outputs_never_replace_side_files_or_the_stored_table(tmp_path: Path) -> None:
    """With a sqlite:/// URL as --study its WAL file is protected too; on reopening, the
    table the study was made from is protected although --table is not given."""
    table = _table(tmp_path / "t.csv")
    url = f"sqlite:///{tmp_path / 's.db'}"
    code, _, err = _cli(*_suggest(url, table, "-n", "2"))
    assert code == 0, err
    before = table.read_bytes()
    for out in (tmp_path / "s.db-wal", tmp_path / "s.db"):
        code, _, err = _cli("suggest", "--study", url, "-n", "1", "--out", str(out))
        assert code == 2 and "--study file" in err, err
    code, _, err = _cli("suggest", "--study", url, "-n", "1", "--out", str(table))
    assert code == 2 and "--table file" in err, err
    assert table.read_bytes() == before
    assert sum(s == "PENDING" for _, s, _ in _trials(tmp_path / "s.db")) == 2


def test_observe_never_writes_to_a_database_that_is_not_a_study(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    with contextlib.closing(sqlite3.connect(empty)) as con:
        con.execute("PRAGMA user_version = 7")
        con.commit()
    zero = tmp_path / "zero.db"
    zero.touch()
    results = tmp_path / "r.csv"
    results.write_text("candidate_id,value\nx,1\n")
    for path in (empty, zero):
        before = path.read_bytes()
        code, _, err = _cli("observe", "--study", str(path), "--results", str(results))
        assert code == 2 and "not an llmbo study" in err, err
        assert path.read_bytes() == before


def test_a_failing_first_call_through_a_url_leaves_no_file(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv", n=5)
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, _, err = _cli(*_suggest(url, table, "-n", "99"))
    assert code == 2 and "only 5" in err, err
    assert not (tmp_path / "new.db").exists()
