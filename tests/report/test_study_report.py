"""Reports of stored studies: what is recorded at suggestion time, the figures, the HTML."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmbo import CandidateSpace, Optimizer
from llmbo.optimizer import TableObjective
from llmbo.report import (
    expected_random_best,
    interval_coverage,
    load_study_data,
    study_report_html,
)

pytest.importorskip("matplotlib")


def _screen() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        {"ligand": f"L{i}", "base": b, "solvent": f"S{s}",
         "y": float(i + 2 * (b == "DBU") + 0.5 * s + rng.normal(0, 0.1))}
        for i in range(5) for b in ("K2CO3", "DBU", "Cs2CO3") for s in range(4)
    ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "study.db"
    space = CandidateSpace(_screen(), "{ligand}, {base}, {solvent}")
    opt = Optimizer(space, "onehot", storage=path, study_name="s", seed=1, progress=False)
    opt.run(TableObjective(space, "y"), iterations=14)
    return path


def test_predictions_and_maps_are_recorded_when_suggesting(campaign: Path) -> None:
    data = load_study_data(str(campaign), "s")
    done = data.complete
    assert len(done) == 14
    # The pool's values are found in the table's `y` column.
    assert data.pool_values is not None and len(data.pool_values) == 60
    # Suggestions made by the model (not the random first two) carry a prediction.
    p = data.predictions
    assert 10 <= len(p) <= 12
    assert (p["lower"] <= p["mean"]).all() and (p["mean"] <= p["upper"]).all()
    measured = done.set_index("trial")["value"]
    assert np.allclose(p["value"], measured.loc[p["trial"]].to_numpy())
    inside = ((p["value"] >= p["lower"]) & (p["value"] <= p["upper"])).mean()
    assert interval_coverage(data) == pytest.approx(inside)
    assert set(data.maps) == {"before", "after"}
    after = data.maps["after"]
    assert len(after["ids"]) == 60 and len(after["scores"][0]) <= 8
    assert after["n_train"] == 13  # the latest fit: before the last suggestion


def test_the_html_has_every_section_and_the_studys_numbers(campaign: Path) -> None:
    data = load_study_data(str(campaign), "s")
    page = study_report_html(data)
    for title in ("Progress", "Calibration", "Feature map", "Trials"):
        assert f"<h2>{title}</h2>" in page
    assert "Parameters" not in page and "Catalyst" not in page
    assert page.count('<tr data-state="complete">') == 14
    best = data.complete["value"].max()
    assert f"{best:.6g} (trial" in page
    share = interval_coverage(data)
    assert f"{share:.0%} of {len(data.predictions)} measured values lie inside" in page
    images = re.findall(
        r'<img class="figure" alt="[^"]*" src="data:image/png;base64,([^"]+)"', page
    )
    assert len(images) == 3 and all(len(i) > 1000 for i in images)
    assert "http://" not in page and "https://" not in page  # opens offline


def test_expected_best_of_random_draws_matches_enumeration() -> None:
    from itertools import combinations

    pool = np.array([3.0, 1.0, 4.0, 1.5, 9.0, 2.6])
    for k in (1, 2, 3, 6):
        exact = np.mean([max(c) for c in combinations(pool, k)])
        assert expected_random_best(pool, k)[-1] == pytest.approx(exact)
        low = np.mean([min(c) for c in combinations(pool, k)])
        assert expected_random_best(pool, k, maximize=False)[-1] == pytest.approx(low)


def test_a_parameter_search_gets_parallel_coordinates_slices_and_importance(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    grid = pd.DataFrame(
        [{"lr": lr, "rank": r, "dropout": d} for lr in (1e-5, 1e-4, 1e-3, 1e-2)
         for r in (1, 4, 16, 64) for d in (0.0, 0.1)]
    )  # fmt: skip
    grid["loss"] = (np.log10(grid["lr"]) + 3) ** 2 + 0.01 * grid["rank"]
    space = CandidateSpace(grid, "lr={lr}, rank={rank}, dropout={dropout}")
    opt = Optimizer(space, "random", storage=tmp_path / "hpo.db", study_name="h", maximize=False,
                    progress=False)  # fmt: skip
    opt.run(TableObjective(space, "loss"), iterations=20)
    data = load_study_data(str(tmp_path / "hpo.db"), "h")
    assert data.kind == "search"
    page = study_report_html(data)
    assert "<h2>Parameters</h2>" in page
    assert page.count('alt="parallel coordinates"') == 1
    assert page.count('alt="value against each parameter"') == 1
    assert page.count('alt="parameter importance"') == 1
    importance = re.findall(r"<td>(lr|rank|dropout)</td>", page)
    assert sorted(importance) == ["dropout", "lr", "rank"]


def test_a_catalyst_run_shows_losses_restarts_and_proposals(tmp_path: Path) -> None:
    from llmbo.catalyst.record import CatalystRecord

    record = CatalystRecord(str(tmp_path / "cat.db"), "c", {"task": "t"}, maximize=True)
    for epoch, (tr, va) in enumerate([(1.0, 1.1), (0.8, 0.9), (0.7, 0.85)]):
        record.add("epoch", epoch=epoch, train_loss=tr, validation_loss=va,
                   validation_metric=1 - va, prompt="p", restarted=False)  # fmt: skip
    record.add("mentor", epoch=0, llm="scripted", messages=[], replies=["x"],
               proposals=["Judge the mood of the word"], rejected=[], error=None)  # fmt: skip
    record.add("restart", epoch=0, prompt="Judge the mood of the word", validation_loss=0.9)
    data = load_study_data(str(tmp_path / "cat.db"), "c")
    assert data.kind == "catalyst"
    page = study_report_html(data)
    assert "<h2>Catalyst: losses and the mentor</h2>" in page
    assert page.count("Judge the mood of the word") == 2  # the proposal and the restart
    assert 'alt="loss per epoch"' in page
