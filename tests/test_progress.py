"""Progress bars draw only on a terminal."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd

from llmbo._progress import progress_bar
from llmbo.cli import main


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_draws_on_a_terminal_and_not_elsewhere(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    bar = progress_bar(3, "llmbo test", unit="trial", leave=True)
    bar.set_postfix(best="1.5")
    bar.update(1)
    bar.close()
    shown = sys.stderr.getvalue()
    assert "llmbo test" in shown and "1/3" in shown and "best=1.5" in shown
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or a log file
    bar = progress_bar(3, "llmbo test")
    bar.update(3)
    bar.close()
    assert sys.stderr.getvalue() == ""


def test_a_campaign_outside_a_terminal_prints_no_bar(tmp_path: Path, capsys) -> None:
    rows = [{"a": f"a{i}", "b": f"b{j}", "y": float(i + j)} for i in range(4) for j in range(4)]
    table = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    args = ["run", "--table", str(table), "--template", "{a} {b}", "--target", "y"]
    assert main([*args, "--surrogate", "onehot", "--iterations", "3", "--n-initial", "2"]) == 0
    err = capsys.readouterr().err
    assert "it/s" not in err and "s/it" not in err and "%|" not in err
