"""Every example runs in its smoke mode (what the guides tell users to run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def test_every_guide_has_an_example() -> None:
    docs = EXAMPLES.parent / "docs"
    named = {
        name
        for page in [*docs.glob("guides/*.md"), docs / "quickstart.md"]
        for name in SCRIPTS
        if f"examples/{name}" in page.read_text(encoding="utf-8")
    }
    assert len(list(docs.glob("guides/*.md"))) == 8
    assert named == set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_in_smoke_mode(script: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
