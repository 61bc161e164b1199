"""The contract of :class:`llmbo.storage.BaseStorage` as a pytest suite for any backend.

Subclass :class:`StorageContract` in a test module (its name must start with ``Test``) and
implement :meth:`~StorageFixtures.make_storage`; every test below then runs against that
backend::

    from llmbo.testing.storage import StorageContract

    class TestMyBackend(StorageContract):
        def make_storage(self, tmp_path):
            return MyStorage(tmp_path / "study")

        def open_readonly(self, storage):  # optional: the read-only test then runs
            return MyStorage(storage.path, readonly=True)

Optional hooks: :meth:`~StorageFixtures.open_readonly` (the read-only test skips without
it) and :attr:`~StorageFixtures.supports_processes` (``False`` skips the test of worker
processes racing to reserve, e.g. for a private in-memory database). To skip a whole
backend (a server that is not configured), call :func:`pytest.skip` in ``make_storage``.

The tests touch only studies they create and delete them afterwards, so ``make_storage``
may return a storage on a shared scratch database; never point it at one in use.

This module imports ``pytest`` and ``hypothesis`` (the stateful model check), which are
development dependencies (``pip install llmbo[dev]``): ``import llmbo`` does not import it.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from llmbo.errors import InputError, ObjectiveValueError, StudyError, TrialStateError
from llmbo.storage import (
    SCHEMA_VERSION,
    BaseStorage,
    CandidateTakenError,
    StudyRecord,
    TrialState,
)

__all__ = [
    "ConcurrencyContract",
    "LeaseContract",
    "StorageContract",
    "StorageFixtures",
    "StorageMachine",
    "StudyContract",
    "TrialContract",
]

#: Type of the ``new_study`` fixture: ``new_study(name=None, **create_study_kwargs)``.
NewStudy = Callable[..., StudyRecord]
#: A study or trial id that no test creates.
MISSING_ID = 10_000_000


def _states(storage: BaseStorage, study_id: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in storage.trials(study_id):
        out.setdefault(t.candidate_id, []).append(t.state.name)
    return out


class StorageFixtures:
    """Hooks a backend implements, and the fixtures every contract test uses."""

    #: Whether the storage can be shared with forked or spawned worker processes.
    supports_processes: bool = True

    def make_storage(self, tmp_path: Path) -> BaseStorage:
        """A writable storage for one test; ``tmp_path`` is that test's own folder."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_storage(tmp_path) -> BaseStorage."
        )

    def open_readonly(self, storage: BaseStorage) -> BaseStorage | None:
        """A read-only opening of the same data as ``storage``; ``None`` if there is none."""
        return None

    @pytest.fixture
    def storage(self, tmp_path: Path) -> BaseStorage:
        return self.make_storage(tmp_path)

    @pytest.fixture
    def new_study(self, storage: BaseStorage) -> Iterator[NewStudy]:
        """Factory for studies with unique names; deletes them afterwards (shared servers)."""
        created: list[str] = []

        def make(name: str | None = None, **kwargs: Any) -> StudyRecord:
            name = name or f"test-{uuid.uuid4().hex[:12]}"
            args: dict[str, Any] = {
                "space": {"ids": ["a", "b"]},
                "config": {"batch": 2},
                "seed": 0,
                "direction": "maximize",
            }
            args.update(kwargs)
            created.append(name)
            return storage.create_study(name, **args)

        yield make
        for name in created:
            if name in storage.study_names():
                storage.delete_study(name)


