"""Fuzzed option values and study files through ``llmbo suggest/observe/status/run``.

``test_fuzz_csv.py`` fuzzes the *contents* of table and results files; this harness fuzzes
everything else a user types: option values (empty, whitespace, huge, negative, fractional,
NaN, unicode digits, bidi marks, emoji, control characters and ANSI escapes, very long
strings, braces, backslashes, paths to a folder, /dev/null, a FIFO, the table or the study
itself, database URLs with a password...) and the ``--study`` file (new, a good study, a
truncated or overwritten copy of it, a CSV, random bytes, an empty file, another
application's SQLite database, a folder...).

Every call runs ``llmbo.cli.main`` in-process with stdout/stderr (and warnings logged)
captured, and must:

(a) exit 0 or 2 (argparse's ``SystemExit(2)`` is 2); 1 only for a model that cannot be
    loaded; a call that has not returned after ``HANG_SECONDS`` is a hang;
(b) print no traceback; exit 2 comes with an ``llmbo <cmd>: error:`` (or argparse
    ``usage:``/``error:``) line;
(c) leave the good study's COMPLETE trials exactly as they were, unless the call
    succeeded and records measurements (``observe``, or ``run`` continuing a study): then
    every earlier COMPLETE trial is still there with its value;
(d) leave files that are not llmbo studies (the table, the results CSV, a CSV, another
    application's SQLite database, random bytes) byte-identical, and a folder, FIFO or
    /dev/null what they were; only a CSV other than the table that the call was told to
    write (``--out``/``--output``) may be replaced;
(e) never print a database password;
(f) never print a raw ESC character (input escapes must be shown escaped).

No transformer is ever loaded: every call that could build a surrogate names one of
random, onehot, components or an invalid name (never the empty string, which means lora).

The deterministic sweeps give each option of each command every nasty value of its kind
(int, float, choice, text, path, study; options that suggest and run parse with the same
code are swept once) and report every broken case at once; the hypothesis tests mix valid
options with up to two nasty values from the whole set, and draw damaged study files.
A FIFO has a writer that feeds it the table whenever the call opens it for reading (like a
shell's ``<(cat table.csv)``); one test gives an SQLite URL to a FIFO nobody writes to.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import sqlite3
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from llmbo.cli import main

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no example database in the working tree
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the report shows the argv
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: A call that has not returned by then is a hang (normal calls take under 3 s here).
HANG_SECONDS = 20.0
TEMPLATE = "{name} {kind}"
SECRET = "secret"
PG_URL = "postgresql+psycopg://u:secret@host:notaport/db"

# ------------------------------------------------------------------------- nasty values
#: Placeholders for paths, replaced by the files of each case's own folder.
PATH_TOKENS = [
    "<DIR>", "<DEVNULL>", "<FIFO>", "<TABLE>", "<GOOD>", "<RESULTS>", "<FOREIGN>", "<CSV>",
    "<MISSING>/x.csv",
]  # fmt: skip
URLS = [
    "sqlite://",
    "sqlite:///:memory:",
    "foo://x",
    PG_URL,
    "postgresql+psycopg://u:secret@127.0.0.1:1/db",
    "postgresql://u:secret@[::1/db",
    "mysql://u:secret@host/db?x=\x1b[31m",
    "sqlite:///<GOOD>",
    "sqlite:///<FOREIGN>",
    "sqlite:///<TABLE>",
    "sqlite:///<DIR>",
    "sqlite:///<MISSING>/x.db",
    "sqlite:////dev/null",
    "sqlite:///<FIFO>",
    "file://<GOOD>",
]
NASTY_TEXT = [
    "", " ", " \t ", "\n", "\r\n",
    "0", "-0", "-1", "-5", "+3", " 2 ", "007",
    str(2**70), str(-(2**70)), str(2**63), str(2**63 - 1), "9" * 400,
    "1.7", "1e3", "0x10", "1_000", "1,5", "½",
    "nan", "NaN", "inf", "-inf", "1e-320", "1e308", "1e999",
    "\uff11\uff12", "\u0663", "\u200f1", "1\u200e", "\u202eevil", "\u2066x\u2069",
    "🧪", "e\u0301",
    "\x07bell", "\x1b[31mred\x1b[0m", "\x1b]0;title\x07", "a\rb", "\x7f", "\x1b",
    "x" * 5000, "é" * 300, "名前",
    "{", "}", "{}", "{0}", "{name}", "{name!r}", "{name:>300}", "{name.__class__}", "{{}}",
    "\\x1b", "\\", "a\\b", "\\n", "\\u0041", "%s%n", "$HOME", "~",
    "-n", "--", "--help", "../../../../etc/passwd",
]  # fmt: skip
NASTY = NASTY_TEXT + PATH_TOKENS + URLS

#: The sweeps give each option the nasty values of its kind (hypothesis draws from NASTY).
#: "--" is there for argparse's ``--opt=--``, which hands the option an empty list.
BY_KIND = {
    "int": [
        "", " ", "-1", "0", "+3", " 2 ", str(2**70), str(2**63), "9" * 400, "1.7", "1e3",
        "nan", "inf", "\uff11\uff12", "\u0663", "\u200f1", "\x1b[31m1", "--", PG_URL,
    ],
    "float": [
        "", "0", "-1", "nan", "inf", "-inf", "1e999", "1e-320", "1e308", "1_000", "½",
        "\uff11\uff12", "\x1b[31m", "--", PG_URL,
    ],
    "choice": ["", "LOGEI", "Mean", "\x1b[31m", "--", PG_URL],
    "text": [
        "", " ", "\n", "0", str(2**70), "nan", "\u202eevil", "🧪", "e\u0301", "\x07bell",
        "\x1b[31mred\x1b[0m", "x" * 5000, "{", "}", "{}", "{0}", "{name!r}", "{name:>300}",
        "{name.__class__}", "\\x1b", "\\", "a\\b", "--", PG_URL, "名前", "\uff11\uff12",
    ],
    "path": [
        "", " ", "~", "x" * 5000, "é" * 300, "\x1b[31mred\x1b[0m", "\u202eevil", "--",
        *PATH_TOKENS, PG_URL, "foo://x", "sqlite:///<GOOD>",
    ],
    "study": [
        "", " ", "~", "x" * 5000, "é" * 300, "\x1b[31mred\x1b[0m", "--", "<NEW>", *PATH_TOKENS,
        *URLS,
    ],
}  # fmt: skip


# ------------------------------------------------------------------------------ a world
@dataclass
class World:
    """One case's folder: copies of the good study, the table and the other files."""

    root: Path
    table: Path
    good: Path
    results: Path
    foreign: Path
    csv: Path
    folder: Path
    fifo: Path
    bytes_before: dict[Path, bytes] = field(default_factory=dict)

    def resolve(self, value: str) -> str:
        for token, path in (
            ("<DIR>", self.folder),
            ("<DEVNULL>", Path(os.devnull)),
            ("<FIFO>", self.fifo),
            ("<TABLE>", self.table),
            ("<GOOD>", self.good),
            ("<RESULTS>", self.results),
            ("<FOREIGN>", self.foreign),
            ("<CSV>", self.csv),
            ("<MISSING>", self.root / "missing"),
            ("<NEW>", self.root / "new.db"),
        ):
            value = value.replace(token, str(path))
        return value


