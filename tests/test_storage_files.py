"""Study files that are not what they should be: read-only opens, other applications'
files, damaged files, malformed URLs, and a writer killed in the middle of a batch.

SQLite only: these tests are about files on disk.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmbo.errors import InputError, StudyError, StudyFileError
from llmbo.storage import SQLStorage, TrialState, get_storage

SQLITE_MAGIC = b"SQLite format 3\x00"


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def _side_files(path: Path) -> list[str]:
    return [p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-")]


def _make_study(path: Path, n_trials: int = 30, id_width: int = 0) -> int:
    """A real llmbo study file with trials in every state; returns its study id."""
    store = SQLStorage(f"sqlite:///{path}")
    sid = store.create_study("s", space={"n": n_trials}, config={}, seed=0, direction="maximize")
    sid_ = sid.study_id
    ids = [f"c{i:05d}" + "x" * id_width for i in range(n_trials)]
    for i in range(0, n_trials, 500):
        store.reserve(sid_, ids[i : i + 500])
    for t in store.trials(sid_)[: min(n_trials // 2, 15)]:
        store.complete(t.trial_id, float(t.number))
    trials = store.trials(sid_, [TrialState.PENDING])
    store.fail(trials[0].trial_id, "broke")
    store.set_attr(sid_, "note", {"k": 1})
    return sid_


def _other_app_db(path: Path) -> None:
    """A SQLite file written by another application (one table, rollback journal)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO customers (name) VALUES (?)", [("ann",), ("bob",)])
        conn.commit()
    finally:
        conn.close()


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def _all_reads(path: Path) -> None:
    """Open and read everything, as `llmbo report` would."""
    store = get_storage(path)
    names = store.study_names()
    study = store.load_study(names[0] if names else "s")
    store.trials(study.study_id)
    store.get_attrs(study.study_id)


# ---------------------------------------------------------------------------------------
# Read-only opening
# ---------------------------------------------------------------------------------------


def test_readonly_reads_and_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "study.db"
    sid = _make_study(path)
    before = _snapshot(path)
    store = get_storage(path, readonly=True)
    assert isinstance(store, SQLStorage) and store.readonly
    assert store.study_names() == ["s"]
    study = store.load_study("s")
    trials = store.trials(sid)
    assert len(trials) == 30
    assert len(store.trials(sid, [TrialState.COMPLETE])) == 15
    assert store.get_trial(trials[0].trial_id) == trials[0]
    assert store.get_attrs(sid) == {"note": {"k": 1}}
    assert len(store.taken_candidates(sid)) == 29
    assert study.space == {"n": 30}

    t = trials[-1].trial_id
    writes: list[Callable[[], Any]] = [
        lambda: store.create_study("x", space={}, config={}, seed=0, direction="maximize"),
        lambda: store.reserve(sid, ["new"]),
        lambda: store.reserve(sid, []),
        lambda: store.complete(t, 1.0),
        lambda: store.record(sid, "new", 1.0),
        lambda: store.record_many(sid, [("new", 1.0)]),
        lambda: store.fail(t, "x"),
        lambda: store.start(t, "w", 60),
        lambda: store.heartbeat([t], 60),
        lambda: store.expire_stale(sid),
        lambda: store.release_pending(sid),
        lambda: store.set_attr(sid, "k", 1),
        lambda: store.delete_study("s"),
        lambda: store.discard_study(sid),
    ]
    for write in writes:
        with pytest.raises(StudyError, match="opened read-only"):
            write()
    # Nothing changed on disk, and the connection really cannot write.
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA query_only").scalar() == 1
    assert _snapshot(path) == before
    assert SQLStorage(f"sqlite:///{path}").trials(sid) == trials


