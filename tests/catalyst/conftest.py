"""A tiny word-rating task, a tiny BERT that reads it, and scripted mentors."""

from __future__ import annotations

import pandas as pd
import pytest

from llmbo.errors import LLMUnavailableError
from llmbo.hpo import LoraTask
from llmbo.testing.llm import ScriptedBackend
from llmbo.testing.surrogates import build_tiny_bert

GOOD = ["good", "great", "happy", "nice", "fine", "lovely", "bright", "warm"]
BAD = ["bad", "awful", "sad", "poor", "grim", "dull", "cold", "ugly"]
PROMPT_WORDS = ["rate", "the", "mood", "of", "this", "word", "score", "feeling", "tone"]


@pytest.fixture(scope="session")
def word_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_bert(tmp_path_factory.mktemp("words"), GOOD + BAD + PROMPT_WORDS)


@pytest.fixture
def word_task(word_model: str) -> LoraTask:
    rows = [(w, 1.0 + 0.1 * i) for i, w in enumerate(GOOD)]
    rows += [(w, -1.0 - 0.1 * i) for i, w in enumerate(BAD)]
    frame = pd.DataFrame(rows, columns=["text", "label"])
    train = frame.iloc[[i for i in range(16) if i % 4 != 3]]
    held = frame.iloc[[i for i in range(16) if i % 4 == 3]]
    return LoraTask(word_model, train, held, held, kind="regression", metric="rmse", name="words")


@pytest.fixture
def dead_mentor() -> ScriptedBackend:
    return ScriptedBackend(fail=LLMUnavailableError("connection refused (test)"))