@dataclass(frozen=True)
class Pristine:
    """Made once per test: the files every case starts from."""

    folder: Path
    pending_id: str
    measured: dict[str, float]


def _quiet_call(argv: list[str]) -> int:
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return main(argv)
        except SystemExit as exc:
            return int(exc.code or 0)


@pytest.fixture
def pristine(tmp_path: Path) -> Pristine:
    """A table, a good study (``suggest`` 3 + ``observe`` 2), results for the third, a
    CSV, another application's SQLite database: the originals each case copies."""
    folder = tmp_path / "pristine"
    folder.mkdir()
    values = {f"n{i}": float(i) for i in range(12)}
    (folder / "table.csv").write_text(
        "name,kind,y\n" + "".join(f"n{i},k{i % 3},{i}\n" for i in range(12))
    )
    good, nxt = folder / "good.db", folder / "next.csv"
    code = _quiet_call(
        ["suggest", "--study", str(good), "--table", str(folder / "table.csv"),
         "--template", TEMPLATE, "--surrogate", "random", "-n", "3", "--no-progress",
         "--out", str(nxt)]
    )  # fmt: skip
    assert code == 0
    rows = [line.split(",") for line in nxt.read_text().splitlines()[1:]]
    ids = {r[0]: values[r[2]] for r in rows}  # candidate_id, text, name, kind, y
    first = list(ids)[:2]
    (folder / "first.csv").write_text(
        "candidate_id,value\n" + "".join(f"{c},{ids[c]}\n" for c in first)
    )
    code = _quiet_call(["observe", "--study", str(good), "--results", str(folder / "first.csv")])
    assert code == 0
    pending = list(ids)[2]
    # One new value and one already recorded with the same value: a valid observe.
    (folder / "results.csv").write_text(
        f"candidate_id,value\n{pending},{ids[pending]}\n{first[0]},{ids[first[0]]}\n"
    )
    (folder / "other.csv").write_text("a,b\n1,2\n")
    with contextlib.closing(sqlite3.connect(folder / "foreign.db")) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
        conn.commit()
    pristine = Pristine(folder, pending, {c: ids[c] for c in first})
    assert _complete_trials(good) == sorted(pristine.measured.items())
    return pristine