def test_readonly_pickles_as_readonly(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "study.db"
    _make_study(path)
    store = pickle.loads(pickle.dumps(get_storage(path, readonly=True)))
    assert store.readonly and store.study_names() == ["s"]
    with pytest.raises(StudyError, match="opened read-only"):
        store.set_attr(1, "k", 1)
    # A writable storage passed through get_storage(readonly=True) is reopened read-only.
    writable = get_storage(path)
    assert get_storage(writable) is writable
    ro = get_storage(writable, readonly=True)
    assert isinstance(ro, SQLStorage) and ro.readonly and ro.study_names() == ["s"]


def test_readonly_other_application_file_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    _other_app_db(path)
    before = _snapshot(path)
    with pytest.raises(StudyFileError, match=r"is not an llmbo study \(it has no llmbo tables"):
        get_storage(path, readonly=True)
    assert _snapshot(path) == before
    assert _journal_mode(path) == "delete"
    assert _side_files(path) == []


def test_readonly_missing_or_empty_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(StudyFileError, match="does not exist"):
        get_storage(missing, readonly=True)
    with pytest.raises(StudyFileError, match="does not exist"):
        SQLStorage(f"sqlite:///{missing}", readonly=True)
    assert not missing.exists() and _side_files(missing) == []
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StudyFileError, match="no llmbo tables"):
        get_storage(empty, readonly=True)
    assert empty.read_bytes() == b"" and _side_files(empty) == []
    with pytest.raises(StudyFileError, match="no llmbo tables"):
        SQLStorage("sqlite://", readonly=True)


@pytest.fixture
def readonly_folder(tmp_path: Path) -> Iterator[Path]:
    """A study file in a folder made read-only (0o555, file 0o444); restored afterwards."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "study.db"
    _make_study(path)
    assert _side_files(path) == []  # the writer checkpointed its WAL on close
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield path
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)


def test_readonly_on_readonly_folder(readonly_folder: Path) -> None:
    """A study on read-only media: read with immutable=1, no byte and no side file written."""
    path = readonly_folder
    before = _snapshot(path)
    if os.geteuid() != 0:  # root ignores the permission bits
        with pytest.raises(StudyFileError, match=r"readonly=True|read-only"):
            get_storage(path).reserve(1, ["new"])
    store = get_storage(path, readonly=True)
    sid = store.load_study("s").study_id
    assert len(store.trials(sid)) == 30 and store.get_attrs(sid) == {"note": {"k": 1}}
    assert _snapshot(path) == before
    assert _side_files(path) == []


def test_readonly_falls_back_to_immutable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where WAL side files cannot be created, mode=ro fails; immutable=1 then reads."""
    path = tmp_path / "study.db"
    _make_study(path)
    before = _snapshot(path)
    real_connect = sqlite3.connect
    seen: list[str] = []

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        seen.append(str(database))
        if kwargs.get("uri") and "mode=ro" in str(database) and "immutable=1" not in database:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    store = get_storage(path, readonly=True)
    sid = store.load_study("s").study_id
    assert len(store.trials(sid)) == 30
    assert "immutable=1" not in seen[0] and "immutable=1" in seen[1]
    monkeypatch.undo()
    assert _snapshot(path) == before and _side_files(path) == []


def test_readonly_sees_a_live_writer(tmp_path: Path) -> None:
    """In a writable folder a read-only reader uses mode=ro, so it sees committed writes."""
    path = tmp_path / "study.db"
    sid = _make_study(path)
    writer = SQLStorage(f"sqlite:///{path}")
    reader = get_storage(path, readonly=True)
    with writer.engine.connect():  # keeps the WAL open, as a running worker does
        writer.record(sid, "late", 9.0)
        assert "late" in {t.candidate_id for t in reader.trials(sid)}
        writer.record(sid, "later", 10.0)
        assert "later" in reader.taken_candidates(sid)


