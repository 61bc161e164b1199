"""Checks on what a tell or a fail asks for, made before anything is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from llmbo.errors import InputError, TrialStateError
from llmbo.space import CandidateSpace, finite_values
from llmbo.storage import TrialRecord, TrialState

__all__ = ["check_consistent_values", "check_failable", "free_candidates", "told_values"]


def told_values(ids: Any, values: Any) -> tuple[list[str], np.ndarray]:
    """The ids and checked finite values of a tell (one id and value, or two equally long
    sequences); :class:`InputError` otherwise."""
    if isinstance(ids, str):
        ids, values = [ids], [values]
    elif np.isscalar(values):
        raise InputError("Give one value per candidate id.")
    ids, values = [str(i) for i in ids], list(values)
    if len(ids) != len(values):
        raise InputError(
            f"Got {len(ids)} candidate ids but {len(values)} values; give one value per id."
        )
    return ids, finite_values(values)


def free_candidates(
    space: CandidateSpace, trials: Sequence[TrialRecord]
) -> tuple[list[str], np.ndarray]:
    """The candidates awaiting a result (``PENDING`` or ``RUNNING`` trials, in trial order)
    and the pool rows that no active trial holds."""
    taken = np.zeros(len(space), dtype=bool)
    active = sorted({t.candidate_id for t in trials if t.state.is_active()})
    if active:
        taken[space.index_of(active)] = True
    waiting = (TrialState.PENDING, TrialState.RUNNING)
    pending = [t.candidate_id for t in trials if t.state in waiting]
    return pending, np.flatnonzero(~taken)


def check_consistent_values(ids: Sequence[str], values: np.ndarray) -> None:
    """Refuse a whole tell if a candidate is told twice in it with different values (one
    that contradicts a stored value is refused by ``record_many``, atomically)."""
    seen: dict[str, float] = {}
    for cid, value in zip(ids, values, strict=True):
        if cid in seen and seen[cid] != value:
            raise TrialStateError(
                f"Candidate {cid!r} is told twice in one call with different values "
                f"({seen[cid]!r} and {float(value)!r}); give one value per candidate."
            )
        seen[cid] = float(value)


def check_failable(trials: Sequence[TrialRecord], wanted: Sequence[str]) -> list[int]:
    """The trial ids to fail for candidates ``wanted``: every one must have been suggested
    and not measured (:class:`TrialStateError` naming the others, otherwise). Candidates
    whose suggestion already failed are skipped."""
    active = {t.candidate_id: t for t in trials if t.state.is_active()}
    tried = {t.candidate_id for t in trials}
    measured = [
        f"{c!r} (measured: {active[c].value!r})"
        for c in wanted
        if c in active and active[c].state is TrialState.COMPLETE
    ]
    never = [repr(c) for c in wanted if c not in tried]
    if measured or never:
        parts = []
        if measured:
            parts.append("already measured, and measurements never change: " + ", ".join(measured))
        if never:
            parts.append("never suggested: " + ", ".join(never))
        raise TrialStateError(
            "Only pending suggestions can be failed; nothing was changed. Candidate(s) "
            + "; ".join(parts)
            + "."
        )
    return [active[c].trial_id for c in wanted if c in active]