def _world(pristine: Pristine, base: Path) -> World:
    root = base / f"case-{uuid.uuid4().hex[:10]}"
    root.mkdir()
    src = pristine.folder
    world = World(
        root=root,
        table=root / "table.csv",
        good=root / "good.db",
        results=root / "results.csv",
        foreign=root / "foreign.db",
        csv=root / "other.csv",
        folder=root / "folder",
        fifo=root / "pipe.fifo",
    )
    for name in ("table.csv", "good.db", "results.csv", "foreign.db", "other.csv"):
        shutil.copyfile(src / name, root / name)
    world.folder.mkdir()
    os.mkfifo(world.fifo)
    os.chdir(root)  # relative names (and sqlite:///relative URLs) land in the case folder
    return world


def _complete_trials(db: Path) -> list[tuple[str, float]]:
    """The COMPLETE trials, read with plain sqlite3 (read-only, so nothing is created)."""
    uri = f"file:{db}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
        rows = conn.execute(
            "SELECT candidate_id, value FROM llmbo_trials WHERE state='COMPLETE'"
        ).fetchall()
    return sorted(rows)


# --------------------------------------------------------------------------- the call
@dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str
    hung: bool
    escaped: str = ""  # the exception that escaped main(), and where in llmbo


class _Watchdog:
    """The other end of the FIFO, and the harness's limit on how long a call may take.

    While the call runs, whenever the call has the FIFO open for reading, this writes
    ``feed`` into it and closes it, as a shell's ``<(cat table.csv)`` would; with ``feed``
    ``None`` nobody ever writes. After ``limit`` seconds the call is interrupted
    (KeyboardInterrupt in the main thread) and garbage is fed until a blocked open or read
    of the FIFO returns.
    """

    def __init__(self, fifo: Path, feed: bytes | None, limit: float) -> None:
        self.fifo, self.feed, self.limit = fifo, feed, limit
        self.done = threading.Event()
        self.hung = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _feed(self, data: bytes) -> None:
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: no reader now
        except OSError:
            return
        with contextlib.suppress(OSError):
            os.write(fd, data)
        os.close(fd)

    def _watch(self) -> None:
        import _thread

        deadline = time.monotonic() + self.limit
        feed = self.feed
        while not self.done.wait(0.05):
            if not self.hung and time.monotonic() > deadline:
                with self.lock:
                    if self.done.is_set():
                        return
                    self.hung = True
                    _thread.interrupt_main()
                feed = b"\x00not,a\nstudy\x00" * 64
            if feed is not None:
                self._feed(feed)

    def __enter__(self) -> _Watchdog:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.done.set()
        self.thread.join()


