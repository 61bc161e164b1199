"""A campaign continued across processes with suggestions still pending suggests exactly
what one process would.

``tests/cli/test_study.py`` compares continued campaigns only after every suggestion was
observed. Here a suggestion is still pending when the next one is made: each step is its
own ``python -m llmbo`` process (``suggest -n 3`` -> ``observe`` 2 of them -> ``suggest
-n 2``), and the result is compared with the same steps in one process through the library
(``Optimizer.ask(3)``, ``tell`` 2, ``ask(2)``), same table, seed and settings. The
``onehot`` surrogate keeps it fast while the last suggestion comes from a fitted GP (two
observations reach the default ``min_observations``) whose acquisition sees the pending
candidate, not from a random pick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from conftest import pool_table
from llmbo.optimizer import Optimizer
from llmbo.space import CandidateSpace
from llmbo.storage import TrialState, get_storage

TEMPLATE = "{color} {animal} in the {place}"
SEED = 7


def _llmbo(*args: str | Path | int) -> str:
    """One ``python -m llmbo ...`` call in a fresh process; returns its output."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "llmbo", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _suggest(study: Path, out: Path, n: int, *extra: str | Path | int) -> list[str]:
    _llmbo("suggest", "--study", study, "-n", n, "--out", out, "--no-progress", *extra)
    return pd.read_csv(out, dtype={"candidate_id": str})["candidate_id"].tolist()


def _observe(study: Path, path: Path, ids: list[str], truth: dict[str, float]) -> None:
    pd.DataFrame({"candidate_id": ids, "value": [truth[i] for i in ids]}).to_csv(path, index=False)
    _llmbo("observe", "--study", study, "--results", path)


def _states(store_or_opt: object, study_name: str | None = None) -> list[tuple[str, str]]:
    if isinstance(store_or_opt, Optimizer):
        trials = store_or_opt.storage.trials(store_or_opt.study.study_id)
    else:
        store = get_storage(store_or_opt)  # type: ignore[arg-type]
        trials = store.trials(store.load_study(study_name or "default").study_id)
    return [(t.candidate_id, t.state.name) for t in trials]


@dataclass
class Campaign:
    """The first two steps, each in its own process: suggest 3, then observe 2 of them."""

    table: Path
    study: Path
    truth: dict[str, float]
    first: list[str]

    def continued(self, tmp_path: Path, *extra: str) -> tuple[Path, list[str]]:
        """The third step, ``suggest -n 2`` in a fresh process, on a copy of the study."""
        study = tmp_path / "campaign.db"
        shutil.copy(self.study, study)
        return study, _suggest(study, tmp_path / "second.csv", 2, *extra)

    def reference(self) -> Optimizer:
        """The first two steps in this process, through the library."""
        space = CandidateSpace.from_file(self.table, TEMPLATE, id_column="id")
        opt = Optimizer(space, "onehot", seed=SEED, progress=False)
        assert opt.ask(3) == self.first
        opt.tell(self.first[:2], [self.truth[i] for i in self.first[:2]])
        return opt


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Campaign:
    root = tmp_path_factory.mktemp("continuation")
    table = pool_table(root / "pool.csv", seed=4)
    truth = dict(pd.read_csv(table, dtype={"id": str})[["id", "y"]].itertuples(index=False))
    study = root / "campaign.db"
    create = ["--table", table, "--template", TEMPLATE, "--id-column", "id"]
    first = _suggest(study, root / "first.csv", 3, *create, "--surrogate", "onehot", "--seed", SEED)
    _observe(study, root / "measured.csv", first[:2], truth)
    return Campaign(table, study, truth, first)


def _check_fitted(opt: Optimizer) -> None:
    """The last suggestion came from a GP fitted to the two observations, not at random."""
    assert opt.min_observations == 2 and opt.last_fit["n_train"] == 2
    assert opt.last_fit["fitted"] is not None and opt.last_fit["fallback"] is None


def test_pending_suggestion_continues_across_processes(campaign: Campaign, tmp_path: Path) -> None:
    study, second = campaign.continued(tmp_path)
    reference = campaign.reference()
    expected = reference.ask(2)
    _check_fitted(reference)
    assert second == expected
    pending = campaign.first[2]
    assert pending not in second  # still pending: never suggested again
    assert _states(f"sqlite:///{study}") == _states(reference)
    assert (pending, TrialState.PENDING.name) in _states(reference)


def test_released_suggestion_continues_across_processes(campaign: Campaign, tmp_path: Path) -> None:
    """The same, with the third call releasing the pending suggestion first."""
    study, second = campaign.continued(tmp_path, "--release-pending")
    reference = campaign.reference()
    assert reference.release_pending() == [campaign.first[2]]
    expected = reference.ask(2)
    _check_fitted(reference)
    assert second == expected
    assert _states(f"sqlite:///{study}") == _states(reference)
