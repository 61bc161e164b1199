"""Several worker processes run one study: no candidate evaluated twice, no result lost.

Runs on SQLite always and on PostgreSQL when ``LLMBO_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

from _fixtures import study_name_fixture, study_url_fixture  # noqa: F401  (fixtures)
from _support import TEMPLATE, animal_table, campaign_worker

from llmbo.optimizer import Optimizer
from llmbo.space import CandidateSpace
from llmbo.storage import TrialState, get_storage

N_WORKERS = 3
ITERATIONS = 4
BATCH = 2


def test_workers_share_a_study_without_repeats_or_losses(
    study_url: str, study_name: str, tmp_path: Path
) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    logs = [tmp_path / f"worker-{k}.jsonl" for k in range(N_WORKERS)]
    procs = [
        ctx.Process(
            target=campaign_worker,
            args=(study_url, study_name, str(log), ITERATIONS, BATCH, start),
        )
        for log in logs
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    try:
        for p in procs:
            p.join(timeout=180)
        assert [p.exitcode for p in procs] == [0] * N_WORKERS

        evaluated = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
        ids = [e["id"] for e in evaluated]
        assert len(ids) == N_WORKERS * ITERATIONS * BATCH
        assert len(set(ids)) == len(ids), "a candidate was evaluated twice"
        assert len({e["pid"] for e in evaluated}) == N_WORKERS  # everybody worked

        store = get_storage(study_url)
        study = store.load_study(study_name)
        trials = store.trials(study.study_id)
        complete = {t.candidate_id: t.value for t in trials if t.state is TrialState.COMPLETE}
        assert complete == {e["id"]: e["value"] for e in evaluated}, "a result was lost"
        assert [t for t in trials if t.state is not TrialState.COMPLETE] == []
        assert sorted(t.number for t in trials) == list(range(len(trials)))
        assert len({t.worker for t in trials}) == N_WORKERS
        # A late-joining process continues the same study.
        space = CandidateSpace(animal_table(), TEMPLATE)
        opt = Optimizer(space, "random", seed=0, storage=study_url, study_name=study_name)
        assert len(opt.history) == len(ids)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        store = get_storage(study_url)
        if study_name in store.study_names():
            store.delete_study(study_name)