def _call(
    world: World, argv: list[str], *, fifo_writer: bool = True, limit: float = HANG_SECONDS
) -> Outcome:
    """Run the CLI in-process: exit code, stdout, stderr (with warnings logged).

    With ``fifo_writer`` the FIFO is fed the table's bytes whenever the call reads it."""
    err, out = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    watchdog = _Watchdog(world.fifo, world.table.read_bytes() if fifo_writer else None, limit)
    code: int
    escaped = ""
    try:
        with watchdog, contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse usage errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except KeyboardInterrupt:  # only the watchdog interrupts
                code = 130
            except BaseException as exc:  # a traceback for the user
                import traceback

                err.write("".join(traceback.format_exception(exc)))
                ours = [f for f in traceback.extract_tb(exc.__traceback__) if "llmbo" in f.filename]
                where = f" at {Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else ""
                escaped = f"{type(exc).__name__}{where}: {str(exc)[:120]}"
                code = -1
    except KeyboardInterrupt:  # the watchdog fired just as the call returned
        code = 130
    finally:
        root.removeHandler(handler)
    return Outcome(argv, code, out.getvalue(), err.getvalue(), watchdog.hung, escaped)


# --------------------------------------------------------------------------- the checks
def _snapshot(world: World, extra: list[Path]) -> list[tuple[str, float]]:
    for path in (world.table, world.results, world.foreign, world.csv, *extra):
        if path.is_file():
            world.bytes_before[path] = path.read_bytes()
    return _complete_trials(world.good)


def _records_values(argv: list[str]) -> bool:
    """Calls that may add COMPLETE trials when they succeed: observe, and run --study."""
    return argv[0] == "observe" or (
        argv[0] == "run" and any(a == "--study" or a.startswith("--study=") for a in argv)
    )


def _option_values(argv: list[str], options: tuple[str, ...]) -> list[str]:
    values = []
    for k, arg in enumerate(argv):
        if arg in options and k + 1 < len(argv):
            values.append(argv[k + 1])
        elif arg.startswith(tuple(f"{o}=" for o in options)):
            values.append(arg.split("=", 1)[1])
    return values


