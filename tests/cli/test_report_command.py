"""``llmbo report`` on good and bad studies, and the page in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from llmbo import CandidateSpace, Optimizer
from llmbo.cli import main
from llmbo.optimizer import TableObjective

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"a": f"a{i}", "b": f"b{j}", "y": float(i * j)} for i in range(6) for j in range(5)]
    space = CandidateSpace(pd.DataFrame(rows), "{a}, {b}")
    path = tmp_path_factory.mktemp("cli-report") / "s.db"
    opt = Optimizer(space, "onehot", storage=path, study_name="default", progress=False)
    opt.run(TableObjective(space, "y"), iterations=8)
    return path


def test_report_writes_one_file(study: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(study), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist"),
        ("not-a-study", "not an llmbo study"),
        ("empty-study", "has no trials yet"),
        ("unknown-name", "No study 'nope'"),
        ("onto-the-study", "is the STUDY file; writing there would replace it"),
    ],
)
def test_bad_studies_get_a_message_and_a_non_zero_exit(
    setup: str, message: str, study: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "r.html"
    args = ["report", str(tmp_path / "none.db"), "-o", str(out)]
    if setup == "not-a-study":
        bad = tmp_path / "table.db"
        bad.write_text("a,b\n1,2\n")
        args[1] = str(bad)
    elif setup == "empty-study":
        space = CandidateSpace(pd.DataFrame({"a": ["x", "y"]}), "{a}")
        Optimizer(space, "random", storage=tmp_path / "e.db", study_name="e", progress=False)
        args[1] = str(tmp_path / "e.db")
    elif setup == "unknown-name":
        args[1:2] = [str(study), "--name", "nope"]
    elif setup == "onto-the-study":
        copy = tmp_path / "copy.db"
        shutil.copy(study, copy)
        args = ["report", str(copy), "-o", str(copy)]
    assert main(args) != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def _browser() -> str | None:
    return next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )


def test_the_report_renders_in_headless_chromium(study: Path, tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no headless Chromium here (.ci/run installs Debian's chromium)")
    out = tmp_path / "r.html"
    assert main(["report", str(study), "-o", str(out), "--name", "default"]) == 0
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--virtual-time-budget=3000", "--enable-logging=stderr", "--v=0"]  # fmt: skip
    shot = tmp_path / "shot.png"
    run = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2400", out.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 20_000, run.stderr[-2000:]
    dom = subprocess.run([*flags, "--dump-dom", out.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body is not None, dom.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert int(attrs["figures"]) == 3 and attrs["figures-ok"] == attrs["figures"]
    assert "errors" not in attrs
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "rror" in line], console
