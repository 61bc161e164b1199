"""``LoraSearch``: real trials on a tiny BERT, every method, failures, resume, a killed run."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from llmbo.errors import InputError, StudyError, StudySettingsError
from llmbo.hpo import (
    METHODS,
    LoraSearch,
    LoraSearchSpace,
    LoraTask,
    TrainingConfig,
    TrialOutcome,
)
from llmbo.hpo.task import Metric
from llmbo.storage import TrialState, get_storage

from .conftest import SMALL_GRID, tiny_frame


def _search(task: LoraTask, storage: Path | None, **kwargs: object) -> LoraSearch:
    kwargs.setdefault("space", LoraSearchSpace(grid=dict(SMALL_GRID)))
    kwargs.setdefault("training", TrainingConfig(epochs=1, max_length=16))
    kwargs.setdefault("initial_trials", 2)
    return LoraSearch(task, storage=str(storage) if storage else None, **kwargs)  # type: ignore[arg-type]


def _completed(search: LoraSearch) -> dict[str, float]:
    trials = search.study.trials([TrialState.COMPLETE])
    return {t.candidate_id: float(t.value) for t in trials}  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["random", "tpe", "standard-bo", "llmbo"])
def test_every_method_runs_distinct_trials_into_the_study(
    method: str, tiny_task: LoraTask, tiny_model: str, tmp_path: Path
) -> None:
    storage = tmp_path / "search.db"
    search = _search(tiny_task, storage, method=method, model=tiny_model)
    history = search.run(4)
    assert len(history) == 4
    assert (history["state"] == "complete").all(), history[["state", "error"]]
    assert history["candidate_id"].is_unique
    assert all(math.isfinite(v) for v in history["value"])
    # The configuration columns are joined to the history.
    assert set(SMALL_GRID) <= set(history.columns)
    assert search.finished() == 4
    # Stored: a fresh process (here a read-only storage) sees the 4 results.
    stored = get_storage(str(storage), readonly=True)
    record = stored.load_study(search.study.record.name)
    complete = stored.trials(record.study_id, states=[TrialState.COMPLETE])
    assert sorted(t.candidate_id for t in complete) == sorted(history["candidate_id"])
    assert len({t.candidate_id for t in complete}) == 4
    best = search.best()
    assert best is not None
    assert best["value"] == pytest.approx(history["value"].min())  # RMSE: lower is better
    assert set(SMALL_GRID) <= set(best)
    if method in ("standard-bo", "llmbo"):
        # The last proposal (after 3 results, above initial_trials=2) came from the model.
        info = search.study.last_info
        assert info["n_train"] == 3
        assert info["fitted"] is not None
        assert info["fallback"] is None


def test_methods_are_the_documented_ones() -> None:
    assert {"llmbo", "llmbo-no-token", "llmbo-bare", "standard-bo", "random", "tpe"} <= set(
        METHODS.names()
    )
    assert METHODS.get("llmbo-bare").prompt == "bare"
    with pytest.raises(InputError, match="Unknown search method"):
        METHODS.get("grid-search")


def test_failed_trials_are_stored_with_their_error_and_the_search_goes_on(
    tiny_task: LoraTask, tmp_path: Path
) -> None:
    # Two of the four configurations diverge (learning rate 1e10).
    space = LoraSearchSpace(
        grid={"r": [2, 4], "learning_rate": [1e-3, 1e10]},
        fixed={"alpha_ratio": 1, "lora_dropout": 0.0, "batch_size": 8},
    )
    # Two epochs on the whole training split: the second step of lr 1e10 gives a NaN loss.
    training = TrainingConfig(epochs=2, max_length=16)
    search = _search(
        tiny_task,
        tmp_path / "fail.db",
        space=space,
        method="random",
        training=training,
        proxy_fraction=1.0,
    )
    history = search.run(3)
    assert search.finished() == 3
    assert len(history) == 3
    assert set(history["state"]) <= {"complete", "failed"}
    failed = history[history["state"] == "failed"]
    complete = history[history["state"] == "complete"]
    # Only two configurations train: at least one of three trials failed, and no good
    # configuration ran twice.
    assert len(failed) >= 1
    assert len(complete) <= 2
    assert complete["candidate_id"].is_unique
    assert (complete["learning_rate"] == 1e-3).all()
    assert (failed["learning_rate"] == 1e10).all()
    for error in failed["error"]:
        assert error.startswith("trial failed")
        assert any(word in error for word in ("nan", "inf", "non-finite"))
    assert failed["value"].isna().all()
    best = search.best()
    assert best is None if complete.empty else best["learning_rate"] == 1e-3


def test_a_metric_that_returns_nan_fails_every_trial(tiny_task: LoraTask, tmp_path: Path) -> None:
    task = tiny_task.__class__(
        tiny_task.model,
        tiny_task.train,
        tiny_task.validation,
        tiny_task.test,
        metric=Metric("broken", lambda p, y: float("nan"), False),
    )
    search = _search(task, tmp_path / "nan.db", method="random")
    history = search.run(2)
    assert search.finished() == 2
    assert list(history["state"]) == ["failed", "failed"]
    assert all("'broken' returned nan" in e for e in history["error"])
    assert search.best() is None
    # Stored as failed: a second search on the file sees them and adds one more.
    again = _search(task, tmp_path / "nan.db", method="random")
    assert again.finished() == 2
    assert len(again.run(3)) == 3


def test_run_resumes_from_the_stored_study(tiny_task: LoraTask, tmp_path: Path) -> None:
    storage = tmp_path / "resume.db"
    first = _search(tiny_task, storage, method="tpe", study_name="resumed")
    first.run(2)
    before = _completed(first)
    assert len(before) == 2
    second = _search(tiny_task, storage, method="tpe", study_name="resumed")
    assert second.finished() == 2
    history = second.run(4)
    assert len(history) == 4
    after = _completed(second)
    assert len(after) == 4
    assert {k: after[k] for k in before} == before
    assert list(history["candidate_id"][:2]) == list(before)
    # Asking for what is already there runs nothing.
    assert len(second.run(3)) == 4


def test_reopening_with_another_method_is_refused(tiny_task: LoraTask, tmp_path: Path) -> None:
    storage = tmp_path / "other.db"
    _search(tiny_task, storage, method="random", study_name="s").run(1)
    with pytest.raises(StudyError):
        _search(tiny_task, storage, method="tpe", study_name="s")
    kept = _search(tiny_task, storage, method="random", study_name="s")
    assert kept.finished() == 1


def test_a_study_refuses_other_task_or_training_settings(
    tiny_task: LoraTask, tmp_path: Path
) -> None:
    storage = tmp_path / "settings.db"
    _search(tiny_task, storage, method="random", study_name="s").run(1)
    with pytest.raises(StudySettingsError, match="proxy_fraction"):
        _search(tiny_task, storage, method="random", study_name="s", proxy_fraction=0.5)
    with pytest.raises(StudySettingsError, match="training"):
        training = TrainingConfig(epochs=3, max_length=16)
        _search(tiny_task, storage, method="random", study_name="s", training=training)
    with pytest.raises(StudySettingsError, match="fixed"):
        space = LoraSearchSpace(grid=dict(SMALL_GRID), fixed={"weight_decay": 0.1})
        _search(tiny_task, storage, method="random", study_name="s", space=space)
    # Where and how long trials run does not change their values: accepted.
    runtime = TrainingConfig(epochs=1, max_length=16, time_limit=600, device="cpu")
    search = _search(tiny_task, storage, method="random", study_name="s", training=runtime)
    assert search.finished() == 1


def test_a_runner_of_ones_own_replaces_the_training(tiny_task: LoraTask, tmp_path: Path) -> None:
    calls: list[dict] = []

    def runner(task, params, training, *, proxy_fraction, evaluate_on="validation"):  # type: ignore[no-untyped-def]
        calls.append({**params, "proxy_fraction": proxy_fraction, "on": evaluate_on})
        if params["learning_rate"] == 1e-2:
            return TrialOutcome(None, "trial failed: too fast", 0.0)
        return TrialOutcome(params["r"] * params["learning_rate"], None, 0.0)

    search = _search(tiny_task, tmp_path / "runner.db", method="tpe", runner=runner)
    history = search.run(8)
    assert len(calls) == 8 == search.finished()
    assert all(c["proxy_fraction"] == 0.1 and c["on"] == "validation" for c in calls)
    done = history[history["state"] == "complete"]
    assert done["candidate_id"].is_unique
    assert list(done["value"]) == pytest.approx(list(done["r"] * done["learning_rate"]))
    failed = history[history["state"] == "failed"]
    assert (failed["learning_rate"] == 1e-2).all()
    assert (failed["error"] == "trial failed: too fast").all()
    assert len(done) + len(failed) == 8
    final = search.evaluate_best()
    assert final is not None and final.ok
    assert calls[-1]["on"] == "test" and calls[-1]["proxy_fraction"] == 1.0


def test_bad_arguments_are_refused(tiny_task: LoraTask) -> None:
    with pytest.raises(InputError, match="proxy_fraction"):
        _search(tiny_task, None, method="random", proxy_fraction=0)
    with pytest.raises(InputError, match="initial_trials"):
        _search(tiny_task, None, method="random", initial_trials=0)
    with pytest.raises(InputError, match="Unknown search method"):
        _search(tiny_task, None, method="bogus")
    search = _search(tiny_task, None, method="random")
    with pytest.raises(InputError, match="n_trials"):
        search.run(-1)
    with pytest.raises(InputError, match="workers"):
        search.run(1, workers=0)
    assert search.finished() == 0


def _config_loss(
    task: LoraTask, params: dict, training: TrainingConfig, *, proxy_fraction: float
) -> TrialOutcome:
    """A cheap, deterministic trial of one's own (the ``runner`` hook): no training."""
    lr = abs(math.log10(params["learning_rate"]) + 3)
    return TrialOutcome(params["r"] / 8 + lr + params["batch_size"] / 16, None, 0.0)


