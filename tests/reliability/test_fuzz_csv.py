"""Fuzzed CSV files through ``llmbo run`` / ``suggest`` / ``observe`` (via ``cli.main``).

Every call must end in a valid result or a clear error (non-zero exit code and an
``error:`` line), never a traceback; a failed call must leave every study in the file
reopenable with its trials unchanged.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llmbo.cli import main
from llmbo.optimizer import Optimizer

HEADER = ["name", "kind", "y"]
TEMPLATE = "{name} {kind}"
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Cells: numbers, numbers as text, special floats, missing values, unicode, separators,
# quotes and newlines, and (rarely) a huge text.
CELLS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "nan", "NaN", "inf", "-inf", "NA", "null", "1e999", "0x10", "1,5"]),
    st.text(max_size=12),
    st.sampled_from(['"quoted, comma"', '"multi\nline"', "tab\there", "émoji 🧪", "\u202e"]),
    st.just("x" * 200_000),
)
ROW = st.lists(CELLS, min_size=0, max_size=5)


def _line(cells: list[str]) -> str:
    return ",".join(cells)


@st.composite
def csv_texts(draw: st.DrawFn, header: list[str]) -> str:
    """Whole files: empty, header only, missing header, ragged rows, duplicate rows..."""
    kinds = ["clean", "clean", "rows", "rows", "empty", "blank", "no-header", "dups"]
    kind = draw(st.sampled_from(kinds))
    if kind == "empty":
        return ""
    if kind == "clean":  # well-formed rows, now and then one odd cell
        n = draw(st.integers(1, 8))
        names = draw(st.lists(st.text(min_size=1, max_size=8), min_size=n, max_size=n))
        ys = draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
        body = [
            [f'"{x.replace(chr(34), "")}"', f"k{i % 2}", repr(y)]
            for i, (x, y) in enumerate(zip(names, ys, strict=True))
        ]
        if draw(st.booleans()):
            body[draw(st.integers(0, n - 1))][draw(st.integers(0, 2))] = draw(CELLS)
        return "\n".join(_line(r) for r in [HEADER, *body]) + "\n"
    if kind == "blank":
        return draw(st.sampled_from(["\n", "   \n\n", ",,,\n"]))
    rows = draw(st.lists(ROW, min_size=0, max_size=6))
    if kind == "dups" and rows:
        rows = rows + rows
    head = [] if kind == "no-header" else [draw(st.permutations([*header, "extra"]))[:4]]
    return "\n".join(_line(r) for r in head + rows) + draw(st.sampled_from(["", "\n"]))


def _call(argv: list[str]) -> tuple[int, str]:
    """Run the CLI in-process: (exit code, stderr). Any escaping exception fails the test."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, err.getvalue()


def _snapshot(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            return conn.execute("SELECT * FROM llmbo_trials ORDER BY trial_id").fetchall()
        except sqlite3.OperationalError:  # no tables yet
            return []


def _check_outcome(
    code: int, err: str, db: Path, before: list[tuple], *, fuzzed: bool = True
) -> None:
    if fuzzed:
        event(f"exit code {code}")
    if code != 0:
        assert "error" in err.lower(), f"exit {code} without a clear message: {err!r}"
        assert "Traceback" not in err
        assert _snapshot(db) == before, "a failed call changed the study"
    if db.exists():  # every study in the file still opens and lists its trials
        from llmbo.storage import get_storage

        store = get_storage(db)
        for name in store.study_names():
            Optimizer.load(store, name, progress=False).history  # noqa: B018


def _write(text: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="llmbo-fuzz-")) / "table.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A study file with one study made by `suggest` (ids pending) for `observe`."""
    folder = tmp_path_factory.mktemp("fuzz-study")
    table = folder / "grid.csv"
    table.write_text("name,kind,y\n" + "".join(f"n{i},k{i % 3},{i}\n" for i in range(12)))
    db = folder / "study.db"
    code, err = _call(
        ["suggest", "--study", str(db), "--table", str(table), "--template", TEMPLATE,
         "--surrogate", "random", "-n", "3", "--no-progress"]
    )  # fmt: skip
    assert code == 0, err
    opt = Optimizer.load(str(db), "default", progress=False)
    return db, list(opt.space.ids)