def _problems(world: World, o: Outcome, before: list[tuple[str, float]]) -> list[str]:
    cmd = o.argv[0]
    found: list[str] = []
    text = o.out + o.err
    if o.hung:
        found.append("hang: no result in time (interrupted by the harness)")
    elif o.code == -1:
        found.append(f"an exception escaped main(): {o.escaped}")
    elif o.code == 1:
        # Exit 1 is for what is not bad input: a model that cannot be loaded, or a database
        # server that cannot be reached (a URL drawn here may name one where the driver is
        # installed, as in CI).
        if not re.search(r"\bmodel\b|Could not open storage .*reachable", o.err, re.I):
            found.append("exit 1 without a model-loading or unreachable-server error")
    elif o.code not in (0, 2):
        found.append(f"exit code {o.code}")
    if "Traceback" in o.err:
        found.append("traceback on stderr")
    if o.code in (1, 2):
        lines = o.err.splitlines()
        ok = any(line.startswith((f"llmbo {cmd}: error:", "usage:", "error:")) for line in lines)
        if not ok:
            found.append(f"exit {o.code} without an 'llmbo {cmd}: error:' line")
    if SECRET in text:
        found.append("the database password is printed")
    if "\x1b" in text:
        found.append("a raw ESC character is printed")
    try:
        after = _complete_trials(world.good)
    except sqlite3.Error as exc:
        found.append(f"the good study cannot be read any more: {exc}")
    else:
        if o.code == 0 and _records_values(o.argv):
            lost = sorted(set(before) - set(after))
            if lost:
                found.append(f"COMPLETE trials lost or changed: {lost}")
        elif after != before:
            found.append(f"COMPLETE trials changed: {before} -> {after}")
    # A CSV the call was told to write (--out/--output) may be replaced; never the table
    # or a database.
    outputs = {Path(v) for v in _option_values(o.argv, ("--out", "--output"))}
    for path, data in world.bytes_before.items():
        if path in outputs and path != world.table and path.suffix == ".csv":
            continue
        if not path.is_file() or path.read_bytes() != data:
            found.append(f"{path.name} (not an llmbo study) was changed")
    if not world.folder.is_dir():
        found.append("the folder was replaced")
    if not stat.S_ISFIFO(os.lstat(world.fifo).st_mode):
        found.append("the FIFO was replaced")
    if not stat.S_ISCHR(os.stat(os.devnull).st_mode):  # pragma: no cover - would be dire
        found.append("/dev/null was replaced")
    return found


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 120 else f"{value[:40]!r}...({len(value)} chars)"


def _report(o: Outcome, problems: list[str]) -> str:
    lines = [line[:400] for line in o.err.strip().splitlines()[-4:]] or ["(empty)"]
    tail = "\n      ".join(lines)
    argv = "[" + ", ".join(_shown(a) for a in o.argv) + "]"
    return f"{problems}\n    argv: {argv}\n    exit: {o.code}\n    stderr tail:\n      {tail}"


def _summary(failures: list[tuple[list[str], str]]) -> str:
    kinds: dict[str, int] = {}
    for problems, _ in failures:
        for p in problems:
            key = p.split(":")[0] if p.startswith(("COMPLETE", "hang", "the good", "an exc")) else p
            kinds[key] = kinds.get(key, 0) + 1
    head = f"{len(failures)} failing case(s): " + "; ".join(f"{n}x {k}" for k, n in kinds.items())
    return head + "\n" + "\n".join(text for _, text in failures)


def _run_case(world: World, argv: list[str], extra: list[Path] = ()) -> tuple[Outcome, list[str]]:
    before = _snapshot(world, list(extra))
    outcome = _call(world, argv)
    return outcome, _problems(world, outcome, before)


# ------------------------------------------------------------------------ the commands
#: Per command: option -> valid values (the first is the default used when not fuzzed),
#: and the options always given.
#: Model options ``suggest`` and ``run`` share: option -> valid values.
MODEL_OPTIONS: dict[str, list[str]] = {
    "--id-column": ["name"],
    "--acquisition": ["logei", "ucb", "ts"],
    "--outcome-power": ["1", "2.5"],
    "--pooling": ["mean", "segments"],
    "--segment-separator": ["\\n", " | "],
    "--top-module": [],  # lora only: no valid value with a cheap surrogate
    "--steps": ["5"],
    "--soft-tokens": ["0", "2"],
    "--fingerprint-columns": ["name,kind", "kind"],
    "--seed": ["0", "7"],
    "--surrogate": ["random", "random", "random", "onehot", "components"],  # GPs are slower
}
VALID: dict[str, dict[str, list[str]]] = {
    "suggest": {
        **MODEL_OPTIONS,
        "--study": ["<NEW>", "<GOOD>"],
        "--table": ["<TABLE>"],
        "--template": [TEMPLATE],
        "-n": ["1", "2"],
        "--study-name": ["default", "other"],
        "--out": ["next.csv"],
    },
    "observe": {
        "--study": ["<GOOD>"],
        "--results": ["<RESULTS>"],
        "--study-name": ["default"],
        "--id-col": ["candidate_id"],
        "--value-col": ["value"],
    },
    "status": {
        "--study": ["<GOOD>"],
        "--study-name": ["default", "other"],
        "--top": ["1", "5"],
    },
    "run": {
        **MODEL_OPTIONS,
        "--table": ["<TABLE>"],
        "--template": [TEMPLATE],
        "--target": ["y"],
        "--n-initial": ["1", "0", "2"],
        "--iterations": ["1", "0", "2"],
        "--batch-size": ["1", "2"],
        "--study": ["<NEW>", "<GOOD>"],
        "--study-name": ["default", "other"],
        "--output": ["history.csv"],
    },
}
ALWAYS = {
    "suggest": ["--study", "--table", "--template", "--surrogate", "-n"],
    "observe": ["--study", "--results"],
    "status": ["--study"],
    "run": ["--table", "--template", "--target", "--surrogate", "--n-initial", "--iterations"],
}
NO_PROGRESS = {"suggest", "run"}


