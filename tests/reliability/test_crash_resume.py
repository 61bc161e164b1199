"""Crashes: a campaign killed with SIGKILL mid-iteration resumes without losing or repeating.

* ``llmbo run --study FILE`` killed mid-campaign and started again with the same command:
  at a random moment (slow), and deterministically while a trial is ``RUNNING`` in its
  objective, and between the objective's return and the commit of its value;
* ``Optimizer.run`` killed while its objective runs: the trial stays ``RUNNING`` while the
  heartbeat thread extends its lease, goes stale once the process is dead, and its
  candidate is offered again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from _support import TEMPLATE, animal_table

from llmbo.optimizer import Optimizer, TableObjective
from llmbo.space import CandidateSpace
from llmbo.storage import TrialState, get_storage

N_INITIAL = 3
ITERATIONS = 10
KILL_AFTER = N_INITIAL + 4  # complete trials seen in the database before the kill


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _rows(db: Path, query: str) -> list[tuple]:
    """Read the study file with plain sqlite3, as an outside observer would."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(query).fetchall()


def _wait_for(predicate, proc: subprocess.Popen | None, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the campaign ended (rc {proc.returncode}) before the kill:\n{out}")
        try:
            if predicate():
                return
        except sqlite3.OperationalError:  # tables not created yet
            pass
        time.sleep(0.02)
    pytest.fail("timed out waiting for the campaign")


@pytest.mark.slow
def test_cli_campaign_killed_mid_iteration_resumes(tiny_model: str, tmp_path: Path) -> None:
    table = tmp_path / "animals.csv"
    animal_table().to_csv(table, index=False)
    db = tmp_path / "campaign.db"
    cmd = [
        sys.executable, "-m", "llmbo", "run", "--table", str(table), "--template", TEMPLATE,
        "--target", "y", "--study", str(db), "--surrogate", "projection", "--model",
        tiny_model, "--steps", "5", "--device", "cpu", "--n-initial", str(N_INITIAL),
        "--iterations", str(ITERATIONS), "--seed", "3", "--no-progress",
    ]  # fmt: skip
    complete = "SELECT trial_id, candidate_id, value FROM llmbo_trials WHERE state = 'COMPLETE'"

    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(lambda: len(_rows(db, complete)) >= KILL_AFTER, proc, timeout=120)
        proc.send_signal(signal.SIGKILL)  # inside the next iteration's fit/reserve/measure
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = set(_rows(db, complete))
    assert KILL_AFTER <= len(before) < N_INITIAL + ITERATIONS

    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = _rows(db, complete)
    ids = [cid for _, cid, _ in after]
    assert len(ids) == len(set(ids)), "a candidate was measured twice"
    assert before <= set(after), "a measurement from before the crash was lost or changed"
    assert len(after) == N_INITIAL + ITERATIONS  # the campaign finished, nothing extra
    values = dict(
        zip(CandidateSpace(animal_table(), TEMPLATE).ids, animal_table()["y"], strict=True)
    )
    assert all(values[cid] == value for _, cid, value in after)
    # The study reopens: the killed worker's trial (if it was measuring) is RUNNING or FAILED.
    states = {s for (s,) in _rows(db, "SELECT DISTINCT state FROM llmbo_trials")}
    assert states <= {"COMPLETE", "RUNNING", "FAILED"}


# ------------------------------------------------- llmbo run killed at a chosen moment
#: The child: the real ``llmbo run`` (``llmbo.cli.main``) with, in this process only, a
#: short lease and one of two hangs at the ``HANG_AT``-th evaluation: "objective" hangs inside
#: ``TableObjective.__call__`` (the trial is ``RUNNING``, its lease kept alive by the
#: heartbeat); "commit" lets the objective return and hangs in ``SQLStorage.complete`` before
#: the value is written. Either way it first writes a marker file, then sleeps until killed.
CLI_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    import llmbo.optimizer as om
    from llmbo.cli import main
    from llmbo.storage import SQLStorage

    mode, hang_at, marker = {mode!r}, {hang_at}, Path({marker!r})
    calls = []

    def hang(record):
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, marker)  # the test never reads a half-written marker
        time.sleep(600)

    init = om.Optimizer.__init__

    def short_lease(self, *args, **kwargs):
        kwargs.update(lease_seconds={lease}, heartbeat_seconds={beat})
        init(self, *args, **kwargs)

    om.Optimizer.__init__ = short_lease

    if mode == "objective":
        real_call = om.TableObjective.__call__

        def objective(self, rows):
            calls.append(1)
            if len(calls) == hang_at:
                hang({{"candidates": [str(c) for c in rows.index]}})
            return real_call(self, rows)

        om.TableObjective.__call__ = objective
    else:
        real_complete = SQLStorage.complete

        def complete(self, trial_id, value):
            calls.append(1)
            if len(calls) == hang_at:
                hang({{"trial_id": trial_id, "value": value}})
            return real_complete(self, trial_id, value)

        SQLStorage.complete = complete
    sys.exit(main({args!r}))
    """
)
HANG_AT = 4  # the 4th evaluation of the campaign (after N_INITIAL + 3 measurements)
LEASE = 4.0  # seconds; the real CLI's default is Optimizer's 60 s


def _run_args(table: Path, db: Path) -> list[str]:
    return [
        "run", "--table", str(table), "--template", TEMPLATE, "--target", "y", "--study",
        str(db), "--surrogate", "onehot", "--n-initial", str(N_INITIAL), "--iterations",
        str(ITERATIONS), "--seed", "4", "--no-progress",
    ]  # fmt: skip


def _kill_cli_at(mode: str, tmp_path: Path) -> None:
    """Kill ``llmbo run`` at a chosen moment, check the study then, resume and check again."""
    table, db, marker = tmp_path / "animals.csv", tmp_path / "campaign.db", tmp_path / "hung.json"
    animal_table().to_csv(table, index=False)
    space = CandidateSpace(animal_table(), TEMPLATE)
    truth = dict(zip(space.ids, animal_table()["y"], strict=True))
    args = _run_args(table, db)
    child = CLI_CHILD.format(
        mode=mode, hang_at=HANG_AT, marker=str(marker), lease=LEASE, beat=0.25, args=args
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_for(marker.exists, proc, timeout=120)
        hung = json.loads(marker.read_text())
        store = get_storage(f"sqlite:///{db}")
        sid = store.load_study("default").study_id
        # At this moment exactly one trial is RUNNING, under the child's lease.
        states = [(t.candidate_id, t.state.name) for t in store.trials(sid)]
        active = [t for t in store.trials(sid) if t.state is not TrialState.COMPLETE]
        assert [t.state for t in active] == [TrialState.RUNNING], f"at the kill: {states}"
        running = active[0]
        assert running.worker is not None and running.worker.split(":")[1] == str(proc.pid)
        assert running.value is None
        if mode == "objective":
            assert hung["candidates"] == [running.candidate_id]
        else:  # the objective returned the table's value; it is not in the database yet
            assert hung["trial_id"] == running.trial_id
            assert hung["value"] == truth[running.candidate_id]
        before = {
            (t.trial_id, t.candidate_id, t.value)
            for t in store.trials(sid, states=[TrialState.COMPLETE])
        }
        assert len(before) == N_INITIAL + HANG_AT - 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # Dead, but nobody has looked: still RUNNING, and not stale before its lease passes.
    killed = store.get_trial(running.trial_id)
    assert killed.state is TrialState.RUNNING and killed.lease_expires_at is not None
    assert killed.lease_expires_at > datetime.now(timezone.utc)
    wait = (killed.lease_expires_at - datetime.now(timezone.utc)).total_seconds()
    time.sleep(max(0.0, wait) + 0.5)  # the lease runs out: nothing extends it any more

    resumed = subprocess.run(
        [sys.executable, "-m", "llmbo", *args], env=_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    trials = store.trials(sid)
    killed = store.get_trial(running.trial_id)
    assert killed.state is TrialState.FAILED and killed.value is None
    assert "lease expired" in (killed.error or ""), killed.error
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    ids = [t.candidate_id for t in done]
    assert len(ids) == len(set(ids)), "a candidate was measured twice"
    assert before <= {(t.trial_id, t.candidate_id, t.value) for t in done}, (
        "a measurement from before the kill was lost or changed"
    )
    assert len(done) == N_INITIAL + ITERATIONS  # the campaign finished, nothing extra
    assert all(t.value == truth[t.candidate_id] for t in done)
    assert [t for t in trials if t.state not in (TrialState.COMPLETE, TrialState.FAILED)] == []
    assert [t.trial_id for t in trials if t.state is TrialState.FAILED] == [running.trial_id]


def test_cli_killed_while_a_trial_is_running_resumes(tmp_path: Path) -> None:
    """SIGKILL while the objective of a ``RUNNING`` trial runs (heartbeat alive)."""
    _kill_cli_at("objective", tmp_path)


def test_cli_killed_between_objective_and_commit_resumes(tmp_path: Path) -> None:
    """SIGKILL after the objective returned, before its value was committed."""
    _kill_cli_at("commit", tmp_path)


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {support!r})
    from _support import TEMPLATE, animal_table
    from llmbo.optimizer import Optimizer
    from llmbo.space import CandidateSpace

    marker = Path({marker!r})
    calls = []

    def objective(rows):
        calls.append(1)
        if len(calls) == 4:  # the fourth round hangs (a stuck instrument) until killed
            marker.write_text(",".join(rows.index))
            time.sleep(600)
        return [float(v) for v in rows["y"]]

    opt = Optimizer(CandidateSpace(animal_table(), TEMPLATE), "random", seed=5,
                    storage={url!r}, study_name="s", progress=False,
                    lease_seconds={lease}, heartbeat_seconds={beat})
    opt.run(objective, 10, batch_size=2)
    """
)


