"""The ask/tell optimizer: suggestions, validation, history, seeds and stored studies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmbo.acquisition import AcquisitionConfig
from llmbo.encoders.base import Featurizer
from llmbo.encoders.transformer import EncoderConfig
from llmbo.errors import (
    InputError,
    ObjectiveValueError,
    PoolExhaustedError,
    StudyError,
    TrialStateError,
    UnknownCandidateError,
)
from llmbo.optimizer import Optimizer, TableObjective
from llmbo.space import CandidateSpace
from llmbo.surrogates import SurrogateConfig, surrogate_config
from llmbo.surrogates.deep_kernel import DeepKernelConfig
from llmbo.surrogates.feature_gp import FeatureGP

HISTORY_COLUMNS = [
    "trial",
    "candidate_id",
    "text",
    "state",
    "value",
    "created_at",
    "completed_at",
    "error",
]


class ColumnFeatures(Featurizer):
    """The numeric column ``x`` of the table as a 1-d feature."""

    def featurize(self, space: CandidateSpace) -> torch.Tensor:
        return torch.tensor(space.frame["x"].to_numpy(), dtype=torch.float64).unsqueeze(-1)


def grid_space(n: int = 41) -> CandidateSpace:
    xs = np.round(np.linspace(0.0, 1.0, n), 6)
    return CandidateSpace.from_grid({"x": list(xs)}, "x = {x:.3f}")


def quadratic(rows: pd.DataFrame) -> list[float]:
    return [(float(x) - 0.625) ** 2 for x in rows["x"]]


def gp_surrogate() -> FeatureGP:
    return FeatureGP(ColumnFeatures(), kernel="matern", name="x-gp")


@pytest.fixture
def small() -> CandidateSpace:
    return CandidateSpace.from_grid({"a": ["red", "blue", "green"], "b": [1, 2, 3, 4]}, "{a} {b}")


def random_optimizer(space: CandidateSpace, **kwargs: object) -> Optimizer:
    return Optimizer(space, "random", progress=False, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ ask
@pytest.mark.parametrize("surrogate", ["random", "gp"])
def test_ask_never_repeats_until_the_pool_is_exhausted(surrogate: str) -> None:
    space = grid_space(12)
    opt = Optimizer(
        space, gp_surrogate() if surrogate == "gp" else "random", progress=False, seed=1
    )
    seen: list[str] = []
    while len(seen) < len(space):
        batch = opt.ask(min(2, len(space) - len(seen)))
        assert not set(batch) & set(seen)
        assert len(set(batch)) == len(batch)
        seen.extend(batch)
        opt.tell(batch, quadratic(space.rows(batch)))
    assert sorted(seen) == sorted(space.ids)
    with pytest.raises(PoolExhaustedError) as info:
        opt.ask()
    assert "Asked for 1 candidate(s) but only 0 of 12 remain" in str(info.value)
    assert isinstance(info.value, InputError)


def test_pending_candidates_are_not_suggested_again(small: CandidateSpace) -> None:
    opt = random_optimizer(small, seed=4)
    first = opt.ask(5)
    second = opt.ask(5)
    assert not set(first) & set(second)
    history = opt.history
    assert list(history["state"]) == ["pending"] * 10
    assert history["value"].isna().all()
    with pytest.raises(PoolExhaustedError) as info:
        opt.ask(3)
    assert "only 2 of 12 remain" in str(info.value)
    assert "10 pending" in str(info.value)
    # Telling some of them frees nothing: told candidates stay taken.
    opt.tell(first, [1.0] * 5)
    assert sorted(opt.ask(2) + first + second) == sorted(small.ids)


def test_failed_suggestions_can_be_suggested_again(small: CandidateSpace) -> None:
    opt = random_optimizer(small, seed=0)
    taken = opt.ask(11)
    (last,) = [i for i in small.ids if i not in taken]
    opt.fail(taken[:3], "instrument broke")
    again = opt.ask(4)
    assert set(again) == {last, *taken[:3]}
    states = opt.history.groupby("state").size().to_dict()
    assert states == {"failed": 3, "pending": 12}
    failed = opt.history[opt.history["state"] == "failed"]
    assert set(failed["error"]) == {"instrument broke"}


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", None])
def test_ask_needs_a_positive_integer(small: CandidateSpace, n: object) -> None:
    opt = random_optimizer(small)
    with pytest.raises(InputError, match="positive integer"):
        opt.ask(n)  # type: ignore[arg-type]


def test_ask_accepts_numpy_integers(small: CandidateSpace) -> None:
    assert len(random_optimizer(small).ask(np.int64(3))) == 3  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- tell
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (-float("inf"), "finite"),
        ("high", "not a number"),
        (None, "not a number"),
        (True, "boolean"),
    ],
)
def test_tell_rejects_bad_values_and_writes_nothing(
    small: CandidateSpace, value: object, error: str
) -> None:
    opt = random_optimizer(small)
    ids = opt.ask(2)
    with pytest.raises(ObjectiveValueError, match=error):
        opt.tell(ids, [1.0, value])  # type: ignore[list-item]
    assert list(opt.history["state"]) == ["pending", "pending"]


def test_tell_rejects_unknown_ids_before_writing(small: CandidateSpace) -> None:
    opt = random_optimizer(small)
    with pytest.raises(UnknownCandidateError, match="'c-unknown'"):
        opt.tell([small.ids[0], "c-unknown"], [1.0, 2.0])
    assert opt.history.empty


def test_tell_length_and_shape_checks(small: CandidateSpace) -> None:
    opt = random_optimizer(small)
    with pytest.raises(InputError, match="2 candidate ids but 1 values"):
        opt.tell(small.ids[:2], [1.0])
    with pytest.raises(InputError, match="one value per candidate"):
        opt.tell(small.ids[:2], 1.0)  # type: ignore[arg-type]
    assert opt.history.empty


def test_retelling_is_idempotent_and_conflicts_raise(small: CandidateSpace) -> None:
    opt = random_optimizer(small)
    (cid,) = opt.ask(1)
    opt.tell(cid, 0.5)
    opt.tell(cid, 0.5)  # same value: no-op
    opt.tell([cid], [np.float32(0.5)])
    history = opt.history
    assert len(history) == 1 and history["value"].tolist() == [0.5]
    with pytest.raises(TrialStateError, match=r"value 0\.5\b.*0\.75"):
        opt.tell(cid, 0.75)
    assert opt.history["value"].tolist() == [0.5]


def test_tell_without_ask_records_a_complete_trial(small: CandidateSpace) -> None:
    opt = random_optimizer(small)
    opt.tell(small.ids[3], 2)
    history = opt.history
    assert history.loc[0, "state"] == "complete"
    assert history.loc[0, "text"] == small.texts[3]
    assert small.ids[3] not in opt.ask(11)


# -------------------------------------------------------------------- history, best
def test_history_columns_states_and_best(small: CandidateSpace) -> None:
    opt = random_optimizer(small, seed=2)
    ids = opt.ask(3)
    opt.tell(ids[:2], [3.0, -1.0])
    opt.fail(ids[2], "spilled")
    history = opt.history
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["trial"].tolist() == [0, 1, 2]
    assert history["candidate_id"].tolist() == ids
    assert history["text"].tolist() == [small.text(i) for i in ids]
    assert history["state"].tolist() == ["complete", "complete", "failed"]
    assert history["value"].tolist()[:2] == [3.0, -1.0]
    assert history["completed_at"].notna().tolist()[:2] == [True, True]
    assert history["error"].tolist()[2] == "spilled"
    assert opt.best_value == 3.0
    best = opt.best(2)
    assert best.index.tolist() == ids[:2] and best["value"].tolist() == [3.0, -1.0]

    low = random_optimizer(small, seed=2, maximize=False)
    low.tell(ids[:2], [3.0, -1.0])
    assert low.best_value == -1.0
    assert low.best(1).index.tolist() == [ids[1]]


def test_empty_study_has_no_best(small: CandidateSpace) -> None:
    opt = random_optimizer(small)
    assert opt.best_value is None
    assert opt.best().empty
    assert list(opt.history.columns) == HISTORY_COLUMNS


# --------------------------------------------------------------------------- search
def test_minimise_finds_the_minimum_and_maximise_mirrors_it() -> None:
    space = grid_space(41)
    low = Optimizer(space, gp_surrogate(), maximize=False, seed=0, progress=False)
    history = low.run(quadratic, iterations=8)
    assert len(history) == 8 and set(history["state"]) == {"complete"}
    # Random search finds the minimum within 8 of 41 evaluations with probability 0.2.
    assert low.best_value == pytest.approx(0.0, abs=1e-12)
    assert low.best(1)["x"].item() == pytest.approx(0.625)
    # Maximising -f is the same search: the same suggestions in the same order.
    high = Optimizer(space, gp_surrogate(), maximize=True, seed=0, progress=False)
    mirrored = high.run(lambda rows: [-v for v in quadratic(rows)], iterations=8)
    assert mirrored["candidate_id"].tolist() == history["candidate_id"].tolist()
    assert high.best(1)["x"].item() == pytest.approx(0.625)
    assert high.best_value == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("maximize", [True, False])
def test_outcome_power_fits_the_model_to_warped_values(maximize: bool) -> None:
    """The GP sees the maximised values scaled to [0, 1] and squared; the study keeps the
    values as measured, and the setting is stored with the acquisition."""
    space = grid_space(21)
    opt = Optimizer(
        space,
        gp_surrogate(),
        acquisition=AcquisitionConfig(outcome_power=2.0),
        maximize=maximize,
        seed=0,
        progress=False,
    )
    opt.run(quadratic, iterations=4)
    fitted = opt.last_fit["fitted"]
    assert fitted is not None
    told = opt.history["value"].to_numpy()[:3]  # the three values the last fit saw
    y = told if maximize else -told
    expected = ((y - y.min()) / (y.max() - y.min())) ** 2
    model = fitted.model
    seen = model.outcome_transform.untransform(model.train_targets.unsqueeze(-1))[0]
    np.testing.assert_allclose(seen.squeeze(-1).numpy(), expected, atol=1e-9)
    rows = space.frame.iloc[space.index_of(opt.history["candidate_id"].tolist())]
    assert opt.history["value"].tolist() == pytest.approx(quadratic(rows))
    assert opt.study.config["proposer"]["acquisition"]["outcome_power"] == 2.0


def test_reopening_with_another_outcome_power_is_refused(tmp_path: Path) -> None:
    space = grid_space(11)
    url = f"sqlite:///{tmp_path / 'warp.db'}"

    def reopen(**acquisition: float) -> Optimizer:
        config = AcquisitionConfig(**acquisition)
        return Optimizer(
            space, "onehot", acquisition=config, storage=url, study_name="s", progress=False
        )

    reopen(outcome_power=2).tell(space.ids[:3], [0.1, 0.5, 0.2])
    with pytest.raises(StudyError, match="outcome_power=2"):
        reopen()
    assert len(reopen(outcome_power=2.0).history) == 3
    assert Optimizer.load(url, "s", progress=False).acquisition.outcome_power == 2.0


def test_same_seed_same_suggestions_other_seed_other_suggestions() -> None:
    space = grid_space(41)

    def campaign(seed: int) -> list[str]:
        opt = Optimizer(space, gp_surrogate(), seed=seed, progress=False, maximize=False)
        opt.run(quadratic, iterations=3, batch_size=2)
        return opt.history["candidate_id"].tolist()

    first = campaign(5)
    assert len(set(first)) == 6
    assert campaign(5) == first
    assert campaign(6) != first


def test_suggestions_do_not_depend_on_the_global_rng(small: CandidateSpace) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    a = random_optimizer(small, seed=9).ask(4)
    torch.manual_seed(123)
    np.random.seed(123)
    b = random_optimizer(small, seed=9).ask(4)
    assert a == b


# ---------------------------------------------------------------------------- run
def test_run_with_batches_and_callback(small: CandidateSpace) -> None:
    calls: list[tuple[list[str], list[float]]] = []
    opt = random_optimizer(small, seed=3)
    history = opt.run(
        lambda rows: [float(b) for b in rows["b"]],
        iterations=3,
        batch_size=2,
        callback=lambda o, ids, values: calls.append((ids, values)),
    )
    assert len(history) == 6 and len(calls) == 3
    for ids, values in calls:
        assert values == [float(small.rows([i])["b"].item()) for i in ids]
    with pytest.raises(InputError, match="iterations"):
        opt.run(lambda rows: [], iterations=-1)


def test_objective_raising_fails_the_round_and_keeps_earlier_results(
    small: CandidateSpace,
) -> None:
    calls = {"n": 0}

    def flaky(rows: pd.DataFrame) -> list[float]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("robot arm jammed")
        return [1.0] * len(rows)

    opt = random_optimizer(small, seed=0)
    with pytest.raises(RuntimeError, match="jammed"):
        opt.run(flaky, iterations=5, batch_size=2)
    history = opt.history
    assert history["state"].tolist() == ["complete"] * 4 + ["failed"] * 2
    assert history["value"].tolist()[:4] == [1.0] * 4
    assert all("robot arm jammed" in e for e in history["error"].tolist()[4:])
    # The failed candidates are free again; the measured ones are not.
    remaining = opt.ask(8)
    assert set(remaining) == set(small.ids) - set(history["candidate_id"][:4])


@pytest.mark.parametrize(
    ("objective", "error"),
    [
        (lambda rows: [float("nan")] * len(rows), ObjectiveValueError),
        (lambda rows: [1.0], InputError),
        (lambda rows: ["x"] * len(rows), ObjectiveValueError),
    ],
)
def test_bad_objective_output_fails_the_round(
    small: CandidateSpace, objective: object, error: type[Exception]
) -> None:
    opt = random_optimizer(small)
    with pytest.raises(error):
        opt.run(objective, iterations=1, batch_size=2)  # type: ignore[arg-type]
    assert opt.history["state"].tolist() == ["failed", "failed"]


def test_table_objective(small: CandidateSpace) -> None:
    frame = small.frame.assign(score=np.arange(12.0))
    space = CandidateSpace(frame, "{a} {b}")
    objective = TableObjective(space, "score")
    opt = random_optimizer(space, seed=0)
    opt.run(objective, iterations=12)
    assert opt.best_value == 11.0
    with pytest.raises(InputError, match="'missing' is not in the table"):
        TableObjective(space, "missing")
    bad = CandidateSpace(frame.assign(score=[1.0, np.nan, *range(10)]), "{a} {b}")
    with pytest.raises(InputError, match="1 missing, non-numeric or infinite"):
        TableObjective(bad, "score")


# ------------------------------------------------------------------ construction
def test_constructor_validation(small: CandidateSpace) -> None:
    with pytest.raises(InputError, match="CandidateSpace"):
        Optimizer(small.frame, "random")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="min_observations"):
        Optimizer(small, "random", min_observations=0)
    with pytest.raises(InputError, match="Unknown surrogate or preset 'gpt'"):
        Optimizer(small, "gpt")
    with pytest.raises(InputError, match="Unknown acquisition"):
        Optimizer(small, "random", acquisition="pi")


# ---------------------------------------------------------------- stored studies
def _deep_spec(model: str) -> SurrogateConfig:
    return surrogate_config(
        name="projection",
        encoder=EncoderConfig(model=model, device="cpu"),
        deep_kernel=DeepKernelConfig(steps=5),
    )


def test_load_continues_a_file_study_identically(tiny_model: str, tmp_path: Path) -> None:
    from conftest import synthetic_pool

    frame = synthetic_pool(seed=3).sample(n=40, random_state=0).reset_index(drop=True)
    space = CandidateSpace(frame, "{color} {animal} in the {place}")
    objective = TableObjective(space, "y")
    settings = {"seed": 7, "maximize": True, "acquisition": "ucb", "progress": False}

    single = Optimizer(space, _deep_spec(tiny_model), storage=tmp_path / "a.db", **settings)
    single.run(objective, iterations=4)
    expected_next = single.ask(2)

    first = Optimizer(
        space, _deep_spec(tiny_model), storage=tmp_path / "b.db", study_name="split", **settings
    )
    first.run(objective, iterations=4)
    del first
    again = Optimizer.load(tmp_path / "b.db", "split", progress=False)
    assert again.seed == 7 and again.maximize and again.acquisition.name == "ucb"
    assert again.spec == _deep_spec(tiny_model)
    assert again.space.ids == space.ids
    assert len(again.history) == 4
    assert again.ask(2) == expected_next
    pd.testing.assert_frame_equal(
        again.history[["candidate_id", "state", "value"]],
        single.history[["candidate_id", "state", "value"]],
    )


def test_reopening_with_other_settings_is_refused(small: CandidateSpace, tmp_path: Path) -> None:
    path = tmp_path / "study.db"
    random_optimizer(small, seed=1, storage=path, study_name="s").tell(small.ids[0], 1.0)
    with pytest.raises(StudyError, match="seed=1"):
        random_optimizer(small, seed=2, storage=path, study_name="s")
    other = CandidateSpace.from_grid({"a": ["x", "y"]}, "{a}")
    with pytest.raises(StudyError, match="different candidate space"):
        random_optimizer(other, seed=1, storage=path, study_name="s")
    same = random_optimizer(small, seed=1, storage=path, study_name="s")
    assert same.history["value"].tolist() == [1.0]


def test_load_refuses_studies_it_cannot_rebuild(tmp_path: Path) -> None:
    space = grid_space(5)
    Optimizer(space, gp_surrogate(), storage=tmp_path / "x.db", study_name="custom", progress=False)
    with pytest.raises(StudyError, match="custom surrogate"):
        Optimizer.load(tmp_path / "x.db", "custom")
    callable_space = CandidateSpace(space.frame, lambda row: f"value {row['x']}")
    Optimizer(callable_space, "random", storage=tmp_path / "x.db", study_name="fn", progress=False)
    with pytest.raises(StudyError, match="does not store its space"):
        Optimizer.load(tmp_path / "x.db", "fn")


# --------------------------------------------------------------- bad arguments (issue 20)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": 2**70}, "between 0 and"),
        ({"seed": "abc"}, "whole number"),
        ({"seed": None}, "whole number"),
        ({"seed": 1.7}, "whole number"),
        ({"seed": True}, "whole number"),
        ({"maximize": "no"}, "True or False"),
        ({"study_name": ""}, "empty"),
        ({"study_name": "  "}, "empty"),
        ({"min_observations": 1.5}, "min_observations"),
    ],
)
def test_bad_arguments_are_refused_at_construction(
    small: CandidateSpace, kwargs: dict, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        random_optimizer(small, **kwargs)


def test_a_missing_model_fails_at_construction(small: CandidateSpace, tmp_path: Path) -> None:
    from llmbo.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="does not exist"):
        Optimizer(small, "projection", model="/nope", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config\\.json"):
        Optimizer(small, "static", model=str(tmp_path / "empty"), progress=False)
    Optimizer(small, "onehot", model="/nope", progress=False)  # reads no model


def test_fail_refuses_measured_unknown_or_unsuggested_ids(small: CandidateSpace) -> None:
    opt = random_optimizer(small, seed=0)
    ids = opt.ask(3)
    opt.tell(ids[0], 1.0)
    never = next(c for c in small.ids if c not in ids)
    before = opt.history
    with pytest.raises(TrialStateError, match="already measured"):
        opt.fail([ids[1], ids[0]], "x")
    with pytest.raises(TrialStateError, match="never suggested"):
        opt.fail(never, "x")
    with pytest.raises(UnknownCandidateError):
        opt.fail("no-such-id", "x")
    pd.testing.assert_frame_equal(opt.history, before)  # nothing changed
    opt.fail(ids[1:], "spilled")
    assert opt.history["state"].tolist() == ["complete", "failed", "failed"]
    opt.fail(ids[1], "again")  # already failed: stays failed, error unchanged
    assert opt.history["error"].tolist()[1:] == ["spilled", "spilled"]


@pytest.mark.parametrize("k", [-1, 1.5, True])
def test_best_needs_a_count(small: CandidateSpace, k: object) -> None:
    opt = random_optimizer(small)
    opt.tell(small.ids[:3], [1.0, 3.0, 2.0])
    with pytest.raises(InputError, match="integer k >= 0"):
        opt.best(k)  # type: ignore[arg-type]
    assert opt.best(2)["value"].tolist() == [3.0, 2.0]
    assert len(opt.best(0)) == 0


def test_reopening_with_another_surrogate_or_acquisition_is_refused(
    small: CandidateSpace, tmp_path: Path
) -> None:
    from llmbo.errors import StudySettingsError

    path = tmp_path / "s.db"
    random_optimizer(small, storage=path, study_name="s").tell(small.ids[0], 1.0)
    with pytest.raises(StudySettingsError, match=r"proposer\.name='random' \(asked: 'bayesian'\)"):
        Optimizer(small, "onehot", storage=path, study_name="s", progress=False)
    assert Optimizer.load(path, "s").surrogate_name == "random"
    Optimizer(small, "onehot", storage=path, study_name="gp", progress=False)
    with pytest.raises(
        StudySettingsError, match=r"surrogate\.name='onehot' \(asked: 'components'\)"
    ):
        Optimizer(small, "components", storage=path, study_name="gp", progress=False)
    with pytest.raises(StudySettingsError, match=r"acquisition\.name='logei'"):
        Optimizer(small, "onehot", acquisition="ucb", storage=path, study_name="gp")


def test_load_of_a_file_that_is_not_a_study(tmp_path: Path) -> None:
    from llmbo.errors import StudyFileError

    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(StudyFileError, match="not an llmbo study"):
        Optimizer.load(table, "default")
    assert table.read_text() == "a,b\n1,2\n"


def test_boolean_target_column_is_refused(small: CandidateSpace) -> None:
    frame = small.frame.assign(ok=[i % 2 == 0 for i in range(len(small))])
    space = CandidateSpace(frame, "{a} {b}")
    with pytest.raises(InputError, match="true/false"):
        TableObjective(space, "ok")