def _nasty_for(option: str, pool: list[str]) -> list[str]:
    # The empty --surrogate means lora (a transformer): never ask for it.
    return [v for v in pool if v != ""] if option == "--surrogate" else pool


def _argv(
    cmd: str, chosen: dict[str, str], world: World, *, joined: set[str] = frozenset()
) -> list[str]:
    argv = [cmd]
    for option, value in chosen.items():
        value = world.resolve(value)
        if option in joined or value.startswith("-"):
            flag = "--n-suggestions" if option == "-n" else option
            argv.append(f"{flag}={value}")
        else:
            argv += [option, value]
    if cmd in NO_PROGRESS:
        argv.append("--no-progress")
    return argv


def _base(cmd: str) -> dict[str, str]:
    return {o: VALID[cmd][o][0] for o in ALWAYS[cmd]}


# --------------------------------------------------------------------- sweeps (tables)
#: Per command, the options the sweep fuzzes and their kind. Options that suggest and run
#: parse with the same code are swept once: the model options in run, those that create a
#: study in suggest (hypothesis mixes everything everywhere).
SWEEP = {
    "suggest": {
        "--study": "study", "--out": "path", "--table": "path", "-n": "int",
        "--study-name": "text", "--template": "text", "--id-column": "text", "--surrogate": "text",
    },
    "observe": {
        "--study": "study", "--results": "path", "--study-name": "text", "--id-col": "text",
        "--value-col": "text",
    },
    "status": {"--study": "study", "--study-name": "text", "--top": "int"},
    "run": {
        "--table": "path", "--study": "study", "--output": "path", "--target": "text",
        "--n-initial": "int", "--iterations": "int", "--batch-size": "int", "--seed": "int",
        "--steps": "int", "--soft-tokens": "int", "--outcome-power": "float",
        "--acquisition": "choice", "--pooling": "choice", "--top-module": "text",
        "--segment-separator": "text", "--fingerprint-columns": "text",
    },
}  # fmt: skip

#: The kind of every option (for the nasty values hypothesis prefers).
OPTION_KIND = {o: k for options in SWEEP.values() for o, k in options.items()}


def _sweep(cmd: str, pristine: Pristine, tmp_path: Path) -> list[tuple[list[str], str]]:
    """Each nasty value of its kind in each swept option of ``cmd`` (the others valid)."""
    failures: list[tuple[list[str], str]] = []
    for option, kind in SWEEP[cmd].items():
        for value in _nasty_for(option, BY_KIND[kind]):
            chosen = _base(cmd)
            if option == "--fingerprint-columns":  # random refuses them before reading them
                chosen["--surrogate"] = "onehot"
            chosen[option] = value
            world = _world(pristine, tmp_path)
            outcome, problems = _run_case(world, _argv(cmd, chosen, world))
            if problems:
                failures.append((problems, _report(outcome, problems)))
            shutil.rmtree(world.root, ignore_errors=True)
    return failures