# ---------------------------------------------------------------------------------------
# Foreign files
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("readonly", [False, True])
def test_non_sqlite_files_refused(tmp_path: Path, readonly: bool) -> None:
    csv = tmp_path / "candidates.csv"
    csv.write_text("id,smiles\na,CCO\nb,CCN\n")
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(5000))
    for path in (csv, noise):
        before = _snapshot(path)
        with pytest.raises(StudyFileError, match="not a SQLite database") as info:
            get_storage(path, readonly=readonly)
        assert str(path) in str(info.value)
        assert "new file name" in str(info.value)
        with pytest.raises(StudyFileError, match="not a SQLite database"):
            SQLStorage(f"sqlite:///{path}", readonly=readonly)
        assert _snapshot(path) == before and _side_files(path) == []


def test_other_application_sqlite_refused_and_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    _other_app_db(path)
    before = _snapshot(path)
    with pytest.raises(StudyFileError, match="another application's tables") as info:
        get_storage(path)
    assert str(path) in str(info.value) and "customers" in str(info.value)
    with pytest.raises(StudyFileError, match="another application's tables"):
        SQLStorage(f"sqlite:///{path}")
    assert _snapshot(path) == before
    assert _journal_mode(path) == "delete"
    assert _side_files(path) == []
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["customers"]


def test_empty_and_missing_files_become_new_studies(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    assert get_storage(empty).study_names() == []
    assert empty.read_bytes()[:16] == SQLITE_MAGIC
    missing = tmp_path / "new.db"
    assert get_storage(missing).study_names() == []
    assert missing.exists()
    # A SQLite database without any table (e.g. just created by sqlite3) is fine too.
    bare = tmp_path / "bare.db"
    sqlite3.connect(bare).execute("PRAGMA user_version = 1").connection.close()
    assert get_storage(bare).study_names() == []


def test_folder_given_as_study_file(tmp_path: Path) -> None:
    with pytest.raises(StudyFileError, match="folder"):
        get_storage(tmp_path)
    with pytest.raises(StudyFileError, match="folder"):
        get_storage(tmp_path, readonly=True)


# ---------------------------------------------------------------------------------------
# Damaged files
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.db"
    _make_study(path, n_trials=3000, id_width=60)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert path.stat().st_size > 200_000
    return path


def _damaged_copies(big: Path, folder: Path) -> dict[str, Path]:
    data = big.read_bytes()
    out = {
        "half": data[: len(data) // 2],
        "100-bytes": data[:100],
    }
    mid = len(data) // 2
    garbage = bytes((i * 131 + 17) % 256 for i in range(8192))
    out["garbage-page"] = data[:mid] + garbage + data[mid + len(garbage) :]
    paths = {}
    for name, content in out.items():
        paths[name] = folder / f"{name}.db"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("kind", ["half", "100-bytes", "garbage-page"])
def test_damaged_files_are_study_file_errors(
    big_study: Path, tmp_path: Path, kind: str, readonly: bool
) -> None:
    path = _damaged_copies(big_study, tmp_path)[kind]
    with pytest.raises(StudyFileError, match="is damaged") as info:
        store = get_storage(path, readonly=readonly)
        names = store.study_names()
        study = store.load_study(names[0] if names else "s")
        store.trials(study.study_id)
    message = str(info.value)
    assert str(path) in message
    assert "SQLite: " in message and "restore it from a backup" in message
    assert "malformed" in message or "not a database" in message


def test_damaged_file_error_at_every_entry_point(big_study: Path, tmp_path: Path) -> None:
    """Each public read either works or gives StudyFileError, never a raw SQLAlchemy error."""
    path = _damaged_copies(big_study, tmp_path)["garbage-page"]
    store = get_storage(path, readonly=True)
    sid = store.load_study("s").study_id
    for call in (
        lambda: store.trials(sid),
        lambda: store.taken_candidates(sid),
        lambda: store.trials(sid, [TrialState.COMPLETE]),
    ):
        try:
            call()
        except StudyFileError as exc:
            assert "is damaged" in str(exc)
        except Exception as exc:  # pragma: no cover - the failure being tested for
            pytest.fail(f"raw error from a damaged file: {exc!r}")


# ---------------------------------------------------------------------------------------
# Malformed URLs
# ---------------------------------------------------------------------------------------


def _shown(exc: BaseException) -> str:
    """What a traceback of ``exc`` shows of the exceptions: every message in its chain."""
    text = "".join(traceback.format_exception_only(exc))
    if exc.__cause__ is not None:
        text += _shown(exc.__cause__)
    elif exc.__context__ is not None and not exc.__suppress_context__:
        text += _shown(exc.__context__)
    return text


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("foo://u:secret@x/db", "unknown database kind 'foo'"),
        ("postgresql+psycopg://u:secret@host:notaport/db", "not a valid"),
        ("mysql+nosuchdriver://u:secret@host/db", "unknown database kind"),
        ("postgres ql://u:secret@host/db", "not a valid"),
        ("::nonsense::", "not a valid"),
    ],
)
def test_malformed_urls(url: str, match: str) -> None:
    with pytest.raises(StudyFileError, match=match) as info:
        SQLStorage(url)
    assert isinstance(info.value, InputError)
    assert "secret" not in _shown(info.value)
    if "@" in url:
        assert "u:***@" in str(info.value)


