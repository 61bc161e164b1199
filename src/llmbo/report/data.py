"""What a report shows, read from a stored study (nothing is refitted).

:func:`load_study_data` reads a study of any kind: a BO campaign (reaction pool, user
table), a parameter search (LoRA hyperparameters, any grid) or a catalyst run, with the fit
records :mod:`llmbo.report.records` stored at each suggestion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from llmbo.errors import InputError, StudyError
from llmbo.report import records as diagnostics
from llmbo.storage import BaseStorage, TrialState, get_storage

__all__ = ["StudyData", "load_study_data"]


@dataclass
class StudyData:
    """A study's trials and recorded diagnostics, ready for figures.

    Attributes:
        name: Study name.
        maximize: Direction of the objective.
        trials: One row per trial: ``trial, candidate_id, text, state, value, created_at,
            completed_at, error`` (text empty where the study stores no space).
        pool_values: The objective's value of every candidate of a pool whose values are
            all known (a benchmark pool, a table with its target column), else ``None``.
        pool_series: ``pool_values`` indexed by candidate id.
        params: Numeric and categorical columns of the trials' candidates when the study
            searches a parameter grid (``None`` otherwise); one row per trial.
        predictions: Recorded predictions of suggested candidates, one row per trial that
            has one: ``trial, mean, lower, upper, n_train, value``.
        maps: Recorded feature maps by key (``"before"``, ``"after"``).
        catalyst: A catalyst run's events (``None`` for other studies).
        settings: The study's stored proposer settings.
    """

    name: str
    maximize: bool
    trials: pd.DataFrame
    pool_values: np.ndarray | None = None
    pool_series: pd.Series | None = None
    params: pd.DataFrame | None = None
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    maps: dict[str, dict[str, Any]] = field(default_factory=dict)
    catalyst: list[dict[str, Any]] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> pd.DataFrame:
        """The completed trials in trial order."""
        t = self.trials
        return t[t["state"] == "complete"].sort_values("trial").reset_index(drop=True)

    @property
    def kind(self) -> str:
        """``"catalyst"``, ``"search"`` (a parameter grid) or ``"campaign"``."""
        if self.catalyst is not None:
            return "catalyst"
        return "search" if self.params is not None else "campaign"


#: Share of the pool counted as its top (the benchmarks' top-5 % coverage).
TOP_SHARE = 0.05


def load_study_data(
    storage: str | BaseStorage, name: str, *, target: str | None = None
) -> StudyData:
    """Read study ``name`` for a report.

    ``target`` names the table column holding every candidate's value (for the
    random-search expectation and the top-5 % count); by default a column of the stored
    table that agrees with every measured value is used, if there is one.

    Raises:
        StudyError: There is no such study (the message lists those there are).
        InputError: ``target`` is not a numeric column of the stored table.
    """
    store = get_storage(storage)
    names = store.study_names()
    if name not in names:
        listed = ", ".join(repr(n) for n in names) if names else "none"
        raise StudyError(f"No study {name!r} here; the studies are: {listed}.")
    record = store.load_study(name)
    attrs = store.get_attrs(record.study_id)
    trials = store.trials(record.study_id)
    space = None
    if "records" in record.space:
        from llmbo.space import CandidateSpace

        space = CandidateSpace.from_dict(record.space)
    frame = pd.DataFrame(
        [
            {
                "trial": t.number,
                "candidate_id": t.candidate_id,
                "text": space.text(t.candidate_id) if space is not None and t.candidate_id in space else "",
                "state": t.state.value.lower(),
                "value": t.value,
                "created_at": t.created_at,
                "completed_at": t.completed_at,
                "error": t.error or "",
            }
            for t in trials
        ],
        columns=["trial", "candidate_id", "text", "state", "value", "created_at", "completed_at", "error"],
    )  # fmt: skip
    data = StudyData(
        name=name,
        maximize=record.direction == "maximize",
        trials=frame,
        settings=dict(record.config),
    )
    events = [v for k, v in sorted(attrs.items()) if k.startswith("catalyst.event.")]
    if events or "catalyst.settings" in attrs:
        data.catalyst = events
    if space is not None:
        data.pool_values = _pool_values(space, frame, target)
        if data.pool_values is not None:
            data.pool_series = pd.Series(data.pool_values, index=pd.Index(space.ids))
        data.params = _params(space, frame)
    data.predictions = _predictions(attrs, frame)
    data.maps = {
        key.rsplit(".", 1)[-1]: value
        for key, value in attrs.items()
        if key in (diagnostics.MAP_BEFORE, diagnostics.MAP_AFTER)
    }
    return data


def _pool_values(space: Any, trials: pd.DataFrame, target: str | None) -> np.ndarray | None:
    table = space.frame
    done = trials[trials["state"] == TrialState.COMPLETE.value.lower()]
    if target is not None:
        if target not in table.columns or not pd.api.types.is_numeric_dtype(table[target]):
            numeric = [str(c) for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
            raise InputError(
                f"--target {target!r} is not a numeric column of the study's table; "
                f"numeric columns: {numeric}."
            )
        column = table[target]
    else:
        if done.empty:
            return None
        column = None
        rows = [space.index_of([c])[0] for c in done["candidate_id"]]
        for name in table.columns:
            values = table[name]
            if not pd.api.types.is_numeric_dtype(values) or values.isna().any():
                continue
            if np.allclose(values.to_numpy(dtype=float)[rows], done["value"].to_numpy(dtype=float)):
                column = values
                break
        if column is None:
            return None
    values = column.to_numpy(dtype=float)
    return values if np.isfinite(values).all() else None


def _params(space: Any, trials: pd.DataFrame) -> pd.DataFrame | None:
    """The template's columns for each trial, when at least two of them are numeric
    (a parameter grid); ``None`` for text-like candidates."""
    from llmbo.space import template_fields

    if not isinstance(space.template, str):
        return None
    fields = [f for f in template_fields(space.template) if f in space.frame.columns]
    numeric = [f for f in fields if pd.api.types.is_numeric_dtype(space.frame[f])]
    if len(numeric) < 2 or trials.empty:
        return None
    rows = space.frame.iloc[space.index_of(trials["candidate_id"].tolist())][fields]
    return rows.reset_index(drop=True).assign(trial=trials["trial"].to_numpy())


def _predictions(attrs: dict[str, Any], trials: pd.DataFrame) -> pd.DataFrame:
    columns = ["trial", "mean", "lower", "upper", "n_train", "value"]
    rows = []
    done = trials[trials["state"] == "complete"]
    for row in done.itertuples(index=False):
        rec = attrs.get(diagnostics.PREDICTION + str(row.candidate_id))
        if rec:
            rows.append(
                [row.trial, rec["mean"], rec["lower"], rec["upper"], rec["n_train"], row.value]
            )
    return pd.DataFrame(rows, columns=columns)