@pytest.mark.parametrize("method", ["random", "tpe"])
def test_same_seed_and_method_give_the_same_candidates(
    method: str, tiny_task: LoraTask, tmp_path: Path
) -> None:
    n = 12  # past TPE's 10 random start-up trials
    runs = [
        list(
            _search(
                tiny_task, tmp_path / f"{i}.db", method=method, seed=7, runner=_config_loss
            ).run(n)["candidate_id"]
        )
        for i in range(2)
    ]
    assert runs[0] == runs[1]
    assert len(set(runs[0])) == n
    # The seed matters: another one suggests other configurations.
    other = _search(tiny_task, None, method=method, seed=8, runner=_config_loss).run(n)
    assert list(other["candidate_id"]) != runs[0]


_KILLED_RUN = """
import sys
from llmbo.hpo import LoraSearch, LoraSearchSpace, LoraTask, TrainingConfig
data, model, storage = sys.argv[1:4]
task = LoraTask.from_file(data, model=model, kind="regression", fractions=(0.6, 0.2, 0.2))
grid = {grid!r}
search = LoraSearch(task, LoraSearchSpace(grid=grid), method="random",
                    training=TrainingConfig(epochs=1, max_length=16), storage=storage,
                    study_name="killed")
search.run(30)
"""


def _stored_complete(storage: Path) -> dict[str, float] | None:
    """Completed trials of study 'killed' read without writing (``None`` before it exists)."""
    if not storage.exists():
        return None
    try:
        stored = get_storage(str(storage), readonly=True)
        if "killed" not in stored.study_names():
            return None
        record = stored.load_study("killed")
        trials = stored.trials(record.study_id, states=[TrialState.COMPLETE])
    except StudyError:  # caught mid-creation
        return None
    return {t.candidate_id: float(t.value) for t in trials}  # type: ignore[arg-type]


