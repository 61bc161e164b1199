"""Optuna's TPE as a proposer: the baseline a user of Optuna would run on the same table.

Each proposal rebuilds an in-memory Optuna study from the observations (every searched
column a categorical distribution over its values in the pool, the pool rows measured so
far as completed trials) and asks :class:`optuna.samplers.TPESampler` (seeded with the
proposal's seed) for a configuration. A configuration that is not an available pool row
(already measured, pending, or a combination the table does not hold) is not an
experiment: it is told to the throw-away Optuna study as failed, counted in
``info["misses"]``, and TPE is asked again; after ``max_misses`` the proposal is random.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from llmbo._imports import require
from llmbo.errors import InputError, StudyError
from llmbo.proposers.base import PROPOSERS, Observations, Proposal, Proposer
from llmbo.proposers.random import random_rows
from llmbo.space import CandidateSpace

logger = logging.getLogger("llmbo.proposers.tpe")

__all__ = ["TPEProposer"]


class TPEProposer(Proposer):
    """Optuna TPE over the table's columns (each one categorical).

    Args:
        columns: Searched columns (default: every column but the id and text columns).
        n_startup_trials: Random trials before TPE models (Optuna's default: 10).
        max_misses: TPE proposals outside the available rows tolerated per suggestion.
    """

    name = "tpe"

    def __init__(
        self,
        columns: list[str] | None = None,
        *,
        n_startup_trials: int = 10,
        max_misses: int = 50,
    ) -> None:
        self.columns = list(columns) if columns is not None else None
        self.n_startup_trials = int(n_startup_trials)
        self.max_misses = int(max_misses)

    def _columns(self, space: CandidateSpace) -> list[str]:
        frame = space.frame
        if self.columns is None:
            return [str(c) for c in frame.columns if c not in (space.id_column, "text")]
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise InputError(f"TPE columns {missing} are not in the table.")
        return self.columns

    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        optuna = require("optuna", "The tpe proposer")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        columns = self._columns(space)
        values = space.frame[columns].astype(object).to_numpy()
        keys = [tuple(map(_plain, row)) for row in values]
        choices = {c: sorted(set(k[i] for k in keys), key=_order) for i, c in enumerate(columns)}
        dists = {c: optuna.distributions.CategoricalDistribution(v) for c, v in choices.items()}
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(
                seed=int(seed) % (2**32), n_startup_trials=self.n_startup_trials
            ),
        )
        for row, value in zip(observed.index, observed.values, strict=True):
            params = dict(zip(columns, keys[int(row)], strict=True))
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=dists, value=float(value))
            )
        free = {keys[int(r)]: int(r) for r in observed.available}
        chosen: list[int] = []
        misses = 0
        while len(chosen) < n and misses <= self.max_misses:
            trial = study.ask(dists)
            key = tuple(trial.params[c] for c in columns)
            row = free.pop(key, None)
            if row is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                misses += 1
                continue
            # A chosen row counts as pending for the next pick of a batch.
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            chosen.append(row)
        if len(chosen) < n:
            rest = np.setdiff1d(observed.available, chosen)
            chosen += random_rows(rest, n - len(chosen), seed)
            logger.info("TPE proposed no available row %d times; the rest is random.", misses)
        return Proposal(chosen, {"n_train": len(observed), "misses": misses})

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": self.columns,
            "n_startup_trials": self.n_startup_trials,
            "max_misses": self.max_misses,
        }


def _plain(value: Any) -> Any:
    """A table value as a plain Python scalar Optuna can store."""
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def _order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


@PROPOSERS.register("tpe")
def _from_config(config: dict[str, Any]) -> TPEProposer:
    extra = sorted(set(config) - {"name", "columns", "n_startup_trials", "max_misses"})
    if extra:
        raise StudyError(f"The tpe proposer has no settings {extra}.")
    return TPEProposer(
        config.get("columns"),
        n_startup_trials=config.get("n_startup_trials", 10),
        max_misses=config.get("max_misses", 50),
    )