class StudyContract(StorageFixtures):
    """Studies: creation, loading, names, attributes, deletion, read-only opening."""

    def test_study_round_trip(self, storage: BaseStorage, new_study: NewStudy) -> None:
        space = {"ids": ["x", "y"], "template": "{a} in {b}", "nested": {"k": [1, 2.5, None]}}
        study = new_study(space=space, config={"lr": 0.01}, seed=7, direction="minimize")
        loaded = storage.load_study(study.name)
        assert loaded == study
        assert loaded.space == space and loaded.config == {"lr": 0.01}
        assert loaded.seed == 7 and loaded.direction == "minimize"
        assert loaded.schema_version == SCHEMA_VERSION
        assert loaded.created_at.tzinfo == timezone.utc
        assert study.name in storage.study_names()

        storage.set_attr(study.study_id, "best", {"id": "x", "value": 1.5})
        storage.set_attr(study.study_id, "best", {"id": "y", "value": 2.0})
        storage.set_attr(study.study_id, "note", "hello")
        attrs = storage.get_attrs(study.study_id)
        assert attrs == {"best": {"id": "y", "value": 2.0}, "note": "hello"}
        with pytest.raises(InputError, match="JSON"):
            storage.set_attr(study.study_id, "bad", {1, 2})

        storage.reserve(study.study_id, ["x"])
        storage.delete_study(study.name)
        assert study.name not in storage.study_names()
        with pytest.raises(StudyError, match=study.name):
            storage.load_study(study.name)

    def test_study_errors(self, storage: BaseStorage, new_study: NewStudy) -> None:
        study = new_study()
        with pytest.raises(StudyError, match=f"'{study.name}' already exists"):
            new_study(study.name)
        with pytest.raises(StudyError, match="existing studies: .*" + study.name):
            storage.load_study("no-such-study")
        with pytest.raises(InputError, match="direction='up'"):
            new_study(direction="up")
        with pytest.raises(InputError, match="JSON"):
            new_study(space={"x": float("nan")})

    def test_study_names_sorted_and_ids_distinct(
        self, storage: BaseStorage, new_study: NewStudy
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        made = [new_study(f"{prefix}-{tag}") for prefix in ("zz", "aa", "mm")]
        names = storage.study_names()
        assert names == sorted(names)
        assert [n for n in names if n.endswith(tag)] == [f"{p}-{tag}" for p in ("aa", "mm", "zz")]
        assert len({s.study_id for s in made}) == 3
        assert [storage.load_study(s.name) for s in made] == made

    def test_discard_study_only_when_unused(
        self, storage: BaseStorage, new_study: NewStudy
    ) -> None:
        used = new_study()
        storage.reserve(used.study_id, ["a"])
        storage.set_attr(used.study_id, "k", 1)
        assert storage.discard_study(used.study_id) is False
        assert storage.load_study(used.name) == used
        assert storage.get_attrs(used.study_id) == {"k": 1}
        assert len(storage.trials(used.study_id)) == 1
        failed_only = new_study()
        (t,) = storage.reserve(failed_only.study_id, ["a"])
        storage.fail(t.trial_id, "x")
        assert storage.discard_study(failed_only.study_id) is False  # it was used
        empty = new_study()
        storage.set_attr(empty.study_id, "k", 1)
        assert storage.discard_study(empty.study_id) is True
        assert empty.name not in storage.study_names()
        assert storage.get_attrs(empty.study_id) == {}
        assert storage.discard_study(empty.study_id) is False
        assert storage.discard_study(MISSING_ID) is False

    def test_readonly_reads_and_refuses_every_write(
        self, storage: BaseStorage, new_study: NewStudy
    ) -> None:
        study = new_study()
        sid = study.study_id
        done, t = storage.reserve(sid, ["a", "b"])
        storage.complete(done.trial_id, 1.0)
        storage.set_attr(sid, "note", {"k": 1})
        ro = self.open_readonly(storage)
        if ro is None:
            pytest.skip(f"{type(self).__name__} has no read-only opening (open_readonly)")
        names, trials = storage.study_names(), storage.trials(sid)
        assert ro.study_names() == names and ro.load_study(study.name) == study
        assert ro.trials(sid) == trials and ro.get_trial(t.trial_id) == trials[1]
        assert ro.trials(sid, [TrialState.COMPLETE]) == trials[:1]
        assert ro.get_attrs(sid) == {"note": {"k": 1}}
        assert ro.taken_candidates(sid) == {"a", "b"}
        tid = t.trial_id
        writes: list[Callable[[], Any]] = [
            lambda: ro.create_study("x", space={}, config={}, seed=0, direction="maximize"),
            lambda: ro.reserve(sid, ["new"]),
            lambda: ro.reserve(sid, []),
            lambda: ro.complete(tid, 1.0),
            lambda: ro.record(sid, "new", 1.0),
            lambda: ro.record_many(sid, [("new", 1.0)]),
            lambda: ro.fail(tid, "x"),
            lambda: ro.fail_many([tid], "x"),
            lambda: ro.start(tid, "w", 60),
            lambda: ro.heartbeat([tid], 60),
            lambda: ro.expire_stale(sid),
            lambda: ro.release_pending(sid),
            lambda: ro.set_attr(sid, "k", 1),
            lambda: ro.delete_study(study.name),
            lambda: ro.discard_study(sid),
        ]
        for write in writes:
            with pytest.raises(StudyError, match="read-only"):
                write()
        assert storage.study_names() == names and storage.trials(sid) == trials
        assert storage.get_attrs(sid) == {"note": {"k": 1}}


class TrialContract(StorageFixtures):
    """Trials: reservations, completion, record/record_many, fail/fail_many, ordering."""

    def test_reserve_and_conflict_is_atomic(
        self, storage: BaseStorage, new_study: NewStudy
    ) -> None:
        sid = new_study().study_id
        first = storage.reserve(sid, ["a", "b"])
        assert [t.number for t in first] == [0, 1]
        assert all(t.state is TrialState.PENDING and t.created_at.tzinfo for t in first)
        with pytest.raises(CandidateTakenError, match="'b'") as info:
            storage.reserve(sid, ["c", "b", "d", "a"])
        assert info.value.candidate_ids == ["a", "b"]
        assert isinstance(info.value, StudyError)
        # Nothing from the refused reservation was written.
        assert storage.taken_candidates(sid) == {"a", "b"}
        assert len(storage.trials(sid)) == 2
        assert [t.number for t in storage.reserve(sid, ["c", "d"])] == [2, 3]
        assert storage.reserve(sid, []) == []
        with pytest.raises(InputError, match="more than once"):
            storage.reserve(sid, ["e", "e"])
        with pytest.raises(InputError, match="single string"):
            storage.reserve(sid, "e")
        with pytest.raises(InputError, match="state=COMPLETE"):
            storage.reserve(sid, ["e"], state=TrialState.COMPLETE)
        with pytest.raises(StudyError, match="No study with id"):
            storage.reserve(MISSING_ID, ["e"])

    def test_reserve_running_with_lease(self, storage: BaseStorage, new_study: NewStudy) -> None:
        sid = new_study().study_id
        (t,) = storage.reserve(sid, ["a"], state=TrialState.RUNNING, worker="w1", lease_seconds=60)
        assert t.state is TrialState.RUNNING and t.worker == "w1"
        assert t.started_at is not None and t.lease_expires_at is not None
        assert timedelta(seconds=59) < t.lease_expires_at - t.started_at <= timedelta(seconds=60)
        with pytest.raises(InputError, match="only apply to RUNNING"):
            storage.reserve(sid, ["b"], worker="w1")
        with pytest.raises(InputError, match="lease_seconds=-1"):
            storage.reserve(sid, ["b"], state=TrialState.RUNNING, lease_seconds=-1)

    def test_complete_is_idempotent_and_refuses_conflicts(
        self, storage: BaseStorage, new_study: NewStudy
    ) -> None:
        sid = new_study().study_id
        (t,) = storage.reserve(sid, ["a"])
        done = storage.complete(t.trial_id, 1.25)
        assert done.state is TrialState.COMPLETE and done.value == 1.25
        assert done.completed_at is not None and done.completed_at.tzinfo == timezone.utc
        assert storage.complete(t.trial_id, 1.25) == done
        with pytest.raises(TrialStateError, match=r"1\.25.*2\.0"):
            storage.complete(t.trial_id, 2.0)
        with pytest.raises(ObjectiveValueError, match="nan"):
            storage.complete(t.trial_id, float("nan"))
        with pytest.raises(TrialStateError, match="cannot be failed"):
            storage.fail(t.trial_id, "oops")
        with pytest.raises(StudyError, match="No trial with id"):
            storage.complete(MISSING_ID, 1.0)

    def test_fail_frees_candidate_and_blocks_complete(
        self, storage: BaseStorage, new_study: NewStudy
    ) -> None:
        sid = new_study().study_id
        (t,) = storage.reserve(sid, ["a"])
        failed = storage.fail(t.trial_id, "instrument broke")
        assert failed.state is TrialState.FAILED and failed.error == "instrument broke"
        assert storage.fail(t.trial_id, "again") == failed  # idempotent
        assert storage.taken_candidates(sid) == set()
        with pytest.raises(TrialStateError, match="record"):
            storage.complete(t.trial_id, 1.0)
        (again,) = storage.reserve(sid, ["a"])
        assert again.number == 1
        assert _states(storage, sid) == {"a": ["FAILED", "PENDING"]}

    def test_fail_many_is_all_or_nothing(self, storage: BaseStorage, new_study: NewStudy) -> None:
        sid = new_study().study_id
        a, b, c = storage.reserve(sid, ["a", "b", "c"])
        storage.complete(c.trial_id, 1.0)
        with pytest.raises(TrialStateError, match="nothing was failed"):
            storage.fail_many([a.trial_id, b.trial_id, c.trial_id], "broke")
        assert [t.state for t in storage.trials(sid)] == [
            TrialState.PENDING,
            TrialState.PENDING,
            TrialState.COMPLETE,
        ]
        failed = storage.fail_many([a.trial_id, b.trial_id, a.trial_id], "broke")
        assert [t.state for t in failed] == [TrialState.FAILED] * 2
        assert {t.error for t in failed} == {"broke"}

    def test_record_paths(self, storage: BaseStorage, new_study: NewStudy) -> None:
        sid = new_study().study_id
        pending, running = storage.reserve(sid, ["a", "b"])
        storage.start(running.trial_id, "w", 60)
        # Completes the open trials instead of creating new ones.
        assert storage.record(sid, "a", 1.0).trial_id == pending.trial_id
        rb = storage.record(sid, "b", 2.0)
        assert rb.trial_id == running.trial_id and rb.lease_expires_at is None
        # Idempotent for an equal value, refused for a different one.
        assert storage.record(sid, "a", 1.0).trial_id == pending.trial_id
        with pytest.raises(TrialStateError, match=r"'a'.*1\.0.*3\.0"):
            storage.record(sid, "a", 3.0)
        # No trial yet: a COMPLETE one is created.
        new = storage.record(sid, "c", 0.5)
        assert new.state is TrialState.COMPLETE and new.number == 2
        # After a failure, a new measurement makes a new trial.
        (d,) = storage.reserve(sid, ["d"])
        storage.fail(d.trial_id, "x")
        rd = storage.record(sid, "d", 4.0)
        assert rd.trial_id != d.trial_id and rd.value == 4.0
        complete = storage.trials(sid, [TrialState.COMPLETE])
        assert [t.candidate_id for t in complete] == ["a", "b", "c", "d"]

    def test_record_many_semantics(self, storage: BaseStorage, new_study: NewStudy) -> None:
        sid = new_study().study_id
        pending, running, done, failed = storage.reserve(sid, ["a", "b", "c", "d"])
        storage.start(running.trial_id, "w", 60)
        storage.complete(done.trial_id, 3.0)
        storage.fail(failed.trial_id, "broke")
        out = storage.record_many(sid, [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0), ("e", 5)])
        # One record per item, in order; open trials are completed, not duplicated.
        assert [t.candidate_id for t in out] == ["a", "b", "c", "d", "e"]
        assert [t.trial_id for t in out[:3]] == [pending.trial_id, running.trial_id, done.trial_id]
        assert out[3].trial_id != failed.trial_id and out[3].number == 4
        assert out[4].number == 5 and out[4].value == 5.0
        assert all(t.state is TrialState.COMPLETE for t in out)
        assert out[1].lease_expires_at is None
        # Same values again: a no-op. Repeated ids with one value are stored once.
        assert storage.record_many(sid, [("a", 1.0), ("a", 1.0)]) == [out[0], out[0]]
        (f,) = storage.record_many(sid, [("f", 6.0), ("f", 6.0)])[:1]
        assert len(storage.trials(sid)) == 7 and f.number == 6
        assert storage.record_many(sid, []) == []
        # Refused before anything is written.
        with pytest.raises(InputError, match=r"'g'.*7\.0.*8\.0"):
            storage.record_many(sid, [("g", 7.0), ("h", 1.0), ("g", 8.0)])
        with pytest.raises(ObjectiveValueError, match="nan"):
            storage.record_many(sid, [("g", 7.0), ("h", float("nan"))])
        with pytest.raises(InputError, match="pair"):
            storage.record_many(sid, [("g", 7.0, 1)])  # type: ignore[list-item]
        with pytest.raises(StudyError, match="No study with id"):
            storage.record_many(MISSING_ID, [("g", 1.0)])
        assert len(storage.trials(sid)) == 7

    def test_record_many_is_atomic_and_fast(
        self, storage: BaseStorage, new_study: NewStudy
    ) -> None:
        sid = new_study().study_id
        ids = [f"cand-{i:05d}" for i in range(2000)]
        reserved = storage.reserve(sid, ids[:600])
        for t in reserved[:100]:
            storage.start(t.trial_id, "w", 600)
        storage.record_many(sid, [(c, float(i)) for i, c in enumerate(ids[600:700], start=600)])
        before = storage.trials(sid)
        # A conflict in the last item stores nothing at all.
        items = [(c, float(i)) for i, c in enumerate(ids)]
        conflicting = [*(x for x in items if x[0] != "cand-00650"), ("cand-00650", -1)]
        with pytest.raises(TrialStateError, match="cand-00650"):
            storage.record_many(sid, conflicting)
        assert storage.trials(sid) == before
        start = time.perf_counter()
        out = storage.record_many(sid, items)
        elapsed = time.perf_counter() - start
        assert elapsed < 2.0, f"record_many of 2000 items took {elapsed:.2f} s"
        assert [t.candidate_id for t in out] == ids
        assert [t.trial_id for t in out[:600]] == [t.trial_id for t in reserved]
        trials = storage.trials(sid)
        assert len(trials) == 2000 and all(t.state is TrialState.COMPLETE for t in trials)
        assert [t.number for t in trials] == list(range(2000))
        assert {t.candidate_id: t.value for t in trials} == {c: float(i) for i, c in enumerate(ids)}

    def test_trials_ordered_and_filtered(self, storage: BaseStorage, new_study: NewStudy) -> None:
        sid, other = new_study().study_id, new_study().study_id
        c, a, b = storage.reserve(sid, ["c", "a", "b"])  # reservation order, not id order
        storage.reserve(other, ["a"])
        storage.complete(a.trial_id, 1.0)
        storage.fail(b.trial_id, "x")
        storage.record(sid, "z", 2.0)
        trials = storage.trials(sid)
        assert [(t.number, t.candidate_id) for t in trials] == list(enumerate("cabz"))
        assert [t.state for t in trials] == [
            TrialState.PENDING,
            TrialState.COMPLETE,
            TrialState.FAILED,
            TrialState.COMPLETE,
        ]
        assert all(t.study_id == sid for t in trials) and trials[0].trial_id == c.trial_id
        assert [t.candidate_id for t in storage.trials(sid, [TrialState.COMPLETE])] == ["a", "z"]
        pending_or_failed = storage.trials(sid, [TrialState.FAILED, TrialState.PENDING])
        assert pending_or_failed == [trials[0], trials[2]]
        assert storage.trials(sid, []) == []
        assert [storage.get_trial(t.trial_id) for t in trials] == trials
        with pytest.raises(StudyError, match="No trial with id"):
            storage.get_trial(MISSING_ID)
        assert [(t.number, t.candidate_id) for t in storage.trials(other)] == [(0, "a")]
        assert storage.trials(MISSING_ID) == []


