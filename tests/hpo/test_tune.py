"""``LlmboSearcher`` inside a real Ray Tune ``Tuner``; save/restore; trials without a metric."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmbo.hpo import LoraSearchSpace
from llmbo.storage import TrialState, get_storage

from .conftest import SMALL_GRID

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'llmbo[hpo]')")
pytest.importorskip("ray.tune", reason="ray[tune] is not installed (pip install 'llmbo[hpo]')")

from llmbo.hpo.tune import LlmboSearcher  # noqa: E402

STUDY = "tune-lora-tpe"


def loss_of(config: dict) -> float:
    """The cheap 'training' of the Tuner test (also inlined in its trainable)."""
    return config["r"] + 100 * config["learning_rate"] + config["batch_size"] / 100


def _searcher(storage: str | None, **kwargs: object) -> LlmboSearcher:
    return LlmboSearcher.for_lora(
        LoraSearchSpace(grid=dict(SMALL_GRID)),
        method="tpe",
        storage=storage,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def local_ray() -> Iterator[None]:
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_tuner_runs_the_search_and_the_study_keeps_every_result(
    local_ray: None, tmp_path: Path
) -> None:
    from ray import tune

    storage = str(tmp_path / "t.db")
    searcher = _searcher(storage, metric="loss", mode="min")

    def trainable(config: dict) -> None:
        # Inlined (no module globals): Ray pickles this function by value.
        loss = config["r"] + 100 * config["learning_rate"] + config["batch_size"] / 100
        tune.report({"loss": loss})

    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=6),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "ray-results"), verbose=0),
    )
    results = tuner.fit()
    assert results.num_errors == 0
    assert len(results) == 6
    reported = sorted(r.metrics["loss"] for r in results)

    # The study file holds the six results, one per distinct configuration.
    stored = get_storage(storage, readonly=True)
    assert STUDY in stored.study_names()
    record = stored.load_study(STUDY)
    trials = stored.trials(record.study_id)
    assert len(trials) == 6
    assert all(t.state is TrialState.COMPLETE for t in trials), [t.error for t in trials]
    assert len({t.candidate_id for t in trials}) == 6
    assert sorted(t.value for t in trials) == pytest.approx(reported)
    space = searcher.space
    for t in trials:
        row = space.rows([t.candidate_id]).iloc[0]
        assert t.value == pytest.approx(loss_of(row.to_dict()))
    # Each Tune config was a configuration of the grid, with plain values.
    configs = [r.config for r in results]
    assert all(set(c) == set(SMALL_GRID) for c in configs)
    assert all(isinstance(c["r"], int) and c["r"] in SMALL_GRID["r"] for c in configs)
    assert len({tuple(sorted(c.items())) for c in configs}) == 6

    # Saved and restored into a new searcher, the study goes on with the same trials.
    checkpoint = tmp_path / "searcher.json"
    searcher.save(str(checkpoint))
    restored = _searcher(None)
    restored.restore(str(checkpoint))
    assert restored.metric == "loss" and restored.mode == "min"
    before = {t.candidate_id: t.value for t in restored.study.trials([TrialState.COMPLETE])}
    assert before == {t.candidate_id: t.value for t in trials}
    config = restored.suggest("next")
    assert config is not None
    cid = restored.live["next"]
    assert cid not in before
    restored.on_trial_complete("next", {"loss": loss_of(config)})
    assert len(restored.study.trials([TrialState.COMPLETE])) == 7


def test_a_running_trial_survives_save_and_restore(tmp_path: Path) -> None:
    storage = str(tmp_path / "live.db")
    searcher = _searcher(storage, metric="loss", mode="min")
    config = searcher.suggest("trial-a")
    assert set(config) == set(SMALL_GRID)
    cid = searcher.live["trial-a"]
    assert [t.candidate_id for t in searcher.study.trials([TrialState.PENDING])] == [cid]
    # While it runs, it is not suggested again.
    searcher.suggest("trial-b")
    assert searcher.live["trial-b"] != cid

    checkpoint = tmp_path / "searcher.json"
    searcher.save(str(checkpoint))
    restored = _searcher(None)
    restored.restore(str(checkpoint))
    assert restored.live == searcher.live
    restored.on_trial_complete("trial-a", {"loss": 1.25})
    done = restored.study.trials([TrialState.COMPLETE])
    assert [(t.candidate_id, t.value) for t in done] == [(cid, 1.25)]
    assert "trial-a" not in restored.live


def test_trials_without_a_usable_metric_are_stored_failed(tmp_path: Path) -> None:
    storage = str(tmp_path / "fail.db")
    searcher = _searcher(storage, metric="loss", mode="min")
    searcher.suggest("no-metric")
    searcher.suggest("errored")
    searcher.suggest("not-a-number")
    searcher.on_trial_complete("no-metric", {"accuracy": 0.9})
    searcher.on_trial_complete("errored", None, error=True)
    searcher.on_trial_complete("not-a-number", {"loss": float("nan")})
    failed = searcher.study.trials([TrialState.FAILED])
    assert len(failed) == 3
    assert not searcher.study.trials([TrialState.COMPLETE, TrialState.PENDING])
    errors = sorted(t.error for t in failed)  # type: ignore[type-var]
    assert any("no-metric reported no 'loss'" in e for e in errors), errors
    assert any("errored errored in Ray Tune" in e for e in errors), errors
    assert any("not-a-number reported nan" in e for e in errors), errors
    assert searcher.live == {}
    # A completion for a trial the searcher never suggested changes nothing.
    searcher.on_trial_complete("unknown", {"loss": 1.0})
    assert len(searcher.study.trials()) == 3


def test_a_searcher_finishes_when_every_configuration_was_tried() -> None:
    from ray.tune.search import Searcher

    searcher = LlmboSearcher.for_lora(
        LoraSearchSpace(grid={"r": [2, 4], "learning_rate": [1e-3]}),
        method="random",
        metric="loss",
        mode="min",
    )
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert {first["r"], second["r"]} == {2, 4}
    assert first["learning_rate"] == second["learning_rate"] == 1e-3
    assert searcher.suggest("c") == Searcher.FINISHED
    assert "c" not in searcher.live


def test_a_searcher_needs_a_metric_and_mode() -> None:
    from llmbo.errors import InputError

    with pytest.raises(InputError, match="mode must be 'min' or 'max'"):
        _searcher(None, metric="loss", mode="lowest")
    searcher = _searcher(None)
    with pytest.raises(InputError, match="needs metric and mode"):
        searcher.suggest("t")
    # Tune hands them over when the searcher has none.
    assert searcher.set_search_properties("loss", "max", {})
    assert searcher.suggest("t") is not None
    assert searcher.study.maximize


def test_restore_continues_a_study_given_as_a_path(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path / "path.db", metric="loss", mode="min")  # type: ignore[arg-type]
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"loss": 2.0})
    checkpoint = tmp_path / "searcher.json"
    searcher.save(str(checkpoint))
    restored = _searcher(None)
    restored.restore(str(checkpoint))
    assert len(restored.study.trials([TrialState.COMPLETE])) == 1