@pytest.mark.parametrize("cmd", ["observe", "status", "suggest", "run"])
def test_every_nasty_value_in_every_option(
    cmd: str, pristine: Pristine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    failures = _sweep(cmd, pristine, tmp_path)
    print(f"{cmd}: sweep took {time.perf_counter() - started:.1f} s")
    assert not failures, _summary(failures)


# ------------------------------------------------------------------------- study files
STUDY_KINDS = [
    "new", "good", "truncated", "overwritten", "csv", "random", "empty", "foreign", "dir",
    "fifo", "devnull", "table", "url",
]  # fmt: skip


@st.composite
def study_files(draw: st.DrawFn) -> tuple:
    kind = draw(st.sampled_from(STUDY_KINDS))
    if kind == "truncated":
        return (kind, draw(st.floats(0, 1)))
    if kind == "overwritten":
        return (kind, draw(st.floats(0, 1)), draw(st.binary(min_size=1, max_size=256)))
    if kind == "random":
        return (kind, draw(st.binary(min_size=1, max_size=3000)))
    if kind == "url":
        return (kind, draw(st.sampled_from(URLS)))
    return (kind,)


def _make_study(world: World, spec: tuple) -> tuple[str, list[Path]]:
    """The --study value for ``spec`` and files that must stay byte-identical."""
    kind = spec[0]
    if kind in ("truncated", "overwritten"):
        data = bytearray(world.good.read_bytes())
        if kind == "truncated":
            data = data[: int(spec[1] * len(data))]
        else:
            start = int(spec[1] * (len(data) - 1))
            data[start : start + len(spec[2])] = spec[2]
        path = world.root / f"{kind}.db"
        path.write_bytes(bytes(data))
        return str(path), []
    if kind == "random":
        path = world.root / "random.bin"
        path.write_bytes(spec[1])
        return str(path), [path]
    if kind == "empty":
        path = world.root / "empty.db"
        path.write_bytes(b"")
        return str(path), []
    if kind == "url":
        return world.resolve(spec[1]), []
    token = {
        "new": "<NEW>", "good": "<GOOD>", "csv": "<CSV>", "foreign": "<FOREIGN>",
        "dir": "<DIR>", "fifo": "<FIFO>", "devnull": "<DEVNULL>", "table": "<TABLE>",
    }[kind]  # fmt: skip
    return world.resolve(token), []


STUDY_ARGV = {
    "suggest": ["--table", "<TABLE>", "--template", TEMPLATE, "--surrogate", "random", "-n", "1",
                "--no-progress"],
    "observe": ["--results", "<RESULTS>"],
    "status": [],
    "run": ["--table", "<TABLE>", "--template", TEMPLATE, "--target", "y", "--surrogate",
            "random", "--n-initial", "1", "--iterations", "1", "--no-progress"],
}  # fmt: skip


def _study_case(world: World, cmd: str, spec: tuple) -> tuple[Outcome, list[str]]:
    study, keep = _make_study(world, spec)
    argv = [cmd, "--study", study, *(world.resolve(a) for a in STUDY_ARGV[cmd])]
    return _run_case(world, argv, keep)


#: Deterministic damaged study files, per command (the option sweeps already give --study
#: every path and URL of NASTY: a folder, /dev/null, the FIFO, the table, a CSV, ...).
FIXED_STUDIES = [
    ("truncated", 0.0), ("truncated", 0.05), ("truncated", 0.5), ("truncated", 0.999),
    ("overwritten", 0.0, b"\xff" * 16), ("overwritten", 0.3, b"\x00" * 200),
    ("overwritten", 0.9, b"garbage"), ("random", bytes(range(256)) * 8), ("empty",),
]  # fmt: skip


@pytest.mark.parametrize("cmd", ["suggest", "observe", "status", "run"])
def test_every_kind_of_study_file(
    cmd: str, pristine: Pristine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    failures = []
    for spec in FIXED_STUDIES:
        world = _world(pristine, tmp_path)
        outcome, problems = _study_case(world, cmd, spec)
        if problems:
            failures.append((problems, f"study {spec[0]}: " + _report(outcome, problems)))
        shutil.rmtree(world.root, ignore_errors=True)
    assert not failures, _summary(failures)


@SETTINGS
@given(cmd=st.sampled_from(["suggest", "observe", "status", "run"]), spec=study_files())
def test_fuzzed_study_files(
    cmd: str, spec: tuple, pristine: Pristine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    world = _world(pristine, tmp_path)
    outcome, problems = _study_case(world, cmd, spec)
    event(f"{cmd} {spec[0]}: exit {outcome.code}")
    assert not problems, _report(outcome, problems)


# ------------------------------------------------------------ combined fuzzed options
@st.composite
def option_sets(draw: st.DrawFn, cmd: str) -> tuple[dict[str, str], set[str]]:
    """Valid options, some left out, and up to two of them with nasty values (half the
    time of the option's kind, so that they pass argparse more often)."""
    options = VALID[cmd]
    chosen: dict[str, str] = {}
    for option, valid in options.items():
        if valid and (option in ALWAYS[cmd] or draw(st.integers(0, 3)) == 0):
            chosen[option] = draw(st.sampled_from(valid))
    fuzzed = draw(st.lists(st.sampled_from(list(options)), min_size=0, max_size=2, unique=True))
    for option in fuzzed:
        pool = st.one_of(st.sampled_from(BY_KIND[OPTION_KIND[option]]), st.sampled_from(NASTY))
        chosen[option] = draw(pool.filter(lambda v, o=option: v in _nasty_for(o, [v])))
    order = draw(st.permutations(list(chosen)))
    joined = set(draw(st.lists(st.sampled_from([o for o in order if o != "-n"] or ["x"]))))
    return {o: chosen[o] for o in order}, joined


def _fuzz_options(cmd: str, data: st.DataObject, pristine: Pristine, tmp_path: Path) -> None:
    chosen, joined = data.draw(option_sets(cmd), label="options")
    world = _world(pristine, tmp_path)
    argv = _argv(cmd, chosen, world, joined=joined)
    outcome, problems = _run_case(world, argv)
    event(f"exit {outcome.code}")
    assert not problems, _report(outcome, problems)


@pytest.mark.parametrize("cmd", ["suggest", "observe", "status", "run"])
@SETTINGS
@given(data=st.data())
def test_fuzzed_options(
    cmd: str,
    data: st.DataObject,
    pristine: Pristine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    _fuzz_options(cmd, data, pristine, tmp_path)


@pytest.mark.parametrize("cmd", ["status", "observe"])
def test_study_url_to_a_fifo_nobody_writes_to(
    cmd: str, pristine: Pristine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite cannot keep a study in a FIFO; a path to one is refused, so must a URL be
    (not wait for a writer that never comes)."""
    monkeypatch.chdir(tmp_path)
    world = _world(pristine, tmp_path)
    argv = [cmd, "--study", f"sqlite:///{world.fifo}", *(world.resolve(a) for a in STUDY_ARGV[cmd])]
    before = _snapshot(world, [])
    outcome = _call(world, argv, fifo_writer=False, limit=5.0)
    problems = _problems(world, outcome, before)
    assert not problems, _report(outcome, problems)


def test_the_harness_sees_a_broken_call(
    pristine: Pristine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks themselves: a call that prints ESC and the password is caught."""
    monkeypatch.chdir(tmp_path)
    world = _world(pristine, tmp_path)
    o = Outcome(["status"], 2, "", f"oops \x1b[31m {SECRET}\nTraceback", hung=False)
    problems = _problems(world, o, _snapshot(world, []))
    assert len(problems) == 4, problems