def test_missing_driver_is_study_file_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pg8000" or name.startswith("pg8000."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(StudyFileError, match="driver") as info:
        SQLStorage("postgresql+pg8000://u:secret@host/db")
    assert "secret" not in _shown(info.value)
    assert "u:***@host" in str(info.value)


def test_sqlite_in_missing_folder(tmp_path: Path) -> None:
    for readonly in (False, True):
        with pytest.raises(StudyFileError, match="does not exist"):
            SQLStorage(f"sqlite:///{tmp_path / 'no-dir' / 'x.db'}", readonly=readonly)
    assert not (tmp_path / "no-dir").exists()


# ---------------------------------------------------------------------------------------
# A writer killed in the middle of record_many
# ---------------------------------------------------------------------------------------

_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from llmbo.storage import get_storage

    db, marker, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    store = get_storage(db)
    sid = store.load_study("s").study_id
    items = [(f"k{i:06d}", float(i)) for i in range(n)]
    marker.write_text("started")
    store.record_many(sid, items)
    marker.write_text("done")
    """
)


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_killed_record_many_is_all_or_nothing(tmp_path: Path, delay: float) -> None:
    n = 20_000
    db = tmp_path / "study.db"
    store = get_storage(db)
    sid = store.create_study("s", space={}, config={}, seed=0, direction="maximize").study_id
    marker = tmp_path / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(db), str(marker), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"writer exited early ({proc.returncode}): {out}")
            assert time.monotonic() < deadline, "writer did not start"
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        if proc.stdout:
            proc.stdout.close()
    count = len(get_storage(db).trials(sid, [TrialState.COMPLETE]))
    assert count in (0, n)
    assert len(get_storage(db).trials(sid)) == count
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    # The study is usable afterwards.
    out = get_storage(db).record_many(sid, [("k000000", 0.0), ("extra", 1.0)])
    assert [t.state for t in out] == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_text_overwritten_with_bytes_that_are_not_utf8_is_a_damaged_study(tmp_path) -> None:
    """Found by the CLI fuzzer: a candidate id whose bytes were overwritten in place."""
    import sqlite3

    import pytest

    from llmbo.errors import StudyFileError
    from llmbo.storage import get_storage

    path = tmp_path / "s.db"
    store = get_storage(str(path))
    study = store.create_study("s", space={}, config={}, seed=0, direction="maximize")
    store.record(study.study_id, "c1", 1.0)
    store.engine.dispose()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE llmbo_trials SET candidate_id = CAST(x'63c9bbff31' AS TEXT)")
    with pytest.raises(StudyFileError, match=r"damaged|could not decode"):
        get_storage(str(path)).trials(study.study_id)
