"""``llmbo presets`` and the default preset on the command line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llmbo.cli import main

TEMPLATE = "{ligand}, {base}, {solvent}"


@pytest.fixture
def screen(tmp_path: Path) -> Path:
    rows = [
        {"ligand": f"L{i}", "base": b, "solvent": f"S{s}", "y": float(i * s)}
        for i in range(4)
        for b in ("K2CO3", "DBU")
        for s in range(3)
    ]
    path = tmp_path / "screen.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_presets_lists_and_resolves_on_a_table(screen: Path, capsys) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "components-or-lora (default)" in out and "lora-seg" not in out
    assert main(["presets", "--all"]) == 0
    assert "lora-seg" in capsys.readouterr().out
    assert main(["presets", "--table", str(screen), "--template", TEMPLATE]) == 0
    out = capsys.readouterr().out
    assert "categorical ['ligand', 'base', 'solvent']" in out
    assert "-> the components surrogate, acquisition.outcome_power=2.0" in out
    assert "morgan" in out and "cannot run here: The morgan preset" in out


def test_suggest_says_what_the_default_chose_and_reopens_by_preset_name(
    screen: Path, tmp_path: Path, capsys
) -> None:
    study = tmp_path / "s.db"
    base = ["suggest", "--study", str(study), "-n", "1", "--no-progress"]
    assert main([*base, "--table", str(screen), "--template", TEMPLATE]) == 0
    err = capsys.readouterr().err
    assert "--surrogate components-or-lora: every template column is categorical" in err
    # Naming the preset again continues the study it created (a components GP).
    assert main([*base, "--surrogate", "components-or-lora"]) == 0
    assert main([*base, "--surrogate", "lora"]) == 2
    assert "was created with --surrogate components" in capsys.readouterr().err