class LeaseContract(StorageFixtures):
    """Leases, heartbeats, expiry, late results and released suggestions."""

    def test_start_heartbeat_and_lease_expiry(
        self, storage: BaseStorage, new_study: NewStudy
    ) -> None:
        sid = new_study().study_id
        a, b = storage.reserve(sid, ["a", "b"])
        ra = storage.start(a.trial_id, "w1", 60)
        assert ra.state is TrialState.RUNNING and ra.worker == "w1"
        assert storage.start(a.trial_id, "w1", 60).state is TrialState.RUNNING  # repeat is fine
        with pytest.raises(TrialStateError, match="worker 'w1'"):
            storage.start(a.trial_id, "w2", 60)
        storage.start(b.trial_id, "w2", 60)

        now = datetime.now(timezone.utc)
        assert storage.expire_stale(sid, now=now + timedelta(seconds=30)) == []
        beat = storage.heartbeat([a.trial_id], 3600)
        assert beat[0].lease_expires_at is not None
        assert beat[0].lease_expires_at > now + timedelta(seconds=3000)

        expired = storage.expire_stale(sid, now=now + timedelta(seconds=120))
        assert [t.candidate_id for t in expired] == ["b"]
        assert expired[0].state is TrialState.FAILED
        assert expired[0].error is not None and expired[0].error.startswith("lease expired")
        assert storage.taken_candidates(sid) == {"a"}
        # The lost trial shows up as not RUNNING in a heartbeat; the worker should stop.
        states = [t.state for t in storage.heartbeat([a.trial_id, b.trial_id], 60)]
        assert states == [TrialState.RUNNING, TrialState.FAILED]
        with pytest.raises(StudyError, match=str(MISSING_ID)):
            storage.heartbeat([MISSING_ID], 60)
        # The candidate can be reserved again.
        (b2,) = storage.reserve(sid, ["b"])
        assert b2.number == 2
        with pytest.raises(InputError, match="timezone"):
            storage.expire_stale(sid, now=datetime.now())

    def test_late_result_after_expiry(self, storage: BaseStorage, new_study: NewStudy) -> None:
        sid = new_study().study_id
        a, b = storage.reserve(sid, ["a", "b"], state=TrialState.RUNNING, lease_seconds=1)
        later = datetime.now(timezone.utc) + timedelta(minutes=5)
        assert len(storage.expire_stale(sid, now=later)) == 2
        # Not re-reserved: the late result is accepted.
        late = storage.complete(a.trial_id, 3.0)
        assert late.state is TrialState.COMPLETE and late.value == 3.0 and late.error is None
        assert storage.taken_candidates(sid) == {"a"}
        # Re-reserved meanwhile: rejected, naming the newer trial.
        (b2,) = storage.reserve(sid, ["b"])
        with pytest.raises(TrialStateError, match=f"trial {b2.trial_id}"):
            storage.complete(b.trial_id, 1.0)
        assert storage.get_trial(b.trial_id).state is TrialState.FAILED

    def test_release_pending(self, storage: BaseStorage, new_study: NewStudy) -> None:
        sid = new_study().study_id
        _, b, c = storage.reserve(sid, ["a", "b", "c"])
        storage.start(b.trial_id, "w", 60)
        storage.complete(c.trial_id, 1.0)
        released = storage.release_pending(sid)
        assert [(t.candidate_id, t.error) for t in released] == [("a", "released")]
        assert storage.taken_candidates(sid) == {"b", "c"}
        assert storage.release_pending(sid) == []
        storage.reserve(sid, ["a"])
        assert _states(storage, sid)["a"] == ["FAILED", "PENDING"]


