"""``TPEProposer``: Optuna TPE over a table's columns, always on available rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmbo.errors import InputError, StudyError
from llmbo.proposers import Observations, TPEProposer, proposer_from_config
from llmbo.space import CandidateSpace
from llmbo.study import Study

pytest.importorskip("optuna", reason="optuna is not installed (pip install 'llmbo[hpo]')")

GRID = {"r": [2, 4, 8, 16], "lr": [1e-4, 1e-3, 1e-2], "act": ["relu", "gelu", "tanh"]}


@pytest.fixture(scope="module")
def space() -> CandidateSpace:
    return CandidateSpace.from_grid(GRID, "r={r} lr={lr} act={act}")  # 36 rows


def _observed(space: CandidateSpace, measured: list[int], pending: list[int] = ()) -> Observations:
    frame = space.frame
    values = (
        -np.abs(np.log10(frame["lr"].to_numpy()[measured]) + 3)
        + frame["r"].to_numpy()[measured] / 16
    )
    taken = set(measured) | set(pending)
    return Observations(
        index=np.asarray(measured, dtype=np.int64),
        values=values.astype(np.float64),
        pending=np.asarray(pending, dtype=np.int64),
        available=np.asarray([i for i in range(len(space)) if i not in taken], dtype=np.int64),
    )


@pytest.mark.parametrize("n_measured", [0, 3, 14])  # random start-up, then TPE modelling
def test_proposes_distinct_available_rows(space: CandidateSpace, n_measured: int) -> None:
    observed = _observed(space, list(range(0, 2 * n_measured, 2)), pending=[1, 3])
    proposal = TPEProposer(n_startup_trials=4).propose(space, observed, 5, seed=3)
    assert len(proposal.index) == 5
    assert len(set(proposal.index)) == 5
    assert set(proposal.index) <= set(observed.available.tolist())
    assert all(isinstance(i, int) for i in proposal.index)
    assert proposal.info["n_train"] == n_measured
    assert isinstance(proposal.info["misses"], int)


def test_never_proposes_measured_or_pending_rows(space: CandidateSpace) -> None:
    measured = list(range(0, 36, 3))  # 12 measured
    pending = [1, 4, 7, 10]
    observed = _observed(space, measured, pending)
    free = set(observed.available.tolist())
    assert len(free) == 20
    # Asking for every free row gives exactly the free rows.
    proposal = TPEProposer(n_startup_trials=2).propose(space, observed, 20, seed=0)
    assert sorted(proposal.index) == sorted(free)
    for seed in range(8):
        chosen = TPEProposer(n_startup_trials=2).propose(space, observed, 3, seed=seed).index
        assert not set(chosen) & (set(measured) | set(pending))


def test_is_deterministic_per_seed(space: CandidateSpace) -> None:
    observed = _observed(space, [0, 5, 9, 14, 20, 27, 33, 35], pending=[2])
    proposer = TPEProposer(n_startup_trials=3)
    first = proposer.propose(space, observed, 4, seed=11).index
    assert TPEProposer(n_startup_trials=3).propose(space, observed, 4, seed=11).index == first
    assert proposer.propose(space, observed, 4, seed=11).index == first
    others = {tuple(proposer.propose(space, observed, 4, seed=s).index) for s in range(12, 18)}
    assert others != {tuple(first)}


def test_combinations_the_table_lacks_are_never_proposed() -> None:
    # Only half of the 4 x 4 combinations exist; TPE's other picks are misses.
    frame = pd.DataFrame([{"a": a, "b": b} for a in range(4) for b in range(4) if (a + b) % 2 == 0])
    table = CandidateSpace(frame, "{a}-{b}")
    observed = _observed_plain(table, [0, 1])
    misses = 0
    for seed in range(5):
        proposal = TPEProposer(n_startup_trials=1, max_misses=200).propose(
            table, observed, 3, seed=seed
        )
        assert set(proposal.index) <= set(observed.available.tolist())
        assert len(set(proposal.index)) == 3
        misses += proposal.info["misses"]
    assert misses > 0  # TPE did pick combinations the table lacks, and they were skipped
    # With no misses allowed, the rest of the batch is random (still available rows).
    proposal = TPEProposer(n_startup_trials=1, max_misses=0).propose(table, observed, 6, seed=0)
    assert sorted(proposal.index) == sorted(observed.available.tolist())
    assert proposal.info["misses"] <= 1


def _observed_plain(space: CandidateSpace, measured: list[int]) -> Observations:
    return Observations(
        index=np.asarray(measured, dtype=np.int64),
        values=np.arange(len(measured), dtype=np.float64),
        pending=np.empty(0, dtype=np.int64),
        available=np.asarray([i for i in range(len(space)) if i not in measured], np.int64),
    )


def test_columns_choose_what_tpe_models(space: CandidateSpace) -> None:
    observed = _observed(space, [0, 1, 2])
    proposal = TPEProposer(["r", "lr"]).propose(space, observed, 4, seed=0)
    assert len(set(proposal.index)) == 4
    with pytest.raises(InputError, match=r"\['depth'\]"):
        TPEProposer(["r", "depth"]).propose(space, observed, 1, seed=0)


def test_config_round_trips(space: CandidateSpace) -> None:
    proposer = TPEProposer(["r", "act"], n_startup_trials=3, max_misses=7)
    config = proposer.config()
    assert config == {
        "name": "tpe",
        "columns": ["r", "act"],
        "n_startup_trials": 3,
        "max_misses": 7,
    }
    again = proposer_from_config(config)
    assert isinstance(again, TPEProposer)
    assert again.config() == config
    observed = _observed(space, [3, 8, 13, 21])
    assert (
        again.propose(space, observed, 3, seed=5).index
        == proposer.propose(space, observed, 3, seed=5).index
    )
    assert proposer_from_config({"name": "tpe"}).config() == TPEProposer().config()
    with pytest.raises(StudyError, match="no settings"):
        proposer_from_config({**config, "gamma": 0.2})


def test_a_study_with_tpe_never_repeats_a_candidate(space: CandidateSpace, tmp_path) -> None:
    storage = str(tmp_path / "tpe.db")
    study = Study(space, TPEProposer(n_startup_trials=3), seed=1, storage=storage, progress=False)
    frame = space.frame.set_index(pd.Index(space.ids))
    for _ in range(14):
        (cid,) = study.ask(1)
        row = frame.loc[cid]
        study.tell(cid, float(row["r"]) - abs(np.log10(row["lr"]) + 3))
    history = study.history
    assert len(history) == 14
    assert history["candidate_id"].is_unique
    # Reopened from its file, the proposer is rebuilt from the stored config.
    again = Study(space, TPEProposer(n_startup_trials=3), seed=1, storage=storage, progress=False)
    assert len(again.history) == 14
    with pytest.raises(StudyError):
        Study(space, TPEProposer(n_startup_trials=4), seed=1, storage=storage, progress=False)
