"""The durable study: trials, leases and storage, and nothing about models.

A :class:`Study` runs the ask/tell loop over a :class:`~llmbo.space.CandidateSpace`,
stores every trial in a :class:`~llmbo.storage.BaseStorage` and asks its
:class:`~llmbo.proposers.base.Proposer` where to go next. Every proposal is a
deterministic function of the study seed, the number of trials so far and the
observations, so a campaign continued across processes (``llmbo suggest`` / ``llmbo
observe``) suggests exactly what a single process would.

Resume rules (see RELIABILITY.md)
---------------------------------
* :meth:`Study.run` (an automated campaign) reserves each batch as ``RUNNING`` trials
  under a lease held by this worker (``host:pid:random``). While the objective runs, a
  daemon thread extends the lease every ``heartbeat_seconds``. A crashed or killed worker
  stops extending it, so its trials go stale after at most ``lease_seconds``.
* Whenever a study is opened and before every ask, stale ``RUNNING`` trials (lease passed)
  are marked ``FAILED`` ("lease expired ...") and their candidates are offered again. A late
  result of such a trial is still stored if nobody reserved the candidate meanwhile.
* :meth:`Study.ask` (manual campaigns, ``llmbo suggest``) hands out ``PENDING`` trials
  without a lease: a suggestion stays pending, and is never suggested again, until it is
  told, failed (:meth:`Study.fail`) or released (:meth:`Study.release_pending`).
* Completed values never change: telling the same value again is a no-op, a different one
  raises :class:`~llmbo.errors.TrialStateError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmbo._validate import check_seed, check_study_name
from llmbo.errors import InputError, PoolExhaustedError, StudyError
from llmbo.proposers.base import Observations, Proposer
from llmbo.space import CandidateSpace, finite_values
from llmbo.storage import BaseStorage, CandidateTakenError, TrialRecord, TrialState, get_storage
from llmbo.study.leases import (
    complete_trials,
    fail_trials,
    keep_alive,
    lease_timing,
    new_worker_id,
)
from llmbo.study.results import HISTORY_COLUMNS, best_rows, history_frame
from llmbo.study.settings import check_reopened, shared_storage, space_payload
from llmbo.study.trials import (
    check_consistent_values,
    check_failable,
    free_candidates,
    told_values,
)

logger = logging.getLogger("llmbo.study")

__all__ = ["HISTORY_COLUMNS", "Objective", "Study", "derived_seed"]

#: ``objective(rows) -> values``: rows of the space table (with a ``text`` column),
#: indexed by candidate id; returns one finite number per row.
Objective = Callable[[pd.DataFrame], Sequence[float]]

#: Attempts at reserving a proposal before giving up when other workers keep taking them.
RESERVE_ATTEMPTS = 10


def derived_seed(seed: int, counter: int) -> int:
    """The seed of the proposal made after ``counter`` trials of a study seeded ``seed``."""
    digest = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _check_maximize(maximize: Any) -> None:
    if not (
        isinstance(maximize, bool | np.bool_) or (type(maximize) is int and maximize in (0, 1))
    ):
        raise InputError(
            f"maximize must be True or False, got {maximize!r}; pass maximize=False to minimise."
        )


def _progress_bar(proposer: Proposer, iterations: int) -> Any:
    """A progress bar over ``iterations`` rounds (``None`` for a single round)."""
    if not iterations > 1:
        return None
    from llmbo._progress import progress_bar

    return progress_bar(iterations, f"llmbo {proposer.label}", unit="iteration")


class Study:
    """A durable ask/tell study over a finite pool of candidates.

    Args:
        space: The candidates.
        proposer: Where suggestions come from (its :meth:`~Proposer.config` is stored).
        maximize: Maximise (default) or minimise the objective.
        seed: Seed of every proposal; same seed + same observations = same suggestions.
        storage: A SQLAlchemy URL, a file path (SQLite) or a storage object. Default: an
            in-memory SQLite database (lost at exit).
        study_name: Name of the study in ``storage`` (created if it does not exist; an
            existing one must have been created with the same space, seed, direction and
            proposer settings, or :class:`StudySettingsError`).
        progress: Show a progress bar in :meth:`run`.
        lease_seconds: Lease of the ``RUNNING`` trials of :meth:`run`.
        heartbeat_seconds: How often :meth:`run` extends its leases while the objective
            runs (default: a quarter of ``lease_seconds``).
    """

    def __init__(
        self,
        space: CandidateSpace,
        proposer: Proposer,
        *,
        maximize: bool = True,
        seed: int = 0,
        storage: str | BaseStorage | None = None,
        study_name: str | None = None,
        progress: bool = True,
        lease_seconds: float = 60.0,
        heartbeat_seconds: float | None = None,
    ) -> None:
        if not isinstance(space, CandidateSpace):
            raise InputError(f"space must be a CandidateSpace, got {type(space).__name__}.")
        _check_maximize(maximize)
        self.lease_seconds, self.heartbeat_seconds = lease_timing(lease_seconds, heartbeat_seconds)
        self.space = space
        self.proposer = proposer
        self.maximize = bool(maximize)
        self.seed = int(check_seed(seed))
        self.progress = progress
        self._worker: tuple[int, str] | None = None
        self.storage = get_storage(storage if storage is not None else "sqlite:///:memory:")
        #: Whether this object created its study (``False``: it reopened an existing one).
        self.created_study = False
        name = check_study_name(study_name) if study_name is not None else None
        self.record = self._open(name or f"study-{space.content_hash()[:8]}-{self.seed}")
        #: Diagnostics of the last proposal (:attr:`Proposal.info`).
        self.last_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ opening
    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    def _open(self, name: str) -> Any:
        if name not in self.storage.study_names():
            payload = space_payload(self.space, shared=shared_storage(self.storage))
            try:
                record = self.storage.create_study(
                    name,
                    space=payload,
                    config={"proposer": self.proposer.config()},
                    seed=self.seed,
                    direction=self.direction,
                )
                self.created_study = True
                return record
            except StudyError:
                if name not in self.storage.study_names():
                    raise
                # Another worker created it a moment ago: open theirs (checked below).
        return self._reopen(name)

    def _reopen(self, name: str) -> Any:
        record = self.storage.load_study(name)
        check_reopened(
            record, name, self.space, self.proposer, seed=self.seed, direction=self.direction
        )
        if not getattr(self.storage, "readonly", False):
            self.storage.expire_stale(record.study_id)  # a crashed worker's trials are free
        return record

    # ----------------------------------------------------------------- ask/tell
    @property
    def worker_id(self) -> str:
        """This process's worker id, ``host:pid:random`` (new after a fork)."""
        pid = os.getpid()
        if self._worker is None or self._worker[0] != pid:
            self._worker = (pid, new_worker_id(pid))
        return self._worker[1]

    def trials(self, states: Sequence[TrialState] | None = None) -> list[TrialRecord]:
        """The study's trials in order (optionally only those in ``states``)."""
        if states is None:
            return self.storage.trials(self.record.study_id)
        return self.storage.trials(self.record.study_id, states=list(states))

    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Pool rows of the measured candidates and their values (as measured)."""
        done = self.trials([TrialState.COMPLETE])
        idx = self.space.index_of([t.candidate_id for t in done]) if done else np.empty(0, np.int64)
        return idx, np.array([t.value for t in done], dtype=np.float64)

    def expire_stale(self) -> list[str]:
        """Fail ``RUNNING`` trials whose lease passed; returns their (now free) candidate ids."""
        return [t.candidate_id for t in self.storage.expire_stale(self.record.study_id)]

    def release_pending(self) -> list[str]:
        """Offer every ``PENDING`` suggestion again; returns the released candidate ids.

        Each pending trial becomes ``FAILED`` with the error ``"released"``. A value told
        later for a released candidate is still stored, unless the candidate was suggested
        again meanwhile (then tell it to the new suggestion).
        """
        return [t.candidate_id for t in self.storage.release_pending(self.record.study_id)]

    def ask(self, n: int = 1) -> list[str]:
        """Suggest ``n`` new candidate ids (kept ``PENDING`` until told, failed or released)."""
        if not isinstance(n, int | np.integer) or n < 1:
            raise InputError(f"ask(n) needs a positive integer n, got {n!r}.")
        return [t.candidate_id for t in self._reserve(int(n), running=False)]

    def _reserve(self, n: int, *, running: bool) -> list[TrialRecord]:
        """Propose ``n`` candidates and reserve them, proposing again if a worker took one."""
        lease = {"worker": self.worker_id, "lease_seconds": self.lease_seconds}
        for attempt in range(RESERVE_ATTEMPTS):
            self.storage.expire_stale(self.record.study_id)
            chosen = self._propose(n)
            try:
                if running:
                    return self.storage.reserve(
                        self.record.study_id, chosen, state=TrialState.RUNNING, **lease
                    )
                return self.storage.reserve(self.record.study_id, chosen)
            except CandidateTakenError as exc:
                # Another worker reserved some of them meanwhile; the next proposal sees it.
                logger.debug("Attempt %d: %s", attempt + 1, exc)
        raise StudyError(
            f"Could not reserve {n} candidate(s) after {RESERVE_ATTEMPTS} attempts: other "
            "workers kept taking the proposed ones. Retry, or use fewer concurrent workers."
        )

    def _propose(self, n: int) -> list[str]:
        trials = self.trials()
        pending, available = free_candidates(self.space, trials)
        if n > len(available):
            raise PoolExhaustedError(
                f"Asked for {n} candidate(s) but only {len(available)} of {len(self.space)} remain "
                f"unevaluated ({len(pending)} pending). Ask for fewer or tell pending results first."
            )
        idx, values = self.observations()
        observed = Observations(
            index=idx,
            values=values if self.maximize else -values,
            pending=self.space.index_of(pending) if pending else np.empty(0, np.int64),
            available=available,
        )
        want_map = hasattr(self.proposer, "want_input_features") and not self._has_map_before()
        if want_map:
            self.proposer.want_input_features = True  # type: ignore[attr-defined]
        try:
            proposal = self.proposer.propose(
                self.space, observed, n, seed=derived_seed(self.seed, len(trials))
            )
        finally:
            if want_map:
                self.proposer.want_input_features = False  # type: ignore[attr-defined]
        self.last_info = proposal.info
        self._record_fit(observed, proposal)
        return [self.space.ids[i] for i in proposal.index]

    def _has_map_before(self) -> bool:
        if not getattr(self, "_map_before", False):
            from llmbo.report.records import MAP_BEFORE

            self._map_before = MAP_BEFORE in self.storage.get_attrs(self.record.study_id)
        return self._map_before

    def _record_fit(self, observed: Observations, proposal: Any) -> None:
        """Store what a report needs from this proposal's fit (:mod:`llmbo.report.records`):
        predictions of the suggested candidates and the feature maps. Never stops a
        suggestion: a failure is logged."""
        from llmbo.report import records as diagnostics

        fitted = proposal.info.get("fitted")
        if fitted is None or not hasattr(fitted, "model"):
            return
        study_id = self.record.study_id
        ids = [self.space.ids[i] for i in proposal.index]
        power = getattr(getattr(self.proposer, "acquisition", None), "outcome_power", 1.0)
        try:
            records = diagnostics.predictions(
                fitted, proposal.index, ids, np.asarray(observed.values, dtype=np.float64),
                outcome_power=power, maximize=self.maximize,
                label=str(proposal.info.get("label", "")),
            )  # fmt: skip
            keep = np.concatenate([observed.index, np.asarray(proposal.index), observed.pending])
            maps = {
                diagnostics.MAP_AFTER: fitted.features,
                diagnostics.MAP_BEFORE: proposal.info.get("input_features"),
            }
            for key, features in maps.items():
                if features is not None:
                    records[key] = diagnostics.feature_map(
                        features, self.space.ids, keep, n_train=len(observed), seed=self.seed
                    )
        except (RuntimeError, ValueError, TypeError, np.linalg.LinAlgError) as exc:
            logger.warning(
                "Could not record the fit for reports (%s: %s).", type(exc).__name__, exc
            )
            return
        for key, value in records.items():
            self.storage.set_attr(study_id, key, value)
        if diagnostics.MAP_BEFORE in records:
            self._map_before = True

    def tell(self, ids: str | Sequence[str], values: float | Sequence[float]) -> None:
        """Record measured values for candidates (suggested or not), in one transaction.

        Telling the same value twice is a no-op; a different value for an already
        measured candidate raises :class:`~llmbo.errors.TrialStateError`.
        """
        ids, checked = told_values(ids, values)
        self.space.index_of(ids)  # unknown ids -> UnknownCandidateError before anything is written
        check_consistent_values(ids, checked)
        self.storage.record_many(
            self.record.study_id, [(c, float(v)) for c, v in zip(ids, checked, strict=True)]
        )

    def fail(self, ids: str | Sequence[str], error: str) -> None:
        """Mark pending suggestions as failed (their candidates may be suggested again).

        All of them in one transaction. Every id must be a candidate that was suggested
        and not measured: :class:`~llmbo.errors.UnknownCandidateError` (not a candidate) or
        :class:`~llmbo.errors.TrialStateError` (measured, or never suggested) otherwise,
        and nothing changes. A suggestion that already failed (released, or its lease
        expired) stays failed.
        """
        wanted = list(dict.fromkeys(str(i) for i in ([ids] if isinstance(ids, str) else ids)))
        self.space.index_of(wanted)  # unknown ids -> UnknownCandidateError
        trial_ids = check_failable(self.trials(), wanted)
        self.storage.fail_many(trial_ids, error)

    # ---------------------------------------------------------------- campaigns
    def run(
        self,
        objective: Objective,
        iterations: int,
        *,
        batch_size: int = 1,
        callback: Callable[[Any, list[str], list[float]], None] | None = None,
    ) -> pd.DataFrame:
        """Run ``iterations`` rounds of ask -> objective -> tell; returns the history.

        Each round's candidates are reserved as ``RUNNING`` trials under this worker's lease,
        which a heartbeat thread extends while the objective runs; several processes may
        run the same study at once. If the objective raises (or the process is
        interrupted), the round's trials are marked failed and the error propagates; if the
        process dies, its trials expire after ``lease_seconds`` and are offered again.
        Everything measured before stays in the study.
        """
        if not isinstance(iterations, int | np.integer) or iterations < 0:
            raise InputError(f"iterations must be an integer >= 0, got {iterations!r}.")
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        bar = _progress_bar(self.proposer, iterations) if self.progress else None
        try:
            for _ in range(int(iterations)):
                trials = self._reserve(int(batch_size), running=True)
                ids = [t.candidate_id for t in trials]
                values = self._evaluate(objective, trials)
                complete_trials(self.storage, trials, values)
                if callback is not None:
                    callback(self, ids, values)
                if bar is not None:
                    best = self.best_value
                    bar.set_postfix(best=f"{best:.4g}" if best is not None else "-")
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self.history

    def run_until(
        self,
        objective: Objective,
        total: int,
        *,
        batch_size: int = 1,
        callback: Callable[[Any, list[str], list[float]], None] | None = None,
    ) -> pd.DataFrame:
        """Run rounds until the study holds ``total`` measured candidates (resume-friendly).

        Counts the ``COMPLETE`` trials already stored (e.g. by a run that crashed), runs the
        missing full rounds of ``batch_size`` and, if needed, one smaller last round, so a
        resumed campaign ends with exactly ``total`` measurements. Returns the history.
        """
        if not isinstance(total, int | np.integer) or total < 0:
            raise InputError(f"total must be an integer >= 0, got {total!r}.")
        done = len(self.trials([TrialState.COMPLETE]))
        rounds, rest = divmod(max(0, int(total) - done), int(batch_size))
        if done:
            logger.info(
                "Study %r holds %d measurement(s); running %d more to reach %d.",
                self.record.name,
                done,
                int(total) - done,
                total,
            )
        self.run(objective, rounds, batch_size=batch_size, callback=callback)
        if rest:
            self.run(objective, 1, batch_size=rest, callback=callback)
        return self.history

    def _evaluate(self, objective: Objective, trials: Sequence[TrialRecord]) -> list[float]:
        """The objective's values for reserved ``trials``, their leases kept alive; on any
        error (or interruption) the trials are failed and the error propagates."""
        ids = [t.candidate_id for t in trials]
        with keep_alive(self.storage, trials, self.lease_seconds, self.heartbeat_seconds):
            try:
                values = finite_values(list(objective(self.space.rows(ids))), "objective value")
                if len(values) != len(ids):
                    raise InputError(
                        f"The objective returned {len(values)} values for {len(ids)} candidates."
                    )
            except BaseException as exc:
                fail_trials(self.storage, trials, f"objective raised {type(exc).__name__}: {exc}")
                raise
        return values.tolist()

    # ------------------------------------------------------------------ results
    @property
    def history(self) -> pd.DataFrame:
        """One row per trial: number, candidate id, text, state, value, timestamps, error."""
        return history_frame(self.trials(), self.space)

    @property
    def best_value(self) -> float | None:
        _, values = self.observations()
        if len(values) == 0:
            return None
        return float(values.max() if self.maximize else values.min())

    def best(self, k: int = 1) -> pd.DataFrame:
        """The ``k`` best measured candidates with their table rows and values (in the
        column :attr:`CandidateSpace.value_column <llmbo.space.CandidateSpace.value_column>`,
        ``"value"`` unless the table has a column of that name)."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise InputError(f"best(k) needs an integer k >= 0, got {k!r}.")
        idx, values = self.observations()
        return best_rows(self.space, idx, values, k, maximize=self.maximize)