RACE_POOL = [f"c{i:02d}" for i in range(60)]


def _race_worker(storage: BaseStorage, study_id: int, seed: int, start: Any, queue: Any) -> None:
    rng = random.Random(seed)
    reserved: list[str] = []
    refused = 0
    errors: list[str] = []
    start.wait()
    for _ in range(40):
        ids = rng.sample(RACE_POOL, k=rng.randint(1, 3))
        try:
            reserved.extend(t.candidate_id for t in storage.reserve(study_id, ids))
        except CandidateTakenError:
            refused += 1
        except Exception as exc:  # reported to the parent, which fails the test
            errors.append(repr(exc))
    queue.put((reserved, refused, errors))


class ConcurrencyContract(StorageFixtures):
    """Processes racing for candidates, and a random model check of every operation."""

    def test_processes_racing_to_reserve(self, storage: BaseStorage, new_study: NewStudy) -> None:
        if not self.supports_processes:
            pytest.skip(f"{type(self).__name__} cannot be shared with other processes")
        sid = new_study().study_id
        storage.taken_candidates(sid)  # the parent's engine exists before the fork
        methods = mp.get_all_start_methods()
        ctx: Any = mp.get_context("fork" if "fork" in methods else "spawn")
        start, queue = ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=_race_worker, args=(storage, sid, seed, start, queue))
            for seed in range(4)
        ]
        for p in procs:
            p.start()
        start.set()
        results = [queue.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        errors = [e for _, _, errs in results for e in errs]
        assert errors == []  # in particular no "database is locked"
        reserved = [c for r, _, _ in results for c in r]
        assert len(reserved) == len(set(reserved))
        assert sum(refused for _, refused, _ in results) > 0  # the sets really overlapped
        trials = storage.trials(sid)
        assert sorted(t.candidate_id for t in trials) == sorted(reserved)
        assert [t.number for t in trials] == list(range(len(trials)))

    def test_storage_state_machine(self, storage: BaseStorage) -> None:
        StorageMachine.storage = storage
        run_state_machine_as_test(
            StorageMachine,
            settings=settings(
                max_examples=20,
                stateful_step_count=20,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )


class StorageContract(StudyContract, TrialContract, LeaseContract, ConcurrencyContract):
    """Every contract test of :class:`~llmbo.storage.BaseStorage`; see the module docstring.

    Subclass it as ``TestSomething`` and implement :meth:`~StorageFixtures.make_storage`.
    """


POOL = ["a", "b", "c", "d", "e"]
VALUES = st.sampled_from([0.0, 1.0, 2.5])


class StorageMachine(RuleBasedStateMachine):
    """Random reserve/start/complete/fail/record/expire/release runs against a plain model.

    Set the class attribute ``storage`` before running it (``run_state_machine_as_test``).
    """

    storage: BaseStorage

    def __init__(self) -> None:
        super().__init__()
        study = self.storage.create_study(
            f"sm-{uuid.uuid4().hex[:12]}", space={}, config={}, seed=0, direction="maximize"
        )
        self.sid = study.study_id
        self.name = study.name
        # trial_id -> [candidate, state, value, fail kind]
        self.model: dict[int, list[Any]] = {}

    def teardown(self) -> None:
        self.storage.delete_study(self.name)

    def _active(self, cand: str) -> int | None:
        live = [t for t, m in self.model.items() if m[0] == cand and m[1] != "FAILED"]
        assert len(live) <= 1
        return live[0] if live else None

    def _pick(self, idx: int) -> int | None:
        ids = sorted(self.model)
        return ids[idx % len(ids)] if ids else None

    @rule(cands=st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True))
    def reserve(self, cands: list[str]) -> None:
        taken = sorted(c for c in cands if self._active(c) is not None)
        if taken:
            with pytest.raises(CandidateTakenError) as info:
                self.storage.reserve(self.sid, cands)
            assert info.value.candidate_ids == taken
            return
        out = self.storage.reserve(self.sid, cands)
        assert [t.candidate_id for t in out] == cands
        for t in out:
            self.model[t.trial_id] = [t.candidate_id, "PENDING", None, None]

    @rule(idx=st.integers(0, 50), worker=st.sampled_from(["w1", "w2"]))
    def start(self, idx: int, worker: str) -> None:
        tid = self._pick(idx)
        if tid is None:
            return
        m = self.model[tid]
        if m[1] == "PENDING" or (m[1] == "RUNNING" and m[3] == worker):
            assert self.storage.start(tid, worker, 3600).state is TrialState.RUNNING
            m[1], m[3] = "RUNNING", worker
        else:
            with pytest.raises(TrialStateError):
                self.storage.start(tid, worker, 3600)

    @rule(idx=st.integers(0, 50), value=VALUES)
    def complete(self, idx: int, value: float) -> None:
        tid = self._pick(idx)
        if tid is None:
            return
        m = self.model[tid]
        ok = (
            m[1] in ("PENDING", "RUNNING")
            or (m[1] == "COMPLETE" and m[2] == value)
            or (m[1] == "FAILED" and m[3] in ("lease", "released") and self._active(m[0]) is None)
        )
        if ok:
            assert self.storage.complete(tid, value).value == value
            m[1], m[2], m[3] = "COMPLETE", value, None
        else:
            with pytest.raises(TrialStateError):
                self.storage.complete(tid, value)

    @rule(idx=st.integers(0, 50))
    def fail(self, idx: int) -> None:
        tid = self._pick(idx)
        if tid is None:
            return
        m = self.model[tid]
        if m[1] == "COMPLETE":
            with pytest.raises(TrialStateError):
                self.storage.fail(tid, "boom")
            return
        assert self.storage.fail(tid, "boom").state is TrialState.FAILED
        if m[1] != "FAILED":
            m[1], m[3] = "FAILED", "error"

    @rule(cand=st.sampled_from(POOL), value=VALUES)
    def record(self, cand: str, value: float) -> None:
        tid = self._active(cand)
        if tid is not None and self.model[tid][1] == "COMPLETE" and self.model[tid][2] != value:
            with pytest.raises(TrialStateError):
                self.storage.record(self.sid, cand, value)
            return
        out = self.storage.record(self.sid, cand, value)
        assert out.state is TrialState.COMPLETE and out.value == value
        if tid is not None:
            assert out.trial_id == tid
        self.model[out.trial_id] = [cand, "COMPLETE", value, None]

    @rule(items=st.lists(st.tuples(st.sampled_from(POOL), VALUES), max_size=4))
    def record_many(self, items: list[tuple[str, float]]) -> None:
        given: dict[str, float] = {}
        if any(given.setdefault(c, v) != v for c, v in items):
            with pytest.raises(InputError):
                self.storage.record_many(self.sid, items)
            return
        active = {c: self._active(c) for c in given}
        if any(
            t is not None and self.model[t][1] == "COMPLETE" and self.model[t][2] != given[c]
            for c, t in active.items()
        ):
            with pytest.raises(TrialStateError):
                self.storage.record_many(self.sid, items)
            return
        out = self.storage.record_many(self.sid, items)
        assert [(t.candidate_id, t.value) for t in out] == items
        for t in out:
            if active[t.candidate_id] is not None:
                assert t.trial_id == active[t.candidate_id]
            self.model[t.trial_id] = [t.candidate_id, "COMPLETE", t.value, None]

    @rule()
    def expire_all_running(self) -> None:
        later = datetime.now(timezone.utc) + timedelta(hours=2)
        out = {t.trial_id for t in self.storage.expire_stale(self.sid, now=later)}
        assert out == {t for t, m in self.model.items() if m[1] == "RUNNING"}
        for t in out:
            self.model[t][1], self.model[t][3] = "FAILED", "lease"

    @rule()
    def release(self) -> None:
        out = {t.trial_id for t in self.storage.release_pending(self.sid)}
        assert out == {t for t, m in self.model.items() if m[1] == "PENDING"}
        for t in out:
            self.model[t][1], self.model[t][3] = "FAILED", "released"

    @invariant()
    def matches_model(self) -> None:
        trials = self.storage.trials(self.sid)
        assert [t.number for t in trials] == list(range(len(trials)))
        got = {t.trial_id: (t.candidate_id, t.state.name, t.value) for t in trials}
        want = {
            t: (m[0], m[1], m[2] if m[1] == "COMPLETE" else None) for t, m in self.model.items()
        }
        assert got == want
        live = {m[0] for m in self.model.values() if m[1] != "FAILED"}
        assert self.storage.taken_candidates(self.sid) == live
