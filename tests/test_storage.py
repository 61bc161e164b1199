"""Contract tests for llmbo.storage, run against every backend.

SQLite always; PostgreSQL too when ``LLMBO_TEST_POSTGRES_URL`` names a scratch database
(e.g. ``postgresql+psycopg://postgres@localhost/llmbo_test``). The tests only touch studies
they create, but the schema-version test briefly edits the version row: never point the
variable at a database in use.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from llmbo.errors import InputError, ObjectiveValueError, StudyError, TrialStateError
from llmbo.storage import (
    SCHEMA_VERSION,
    BaseStorage,
    CandidateTakenError,
    SQLStorage,
    StudyRecord,
    TrialState,
    get_storage,
)

POSTGRES_URL = os.environ.get("LLMBO_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if not POSTGRES_URL:
        pytest.skip("set LLMBO_TEST_POSTGRES_URL to run the storage suite on PostgreSQL")
    return POSTGRES_URL


@pytest.fixture
def storage(storage_url: str) -> SQLStorage:
    return SQLStorage(storage_url)


@pytest.fixture
def new_study(storage: SQLStorage) -> Iterator[Callable[..., StudyRecord]]:
    """Factory for studies with unique names; deletes them afterwards (shared PostgreSQL)."""
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


def _states(storage: BaseStorage, study_id: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in storage.trials(study_id):
        out.setdefault(t.candidate_id, []).append(t.state.name)
    return out


# ---------------------------------------------------------------------------------------
# Studies
# ---------------------------------------------------------------------------------------


def test_study_round_trip(storage: SQLStorage, new_study: Callable[..., StudyRecord]) -> None:
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
    assert storage.get_attrs(study.study_id) == {"best": {"id": "y", "value": 2.0}, "note": "hello"}
    with pytest.raises(InputError, match="JSON"):
        storage.set_attr(study.study_id, "bad", {1, 2})

    storage.reserve(study.study_id, ["x"])
    storage.delete_study(study.name)
    assert study.name not in storage.study_names()
    with pytest.raises(StudyError, match=study.name):
        storage.load_study(study.name)


def test_study_errors(storage: SQLStorage, new_study: Callable[..., StudyRecord]) -> None:
    study = new_study()
    with pytest.raises(StudyError, match=f"'{study.name}' already exists"):
        new_study(study.name)
    with pytest.raises(StudyError, match="existing studies: .*" + study.name):
        storage.load_study("no-such-study")
    with pytest.raises(InputError, match="direction='up'"):
        new_study(direction="up")
    with pytest.raises(InputError, match="JSON"):
        new_study(space={"x": float("nan")})


def test_get_storage_paths(tmp_path: Any) -> None:
    st_path = get_storage(tmp_path / "a.db")
    assert isinstance(st_path, SQLStorage) and st_path.url.startswith("sqlite:///")
    assert get_storage(st_path) is st_path
    assert get_storage(str(tmp_path / "a.db")).study_names() == []
    with pytest.raises(StudyError, match="does not exist"):
        get_storage(tmp_path / "missing-dir" / "a.db")
    with pytest.raises(StudyError, match="not a valid SQLAlchemy URL"):
        SQLStorage("::nonsense::")
    mem = get_storage("sqlite://")
    mem.create_study("m", space={}, config={}, seed=0, direction="maximize")
    assert mem.study_names() == ["m"]


def test_sqlite_pragmas(tmp_path: Any) -> None:
    storage = SQLStorage(f"sqlite:///{tmp_path / 'p.db'}")
    with storage._get_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_schema_version_mismatch(storage_url: str) -> None:
    SQLStorage(storage_url)  # creates the schema
    engine = sa.create_engine(storage_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE llmbo_schema SET version = 999"))
        with pytest.raises(
            StudyError, match=rf"version \[999\].*supports version {SCHEMA_VERSION}"
        ):
            SQLStorage(storage_url)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE llmbo_schema SET version = :v"), {"v": SCHEMA_VERSION})
        engine.dispose()
    SQLStorage(storage_url)  # opens again once the version matches


def test_tables_without_version_row_refused(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    SQLStorage(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE llmbo_schema"))
    engine.dispose()
    with pytest.raises(StudyError, match="unknown schema"):
        SQLStorage(url)


# ---------------------------------------------------------------------------------------
# Reservations
# ---------------------------------------------------------------------------------------


def test_reserve_and_conflict_is_atomic(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
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
        storage.reserve(10_000_000, ["e"])


def test_unique_active_candidate_enforced_by_database(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
) -> None:
    sid = new_study().study_id
    storage.reserve(sid, ["a"])
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    insert = sa.text(
        "INSERT INTO llmbo_trials (study_id, number, candidate_id, active_key, state, created_at)"
        " VALUES (:s, :n, 'a', :k, :st, :t)"
    )
    with pytest.raises(sa.exc.IntegrityError), storage._get_engine().begin() as conn:
        conn.execute(insert, {"s": sid, "n": 5, "k": "a", "st": "PENDING", "t": now})
    with storage._get_engine().begin() as conn:  # failed trials (NULL key) may repeat
        conn.execute(insert, {"s": sid, "n": 6, "k": None, "st": "FAILED", "t": now})
        conn.execute(insert, {"s": sid, "n": 7, "k": None, "st": "FAILED", "t": now})


def test_reserve_running_with_lease(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
) -> None:
    sid = new_study().study_id
    (t,) = storage.reserve(sid, ["a"], state=TrialState.RUNNING, worker="w1", lease_seconds=60)
    assert t.state is TrialState.RUNNING and t.worker == "w1"
    assert t.started_at is not None and t.lease_expires_at is not None
    assert timedelta(seconds=59) < t.lease_expires_at - t.started_at <= timedelta(seconds=60)
    with pytest.raises(InputError, match="only apply to RUNNING"):
        storage.reserve(sid, ["b"], worker="w1")
    with pytest.raises(InputError, match="lease_seconds=-1"):
        storage.reserve(sid, ["b"], state=TrialState.RUNNING, lease_seconds=-1)


# ---------------------------------------------------------------------------------------
# Completion, record, fail
# ---------------------------------------------------------------------------------------


def test_complete_is_idempotent_and_refuses_conflicts(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
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
        storage.complete(10_000_000, 1.0)


def test_fail_frees_candidate_and_blocks_complete(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
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


def test_record_paths(storage: SQLStorage, new_study: Callable[..., StudyRecord]) -> None:
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
    assert [t.candidate_id for t in storage.trials(sid, [TrialState.COMPLETE])] == [
        "a",
        "b",
        "c",
        "d",
    ]


def test_record_many_semantics(storage: SQLStorage, new_study: Callable[..., StudyRecord]) -> None:
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
        storage.record_many(10_000_000, [("g", 1.0)])
    assert len(storage.trials(sid)) == 7


def test_record_many_is_atomic_and_fast(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
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
    with pytest.raises(TrialStateError, match="cand-00650"):
        storage.record_many(sid, [*(x for x in items if x[0] != "cand-00650"), ("cand-00650", -1)])
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


def test_discard_study_only_when_unused(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
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
    assert storage.discard_study(10_000_000) is False


# ---------------------------------------------------------------------------------------
# Leases and pending suggestions
# ---------------------------------------------------------------------------------------


def test_start_heartbeat_and_lease_expiry(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
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
    with pytest.raises(StudyError, match="10000000"):
        storage.heartbeat([10_000_000], 60)
    # The candidate can be reserved again.
    (b2,) = storage.reserve(sid, ["b"])
    assert b2.number == 2
    with pytest.raises(InputError, match="timezone"):
        storage.expire_stale(sid, now=datetime.now())


def test_late_result_after_expiry(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
) -> None:
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


def test_release_pending(storage: SQLStorage, new_study: Callable[..., StudyRecord]) -> None:
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


# ---------------------------------------------------------------------------------------
# Concurrency
# ---------------------------------------------------------------------------------------

RACE_POOL = [f"c{i:02d}" for i in range(60)]


def _race_worker(storage: SQLStorage, study_id: int, seed: int, start: Any, queue: Any) -> None:
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


def test_processes_racing_to_reserve(
    storage: SQLStorage, new_study: Callable[..., StudyRecord]
) -> None:
    sid = new_study().study_id
    storage.taken_candidates(sid)  # the parent's engine exists before the fork
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
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


# ---------------------------------------------------------------------------------------
# Stateful model check
# ---------------------------------------------------------------------------------------

POOL = ["a", "b", "c", "d", "e"]
VALUES = st.sampled_from([0.0, 1.0, 2.5])


class StorageMachine(RuleBasedStateMachine):
    """Random reserve/start/complete/fail/record/expire/release runs against a plain model."""

    storage: SQLStorage

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


def test_storage_state_machine(storage: SQLStorage) -> None:
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


def test_fail_many_is_all_or_nothing(tmp_path: Path) -> None:
    from llmbo.storage import get_storage

    storage = get_storage(tmp_path / "s.db")
    study = storage.create_study("s", space={}, config={}, seed=0, direction="maximize")
    a, b, c = storage.reserve(study.study_id, ["a", "b", "c"])
    storage.complete(c.trial_id, 1.0)
    with pytest.raises(TrialStateError, match="nothing was failed"):
        storage.fail_many([a.trial_id, b.trial_id, c.trial_id], "broke")
    assert [t.state for t in storage.trials(study.study_id)] == [
        TrialState.PENDING,
        TrialState.PENDING,
        TrialState.COMPLETE,
    ]
    failed = storage.fail_many([a.trial_id, b.trial_id, a.trial_id], "broke")
    assert [t.state for t in failed] == [TrialState.FAILED] * 2
    assert {t.error for t in failed} == {"broke"}