@SETTINGS
@given(text=csv_texts(HEADER))
def test_fuzzed_tables_through_run(text: str, campaign: tuple[Path, list[str]]) -> None:
    db, _ = campaign
    before = _snapshot(db)
    code, err = _call(
        ["run", "--table", str(_write(text)), "--template", TEMPLATE, "--target", "y",
         "--surrogate", "random", "--n-initial", "1", "--iterations", "1", "--no-progress",
         "--study", str(db), "--study-name", f"run-{uuid.uuid4().hex[:8]}"]
    )  # fmt: skip
    _check_outcome(code, err, db, before)


@SETTINGS
@given(text=csv_texts(HEADER))
def test_fuzzed_tables_through_suggest(text: str, campaign: tuple[Path, list[str]]) -> None:
    db, _ = campaign
    before = _snapshot(db)
    code, err = _call(
        ["suggest", "--study", str(db), "--study-name", f"s-{uuid.uuid4().hex[:8]}",
         "--table", str(_write(text)), "--template", TEMPLATE, "--surrogate", "random",
         "-n", "2", "--no-progress"]
    )  # fmt: skip
    _check_outcome(code, err, db, before)


@st.composite
def results_texts(draw: st.DrawFn, ids: list[str]) -> str:
    """Results files whose ids are often real (so values really get checked)."""
    kind = draw(st.sampled_from(["rows", "rows", "rows", "empty", "no-header"]))
    if kind == "empty":
        return ""
    cid = st.one_of(st.sampled_from(ids), CELLS)
    value = st.one_of(st.integers(-5, 5).map(str), CELLS)
    rows = draw(st.lists(st.tuples(cid, value).map(list), max_size=5))
    head = [] if kind == "no-header" else [draw(st.permutations(["candidate_id", "value"]))]
    return "\n".join(_line(r) for r in head + rows) + "\n"


@SETTINGS
@given(data=st.data())
def test_fuzzed_results_through_observe(
    data: st.DataObject, campaign: tuple[Path, list[str]]
) -> None:
    db, ids = campaign
    text = data.draw(results_texts(ids))
    before = _snapshot(db)
    code, err = _call(["observe", "--study", str(db), "--results", str(_write(text))])
    _check_outcome(code, err, db, before)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\x00garbage\x00\x81",
        b"name,kind,y\n\x00\x00,a,1\n",
        b"\xef\xbb\xbfname,kind,y\na,b,1\n",
    ],
)
def test_binary_and_bom_files(raw: bytes, campaign: tuple[Path, list[str]], tmp_path: Path) -> None:
    db, _ = campaign
    table = tmp_path / "table.csv"
    table.write_bytes(raw)
    for argv in (
        ["run", "--table", str(table), "--template", TEMPLATE, "--target", "y", "--surrogate",
         "random", "--n-initial", "1", "--iterations", "0", "--no-progress"],
        ["observe", "--study", str(db), "--results", str(table)],
    ):  # fmt: skip
        before = _snapshot(db)
        code, err = _call(argv)
        _check_outcome(code, err, db, before, fuzzed=False)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{missing}", "not columns of the table"),
        ("{name:.2f}", "Could not render template"),
        ("{name", "template"),
        ("   ", "template"),
        ("{}", "template"),
    ],
)
def test_template_errors(template: str, message: str, tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text("name,kind,y\na,b,1\nc,d,2\n")
    code, err = _call(
        ["run", "--table", str(table), "--template", template, "--target", "y", "--surrogate",
         "random", "--n-initial", "1", "--iterations", "0", "--no-progress"]
    )  # fmt: skip
    assert code == 2 and message.lower() in err.lower(), err