def test_a_killed_search_resumes_without_losing_or_repeating_trials(
    tiny_model: str, tmp_path: Path
) -> None:
    data = tmp_path / "tiny.csv"
    tiny_frame().to_csv(data, index=False)
    storage = tmp_path / "killed.db"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_RUN.format(grid=SMALL_GRID),
            str(data),
            tiny_model,
            str(storage),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            done = _stored_complete(storage)
            if done is not None and len(done) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail(f"the search ended early: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the search stored no 2 trials in 240 s")
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()  # type: ignore[union-attr]
    assert proc.returncode == -signal.SIGKILL
    before = _stored_complete(storage)
    assert before is not None and len(before) >= 2

    task = LoraTask.from_file(data, model=tiny_model, kind="regression", fractions=(0.6, 0.2, 0.2))
    search = _search(task, storage, method="random", study_name="killed")
    assert search.finished() == len(before)
    target = len(before) + 2
    history = search.run(target)
    after = _completed(search)
    assert search.finished() == target
    assert len(after) == target
    assert {k: after[k] for k in before} == before  # every earlier result kept as it was
    complete = history[history["state"] == "complete"]
    assert complete["candidate_id"].is_unique  # nothing evaluated twice
    # Nothing is left pending: a suggestion the killed run held was released.
    assert not search.study.trials([TrialState.PENDING, TrialState.RUNNING])
    released = history[history["state"] == "failed"]
    assert all(e == "released" for e in released["error"]), released["error"].tolist()
    assert isinstance(history, pd.DataFrame)
