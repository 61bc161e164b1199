"""``WarmStartProposer``: the first ``n_initial`` trials from one proposer, then another;
stored in a study and rebuilt from it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from llmbo.errors import InputError, StudyError
from llmbo.optimizer import Optimizer
from llmbo.proposers import (
    BayesianProposer,
    LLMProposer,
    Observations,
    Proposal,
    Proposer,
    RandomProposer,
    WarmStartProposer,
    proposer_from_config,
)
from llmbo.space import CandidateSpace
from llmbo.study import Study
from llmbo.surrogates.config import surrogate_config
from llmbo.testing.chat import ScriptedScorer  # noqa: F401  (registers "scripted-scorer")

GRID = {"color": ["red", "green", "blue"], "animal": ["cat", "fox", "owl", "yak"]}


class Lowest(Proposer):
    """The lowest available rows (so which proposer chose is visible)."""

    name = "lowest"

    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        self.seen = observed
        return Proposal(sorted(observed.available.tolist())[:n], {"from": "lowest"})

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


class Highest(Lowest):
    name = "highest"

    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        self.seen = observed
        return Proposal(sorted(observed.available.tolist())[::-1][:n], {"from": "highest"})


@pytest.fixture(scope="module")
def space() -> CandidateSpace:
    return CandidateSpace.from_grid(GRID, "{color} {animal}")  # 12 rows


def _observed(n: int, measured: list[int], pending: list[int] = ()) -> Observations:
    taken = set(measured) | set(pending)
    return Observations(
        index=np.asarray(measured, dtype=np.int64),
        values=np.arange(len(measured), dtype=np.float64),
        pending=np.asarray(pending, dtype=np.int64),
        available=np.asarray([i for i in range(n) if i not in taken], dtype=np.int64),
    )


def test_phases(space: CandidateSpace) -> None:
    warm = WarmStartProposer(Lowest(), Highest(), n_initial=4)
    first = warm.propose(space, _observed(12, []), 3, seed=0)
    assert first.index == [0, 1, 2] and first.info["phase"] == "initial"
    # Measured and pending trials both count: 2 + 1 leaves one for the initial design.
    both = warm.propose(space, _observed(12, [0, 1], [2]), 3, seed=0)
    assert both.index == [3, 11, 10] and both.info["phase"] == "both"
    assert both.info["initial"] == {"from": "lowest"} and both.info["from"] == "highest"
    # ``then`` saw the initial design's row as pending, not available.
    seen = warm.then.seen  # type: ignore[attr-defined]
    assert 3 in seen.pending.tolist() and 3 not in seen.available.tolist()
    later = warm.propose(space, _observed(12, [0, 1, 2, 3]), 2, seed=0)
    assert later.index == [11, 10] and later.info["phase"] == "then"


def test_config_round_trip_and_runtime_settings() -> None:
    spec = surrogate_config("onehot")
    warm = WarmStartProposer(
        LLMProposer("scripted-scorer", {"replies": ["red cat"]}, max_shown=5),
        BayesianProposer(spec, min_observations=3),
        n_initial=6,
    )
    config = warm.config()
    assert config["name"] == "warm_start" and config["n_initial"] == 6
    assert config["initial"]["name"] == "llm" and config["then"]["name"] == "bayesian"
    rebuilt = proposer_from_config(config)
    assert isinstance(rebuilt, WarmStartProposer) and rebuilt.config() == config
    assert "initial.backend_options.device" in warm.runtime_settings
    assert warm.spec == spec and warm.label == "onehot"
    with pytest.raises(StudyError, match="no settings"):
        proposer_from_config({**config, "extra": 1})
    with pytest.raises(InputError, match="n_initial"):
        WarmStartProposer(RandomProposer(), RandomProposer(), n_initial=-1)


def test_study_with_llm_warm_start_reopens(space: CandidateSpace, tmp_path: Any) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    warm = WarmStartProposer(
        LLMProposer("scripted-scorer", {"replies": ["blue owl\nred yak"]}),
        RandomProposer(),
        n_initial=2,
    )
    study = Study(space, warm, seed=3, storage=db, study_name="w")
    ids = study.ask(2)
    assert [space.text(i) for i in ids] == ["blue owl", "red yak"]
    assert study.last_info["phase"] == "initial" and study.last_info["random_fill"] == 0
    study.tell(ids, [1.0, 2.0])
    # Reopened from storage: the stored config rebuilds the same proposer.
    opt = Optimizer.load(db, "w", progress=False)
    assert isinstance(opt.proposer, WarmStartProposer)
    assert opt.proposer.config() == warm.config()
    assert len(opt.ask(2)) == 2 and opt.last_info["phase"] == "then"
    # The same settings reopen it; others are refused.
    Study(space, warm, seed=3, storage=db, study_name="w")
    other = WarmStartProposer(warm.initial, RandomProposer(), n_initial=3)
    with pytest.raises(StudyError, match="n_initial"):
        Study(space, other, seed=3, storage=db, study_name="w")
