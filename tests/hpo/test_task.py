"""Built-in tasks."""

from __future__ import annotations

import pandas as pd
import pytest

from llmbo.errors import InputError


def test_the_sentiment_lexicon_task_reads_vader_ratings() -> None:
    from llmbo.hpo import sentiment_lexicon_task
    from llmbo.hpo.task import TASKS

    task = sentiment_lexicon_task()
    rows = len(task.train) + len(task.validation) + len(task.test)
    assert 7000 < rows < 8000
    labels = pd.concat([task.train, task.validation, task.test])["label"]
    assert labels.between(-4, 4).all() and labels.min() < -3 and labels.max() > 3
    assert task.kind == "regression" and task.metric_name == "rmse"
    small = sentiment_lexicon_task(rows=100, seed=1)
    assert len(small.train) + len(small.validation) + len(small.test) == 100
    assert TASKS.get("sentiment-lexicon") is sentiment_lexicon_task
    with pytest.raises(InputError, match="rows must be an integer >= 10"):
        sentiment_lexicon_task(rows=3)
