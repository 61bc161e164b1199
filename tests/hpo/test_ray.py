"""Trials on a real local Ray: two workers, every result stored once; bad addresses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmbo.errors import InputError
from llmbo.hpo import LoraSearch, LoraSearchSpace, LoraTask, TrainingConfig
from llmbo.storage import TrialState, get_storage

from .conftest import SMALL_GRID

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'llmbo[hpo]')")


@pytest.fixture
def no_ray() -> Iterator[None]:
    """No Ray running before the test, and none left after it."""
    if ray.is_initialized():
        ray.shutdown()
    yield
    ray.shutdown()


def _search(task: LoraTask, storage: str | None = None) -> LoraSearch:
    return LoraSearch(
        task,
        LoraSearchSpace(grid=dict(SMALL_GRID)),
        method="random",
        training=TrainingConfig(epochs=1, max_length=16),
        storage=storage,
        study_name="on-ray",
    )


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_unreachable_cluster_is_refused_quickly(
    tiny_task: LoraTask, no_ray: None, address: str
) -> None:
    search = _search(tiny_task)
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        search.run(2, ray_address=address)
    assert time.monotonic() - start < 15
    assert "Cannot reach the Ray cluster" in str(info.value)
    assert address in str(info.value)
    assert not ray.is_initialized()
    assert search.study.trials() == []  # nothing was suggested


def test_two_local_workers_store_every_trial_once(
    tiny_task: LoraTask, no_ray: None, tmp_path: Path
) -> None:
    storage = str(tmp_path / "ray.db")
    search = _search(tiny_task, storage)
    history = search.run(4, workers=2)
    assert ray.is_initialized()
    assert ray.cluster_resources().get("CPU") == 2
    assert len(history) == 4
    assert (history["state"] == "complete").all(), history[["state", "error"]]
    assert history["candidate_id"].is_unique
    assert search.finished() == 4
    # Two trials were in flight at once: the second was suggested before the first ended
    # (and the running one was pending, so it was not suggested again).
    first, second = history.iloc[0], history.iloc[1]
    assert second["created_at"] < first["completed_at"]
    # Every result is in the file, once.
    stored = get_storage(storage, readonly=True)
    trials = stored.trials(stored.load_study("on-ray").study_id)
    assert len(trials) == 4
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert sorted(t.candidate_id for t in trials) == sorted(history["candidate_id"])
    assert {t.candidate_id: t.value for t in trials} == dict(
        zip(history["candidate_id"], history["value"], strict=True)
    )
    # More trials on the Ray that is running continue the same study.
    more = search.run(5, workers=2)
    assert len(more) == 5
    assert more["candidate_id"].is_unique