def test_killed_worker_trials_go_stale_and_are_offered_again(tmp_path: Path) -> None:
    db, marker = tmp_path / "study.db", tmp_path / "hung.txt"
    url, lease = f"sqlite:///{db}", 2.0
    script = WORKER.format(
        support=str(Path(__file__).parent), marker=str(marker), url=url, lease=lease, beat=0.2
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env())
    try:
        _wait_for(marker.exists, proc, timeout=120)
        hung = marker.read_text().split(",")
        store = get_storage(url)
        sid = store.load_study("s").study_id
        running = store.trials(sid, states=[TrialState.RUNNING])
        assert sorted(t.candidate_id for t in running) == sorted(hung)
        assert {t.worker.split(":")[1] for t in running if t.worker} == {str(proc.pid)}
        # The heartbeat keeps extending the lease while the objective hangs.
        first = running[0].lease_expires_at
        time.sleep(1.5 * lease)
        assert store.expire_stale(sid) == []
        assert store.get_trial(running[0].trial_id).lease_expires_at > first  # type: ignore[operator]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    space = CandidateSpace(animal_table(), TEMPLATE)
    opt = Optimizer(space, "random", seed=5, storage=url, study_name="s", progress=False)
    assert {t.candidate_id for t in store.trials(sid, states=[TrialState.RUNNING])} == set(hung)
    time.sleep(lease + 0.5)  # no heartbeat any more: the lease runs out
    remaining = len(space) - 6 - 2
    suggested = opt.ask(remaining + 2)  # expires the stale trials first, then offers them
    assert set(hung) <= set(suggested)
    failed = store.trials(sid, states=[TrialState.FAILED])
    assert sorted(t.candidate_id for t in failed) == sorted(hung)
    assert all("lease expired" in (t.error or "") for t in failed)
    assert all(t.completed_at and t.completed_at <= datetime.now(timezone.utc) for t in failed)
    # Finish the campaign: every candidate measured exactly once, nothing lost.
    opt.tell(suggested, TableObjective(space, "y")(space.rows(suggested)))
    done = store.trials(sid, states=[TrialState.COMPLETE])
    assert sorted(t.candidate_id for t in done) == sorted(space.ids)
