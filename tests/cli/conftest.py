"""Fixtures shared by the CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A 40-row regression table (text, label) in words the tiny BERT knows."""
    rng = np.random.default_rng(0)
    colors, animals = ["red", "green", "blue"], ["cat", "dog", "fox"]
    rows = []
    for _ in range(40):
        c, a = rng.choice(colors), rng.choice(animals)
        rows.append({"text": f"the {c} {a}", "label": colors.index(c) + 0.1 * rng.normal()})
    path = tmp_path / "tiny.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
