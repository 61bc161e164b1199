"""A warm start: one proposer for a study's first ``n_initial`` trials, another afterwards.

The usual pairing is an :class:`~llmbo.proposers.llm.LLMProposer` for the initial design
(instead of random rows) and a :class:`~llmbo.proposers.bayesian.BayesianProposer` for
everything after it (``llmbo run --warm-start llm``). The trials counted are the measured
and the pending ones, so a manual campaign that asks twice before telling anything still
gets its initial design from ``initial``; a batch that crosses ``n_initial`` takes its first
rows from ``initial`` and the rest from ``then`` (which sees the first ones as pending).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmbo.errors import InputError, StudyError
from llmbo.proposers.base import (
    PROPOSERS,
    Observations,
    Proposal,
    Proposer,
    proposer_from_config,
)
from llmbo.space import CandidateSpace

__all__ = ["WarmStartProposer"]


class WarmStartProposer(Proposer):
    """``initial`` for the first ``n_initial`` trials (measured or pending), then ``then``.

    Args:
        initial: Proposer of the initial design (e.g. an LLM proposer).
        then: Proposer of every later trial (e.g. the Bayesian proposer).
        n_initial: Trials proposed by ``initial``.

    ``info["phase"]`` says which proposer chose: ``"initial"``, ``"then"`` or ``"both"``
    (the info of ``initial`` is then under ``info["initial"]``).
    """

    name = "warm_start"

    def __init__(self, initial: Proposer, then: Proposer, *, n_initial: int) -> None:
        for what, proposer in (("initial", initial), ("then", then)):
            if not isinstance(proposer, Proposer):
                raise InputError(f"{what} must be a Proposer, got {type(proposer).__name__}.")
        if isinstance(n_initial, bool) or not isinstance(n_initial, int | np.integer):
            raise InputError(f"n_initial must be an integer >= 0, got {n_initial!r}.")
        if n_initial < 0:
            raise InputError(f"n_initial must be an integer >= 0, got {n_initial!r}.")
        self.initial = initial
        self.then = then
        self.n_initial = int(n_initial)
        # Depends on the parts, so per instance.
        self.runtime_settings = frozenset(  # type: ignore[misc]
            {f"initial.{key}" for key in initial.runtime_settings}
            | {f"then.{key}" for key in then.runtime_settings}
        )

    @property
    def label(self) -> str:
        return self.then.label

    @property
    def spec(self) -> Any:
        """The surrogate config of ``then`` (``None`` if it has none)."""
        return getattr(self.then, "spec", None)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "initial": self.initial.config(),
            "then": self.then.config(),
            "n_initial": self.n_initial,
        }

    def prepare(self, space: CandidateSpace, *, progress: bool = False) -> None:
        # Only the modelling proposer: ``initial`` is set up when (and if) it proposes, so
        # a study past its initial design never needs it (e.g. an LLM server or its key).
        self.then.prepare(space, progress=progress)

    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        first_n = min(n, max(0, self.n_initial - len(observed) - len(observed.pending)))
        if first_n == 0:
            proposal = self.then.propose(space, observed, n, seed=seed)
            return Proposal(list(proposal.index), {**proposal.info, "phase": "then"})
        first = self.initial.propose(space, observed, first_n, seed=seed)
        if first_n == n:
            return Proposal(list(first.index), {**first.info, "phase": "initial"})
        taken = np.asarray(first.index, dtype=np.int64)
        rest = Observations(
            index=observed.index,
            values=observed.values,
            pending=np.concatenate([observed.pending.astype(np.int64), taken]),
            available=np.setdiff1d(observed.available, taken),
        )
        second = self.then.propose(space, rest, n - first_n, seed=seed)
        info = {**second.info, "phase": "both", "initial": first.info}
        return Proposal([*first.index, *second.index], info)


@PROPOSERS.register("warm_start")
def _from_config(config: dict[str, Any]) -> WarmStartProposer:
    extra = sorted(set(config) - {"name", "initial", "then", "n_initial"})
    if extra:
        raise StudyError(f"The warm_start proposer has no settings {extra}.")
    missing = [key for key in ("initial", "then", "n_initial") if key not in config]
    if missing:
        raise StudyError(f"The warm_start proposer config lacks {missing}.")
    return WarmStartProposer(
        proposer_from_config(config["initial"]),
        proposer_from_config(config["then"]),
        n_initial=config["n_initial"],
    )
