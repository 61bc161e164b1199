"""What a study shows of its trials: the history table and the best candidates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from llmbo.space import CandidateSpace
from llmbo.storage import TrialRecord

__all__ = ["HISTORY_COLUMNS", "best_rows", "history_frame"]

HISTORY_COLUMNS = [
    "trial",
    "candidate_id",
    "text",
    "state",
    "value",
    "created_at",
    "completed_at",
    "error",
]


def history_frame(trials: Sequence[TrialRecord], space: CandidateSpace) -> pd.DataFrame:
    """One row per trial: number, candidate id, text, state, value, timestamps, error."""
    rows = [
        [
            t.number,
            t.candidate_id,
            space.text(t.candidate_id) if t.candidate_id in space else None,
            t.state.value.lower(),
            t.value,
            t.created_at,
            t.completed_at,
            t.error,
        ]
        for t in trials
    ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def best_rows(
    space: CandidateSpace, idx: np.ndarray, values: np.ndarray, k: int, *, maximize: bool
) -> pd.DataFrame:
    """The table rows of the ``k`` best of the measured pool rows ``idx`` (values
    ``values``), best first, with the values in the space's value column."""
    if len(values) == 0:
        return pd.DataFrame()
    order = np.argsort(-values if maximize else values, kind="stable")[:k]
    rows = space.rows([space.ids[i] for i in idx[order]])
    rows.insert(1, space.value_column, values[order])
    return rows
