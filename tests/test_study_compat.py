"""Studies written by llmbo 0.1.0 (before proposers and per-surrogate configs) still open.

``tests/data/study_v0_1_0.db`` was written by llmbo at commit e1ce698 on a 64-candidate
table (columns ``color``, ``animal``, ``y``; ids ``x000``..``x063``) with three studies:
``components`` (seed 3; x000..x003 told, x031 and x057 pending), ``lora`` (seed 5,
minimised, UCB, segment pooling, a one-hot side kernel, the noise prior, LoRA on the
output block; x010 and x011 told) and ``random`` (seed 0; x020 told, x036 pending). The
expected suggestions were produced by that same commit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmbo.optimizer import Optimizer
from llmbo.proposers import BayesianProposer, RandomProposer

OLD = Path(__file__).resolve().parent / "data" / "study_v0_1_0.db"


@pytest.fixture
def old_study(tmp_path: Path) -> str:
    copy = tmp_path / "old.db"
    shutil.copyfile(OLD, copy)
    return str(copy)


def test_old_studies_keep_their_trials_and_settings(old_study: str) -> None:
    comp = Optimizer.load(old_study, "components", progress=False)
    assert isinstance(comp.proposer, BayesianProposer)
    assert comp.surrogate_name == "components" and comp.seed == 3
    assert comp.history["state"].tolist() == ["complete"] * 4 + ["pending"] * 2
    lora = Optimizer.load(old_study, "lora", progress=False, check_model=False)
    assert not lora.maximize and lora.acquisition.name == "ucb"
    assert lora.proposer.config()["surrogate"]["side_features"] == "onehot"
    rand = Optimizer.load(old_study, "random", progress=False)
    assert isinstance(rand.proposer, RandomProposer)


def test_old_studies_suggest_what_they_suggested_before(old_study: str) -> None:
    assert Optimizer.load(old_study, "components", progress=False).ask(2) == ["x049", "x025"]
    assert Optimizer.load(old_study, "random", progress=False).ask(3) == ["x004", "x011", "x016"]


def test_old_study_reopened_with_its_settings_by_name(old_study: str) -> None:
    opened = Optimizer.load(old_study, "random", progress=False)
    again = Optimizer(opened.space, "random", seed=0, storage=old_study, study_name="random")
    assert again.history["candidate_id"].tolist() == ["x020", "x036"]
