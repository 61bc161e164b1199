"""``BayBEProposer``: a real BayBE campaign over a tiny pool of SMILES combinations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmbo.errors import InputError, StudyError
from llmbo.proposers import BayBEProposer, Observations, proposer_from_config
from llmbo.space import CandidateSpace
from llmbo.study import Study

pytest.importorskip("baybe", reason="baybe is not installed (pip install 'llmbo[peers]')")

ALCOHOLS = ["CCO", "CCCO", "c1ccccc1O"]
ACIDS = ["CC(=O)O", "OC(=O)c1ccccc1", ""]  # "": no acid (an empty SMILES)
BASES = ["K2CO3", "Et3N"]
BEST = "c1ccccc1O"  # the alcohol that makes every row good


@pytest.fixture(scope="module")
def space() -> CandidateSpace:
    rows = [
        {"alcohol": a, "acid": c, "base": b, "value": (10.0 if a == BEST else 0.0) + i % 3}
        for i, (a, c, b) in enumerate((a, c, b) for a in ALCOHOLS for c in ACIDS for b in BASES)
    ]
    return CandidateSpace(pd.DataFrame(rows[:-1]), "{alcohol}.{acid} {base}")  # 17 rows


@pytest.fixture(scope="module")
def proposer() -> BayBEProposer:
    return BayBEProposer(["alcohol", "acid"], ["base"])


def _observed(
    space: CandidateSpace, measured: list[int], pending: list[int] = (), sign: float = 1.0
) -> Observations:
    taken = set(measured) | set(pending)
    return Observations(
        index=np.asarray(measured, dtype=np.int64),
        values=sign * space.frame["value"].to_numpy(dtype=np.float64)[measured],
        pending=np.asarray(pending, dtype=np.int64),
        available=np.asarray([i for i in range(len(space)) if i not in taken], dtype=np.int64),
    )


# One good row (a BEST alcohol) and several others measured.
MEASURED = [0, 3, 7, 12, 13, 15]


def test_proposes_distinct_available_rows(space: CandidateSpace, proposer: BayBEProposer) -> None:
    observed = _observed(space, MEASURED, pending=[1, 14])
    proposal = proposer.propose(space, observed, 3, seed=0)
    assert len(proposal.index) == len(set(proposal.index)) == 3
    assert set(proposal.index) <= set(observed.available.tolist())
    assert all(isinstance(i, int) for i in proposal.index)
    assert proposal.info == {"n_train": len(MEASURED), "misses": 0}


def test_is_deterministic_per_seed(space: CandidateSpace, proposer: BayBEProposer) -> None:
    observed = _observed(space, [0, 7])  # few points: BayBE's model is uncertain
    first = proposer.propose(space, observed, 2, seed=5).index
    assert (
        BayBEProposer(["alcohol", "acid"], ["base"]).propose(space, observed, 2, seed=5).index
        == first
    )
    # The global generators are left as they were.
    state = np.random.get_state()[1].copy()
    proposer.propose(space, observed, 2, seed=6)
    assert np.array_equal(np.random.get_state()[1], state)


def test_without_measurements_proposes_at_random(
    space: CandidateSpace, proposer: BayBEProposer
) -> None:
    observed = _observed(space, [])
    picks = {tuple(proposer.propose(space, observed, 2, seed=s).index) for s in range(4)}
    assert len(picks) > 1
    assert proposer.propose(space, observed, 2, seed=1).index == list(
        proposer.propose(space, observed, 2, seed=1).index
    )


@pytest.mark.parametrize("maximize", [True, False])
def test_follows_the_study_direction(space: CandidateSpace, maximize: bool) -> None:
    # Values are told as measured; the study orients them (negates when minimising).
    frame = space.frame
    values = frame["value"].to_numpy()
    study = Study(space, BayBEProposer(["alcohol", "acid"], ["base"]), maximize=maximize, seed=0)
    study.tell([space.ids[i] for i in MEASURED], [float(values[i]) for i in MEASURED])
    chosen = space.index_of(study.ask(2))
    best_alcohol = frame["alcohol"].to_numpy()[chosen] == BEST
    assert best_alcohol.all() if maximize else not best_alcohol.any()


def test_recommendations_outside_the_available_rows_are_misses(
    space: CandidateSpace, proposer: BayBEProposer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import baybe

    measured_labels = pd.DataFrame(
        [{"alcohol": "CCO", "acid": "CC(=O)O", "base": "K2CO3"}]  # row 0: measured
    )
    monkeypatch.setattr(baybe.Campaign, "recommend", lambda self, **kw: measured_labels)
    observed = _observed(space, MEASURED)
    proposal = proposer.propose(space, observed, 1, seed=0)
    assert proposal.info["misses"] == 1
    assert proposal.index[0] in set(observed.available.tolist())


def test_config_round_trip(proposer: BayBEProposer) -> None:
    config = proposer.config()
    assert config == {
        "name": "baybe",
        "smiles_columns": ["alcohol", "acid"],
        "columns": ["base"],
        "encoding": "ECFP",
    }
    assert proposer_from_config(config).config() == config
    with pytest.raises(StudyError, match="no settings"):
        proposer_from_config({**config, "kernel": "rbf"})


def test_bad_columns_are_refused(space: CandidateSpace) -> None:
    with pytest.raises(InputError, match="at least one"):
        BayBEProposer()
    with pytest.raises(InputError, match="both"):
        BayBEProposer(["acid"], ["acid"])
    observed = _observed(space, MEASURED)
    with pytest.raises(InputError, match="not in the table"):
        BayBEProposer(["solvent"]).propose(space, observed, 1, seed=0)
