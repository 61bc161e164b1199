"""Tiny real parts for the LoRA-search tests: a random BERT and a small text task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmbo.hpo import LoraSearchSpace, LoraTask, TrainingConfig
from llmbo.testing.surrogates import build_tiny_bert

WORDS = ["red", "green", "blue", "cat", "dog", "fox", "big", "small", "the", "a"]


def tiny_frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        color, animal, size = rng.choice(WORDS[:3]), rng.choice(WORDS[3:6]), rng.choice(WORDS[6:8])
        label = {"red": 0.0, "green": 1.0, "blue": 2.0}[color] + (size == "big") * 1.5
        rows.append({"text": f"the {size} {color} {animal}", "label": label + 0.1 * rng.normal()})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    words = [*WORDS]
    # Words of the knowledge prompts, so the token surrogate reads more than [UNK].
    words += [
        "lora",
        "rank",
        "r",
        "alpha",
        "learning",
        "rate",
        "batch",
        "size",
        "dropout",
        "low",
        "high",
        "moderate",
        "very",
    ]
    return build_tiny_bert(Path(tmp_path_factory.mktemp("tiny-bert")), words, hidden=32)


@pytest.fixture
def tiny_task(tiny_model: str) -> LoraTask:
    return LoraTask.from_frame(
        tiny_frame(), model=tiny_model, name="tiny", fractions=(0.6, 0.2, 0.2)
    )


#: A 3 x 2 x 1 x 2 x 3 = 36-configuration grid that trains in well under a second a trial.
SMALL_GRID = {
    "r": [2, 4, 8],
    "alpha_ratio": [1, 2],
    "lora_dropout": [0.0],
    "batch_size": [8, 16],
    "learning_rate": [1e-4, 1e-3, 1e-2],
}


@pytest.fixture
def small_space() -> LoraSearchSpace:
    return LoraSearchSpace(grid=dict(SMALL_GRID))


@pytest.fixture
def quick() -> TrainingConfig:
    return TrainingConfig(epochs=2, max_length=16)
