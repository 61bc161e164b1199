"""Property-based test of the Optimizer's ask/tell/fail/release state machine.

A plain model (candidate -> pending or measured value) runs beside a real Optimizer (random
surrogate, small pool); after every step the invariants are checked against the study.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from llmbo.errors import (
    ObjectiveValueError,
    PoolExhaustedError,
    TrialStateError,
    UnknownCandidateError,
)
from llmbo.optimizer import Optimizer
from llmbo.space import CandidateSpace

SPACE = CandidateSpace.from_grid({"w": ["red", "blue", "green"], "n": [1, 2]}, "{w} {n}")
IDS = list(SPACE.ids)
VALUES = st.sampled_from([0.0, 1.0, -2.5, 1e9])
BAD_VALUES = st.sampled_from([math.nan, math.inf, -math.inf, "abc", None, True])


class OptimizerMachine(RuleBasedStateMachine):
    """Random sequences of ask / tell / conflicting tell / fail / release / bad input."""

    @initialize(seed=st.integers(0, 3))
    def start(self, seed: int) -> None:
        self.opt = Optimizer(SPACE, "random", seed=seed, progress=False)
        self.pending: set[str] = set()
        self.measured: dict[str, float] = {}
        self.asked_while_active: list[str] = []

    def _free(self) -> list[str]:
        return [c for c in IDS if c not in self.pending and c not in self.measured]

    @rule(n=st.integers(1, 4))
    def ask(self, n: int) -> None:
        free = self._free()
        if n > len(free):
            with pytest.raises(PoolExhaustedError):
                self.opt.ask(n)
            return
        ids = self.opt.ask(n)
        assert len(ids) == n == len(set(ids))
        assert set(ids) <= set(free), "suggested a pending or measured candidate"
        self.pending |= set(ids)

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), value=VALUES)
    def tell_pending(self, data: Any, value: float) -> None:
        cid = data.draw(st.sampled_from(sorted(self.pending)))
        self.opt.tell(cid, value)
        self.pending.discard(cid)
        self.measured[cid] = value

    @rule(cid=st.sampled_from(IDS), value=VALUES)
    def tell_any(self, cid: str, value: float) -> None:
        if cid in self.measured and self.measured[cid] != value:
            with pytest.raises(TrialStateError):
                self.opt.tell(cid, value)
            return
        self.opt.tell(cid, value)  # unsuggested, pending, or the same value again (no-op)
        self.pending.discard(cid)
        self.measured[cid] = value

    @rule(cid=st.sampled_from(IDS), value=BAD_VALUES)
    def tell_bad_value(self, cid: str, value: Any) -> None:
        with pytest.raises(ObjectiveValueError):
            self.opt.tell([cid], [value])

    @rule(value=VALUES)
    def tell_unknown_id(self, value: float) -> None:
        with pytest.raises(UnknownCandidateError):
            self.opt.tell([IDS[0], "no-such-candidate"], [value, value])
        # Checked before writing: the valid first id was not recorded either.

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def fail(self, data: Any) -> None:
        cid = data.draw(st.sampled_from(sorted(self.pending)))
        self.opt.fail(cid, "instrument error")
        self.pending.discard(cid)

    @rule()
    def release(self) -> None:
        assert set(self.opt.release_pending()) == self.pending
        self.pending.clear()

    @invariant()
    def study_matches_model(self) -> None:
        history = self.opt.history
        active = history[history["state"] != "failed"]
        assert active["candidate_id"].is_unique, "two live trials for one candidate"
        assert set(active.loc[active["state"] == "pending", "candidate_id"]) == self.pending
        done = active[active["state"] == "complete"]
        assert dict(zip(done["candidate_id"], done["value"], strict=True)) == self.measured
        assert history["trial"].tolist() == list(range(len(history)))
        assert set(history["state"]) <= {"pending", "complete", "failed"}
        best = self.opt.best_value
        assert best == (max(self.measured.values()) if self.measured else None)


def test_optimizer_state_machine() -> None:
    run_state_machine_as_test(
        OptimizerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
