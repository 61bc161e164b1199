"""One LoRA trial: real PEFT training on a tiny BERT, failures caught, tasks checked."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from llmbo.errors import InputError
from llmbo.hpo import LoraTask, TrainingConfig, TrialOutcome, esol_task, run_trial
from llmbo.hpo.task import Metric
from llmbo.hpo.trial import proxy_subset

from .conftest import tiny_frame

#: A configuration that trains the tiny model in about a second.
PARAMS = {"r": 4, "alpha_ratio": 2, "lora_dropout": 0.0, "batch_size": 8, "learning_rate": 1e-3}


def test_a_trial_trains_and_scores(tiny_task: LoraTask, quick: TrainingConfig) -> None:
    outcome = run_trial(tiny_task, PARAMS, quick, proxy_fraction=1.0)
    assert isinstance(outcome, TrialOutcome)
    assert outcome.ok, outcome.error
    assert outcome.error is None
    assert isinstance(outcome.value, float)
    assert math.isfinite(outcome.value)
    assert outcome.value > 0  # an RMSE of noisy labels
    assert outcome.seconds > 0


def test_same_params_and_seed_give_the_same_value(
    tiny_task: LoraTask, quick: TrainingConfig
) -> None:
    first = run_trial(tiny_task, PARAMS, quick, proxy_fraction=0.5)
    second = run_trial(tiny_task, PARAMS, quick, proxy_fraction=0.5)
    assert first.ok and second.ok, (first.error, second.error)
    assert first.value == second.value
    # The hyperparameters matter: another learning rate trains to another value.
    other = run_trial(tiny_task, {**PARAMS, "learning_rate": 1e-2}, quick, proxy_fraction=0.5)
    assert other.ok, other.error
    assert other.value != first.value


def test_proxy_subset_is_a_seeded_share_of_the_rows() -> None:
    frame = tiny_frame(50)
    part = proxy_subset(frame, 0.2, seed=3)
    assert len(part) == 10
    assert part.equals(proxy_subset(frame, 0.2, seed=3))
    assert not part.equals(proxy_subset(frame, 0.2, seed=4))
    # Rows of the table, each once, in table order.
    merged = part.merge(frame.reset_index(), on=["text", "label"])
    assert len(merged) == 10
    assert merged["index"].is_monotonic_increasing
    assert merged["index"].is_unique
    assert len(proxy_subset(frame, 1e-6, seed=0)) == 1
    assert proxy_subset(frame, 1.0, seed=0).equals(frame)
    with pytest.raises(Exception, match="proxy fraction"):
        proxy_subset(frame, 0.0, seed=0)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (Metric("always_nan", lambda p, y: float("nan"), False), "'always_nan' returned nan"),
        (Metric("wordy", lambda p, y: "good", False), "'wordy' returned 'good' (str)"),
        (Metric("infinite", lambda p, y: float("inf"), True), "'infinite' returned inf"),
    ],
)
def test_a_bad_metric_fails_the_trial_with_its_name(
    tiny_task: LoraTask, quick: TrainingConfig, metric: Metric, expected: str
) -> None:
    task = dataclasses.replace(tiny_task, metric=metric)
    outcome = run_trial(task, PARAMS, quick)
    assert not outcome.ok
    assert outcome.value is None
    assert outcome.error is not None
    assert outcome.error.startswith("trial failed")
    assert expected in outcome.error


def test_a_time_limit_fails_the_trial(tiny_task: LoraTask) -> None:
    training = TrainingConfig(epochs=2, max_length=16, time_limit=1e-3)
    outcome = run_trial(tiny_task, PARAMS, training)
    assert not outcome.ok
    assert outcome.value is None
    assert "time limit" in outcome.error


def test_a_diverging_learning_rate_is_a_failed_trial_not_an_exception(
    tiny_task: LoraTask, quick: TrainingConfig
) -> None:
    outcome = run_trial(tiny_task, {**PARAMS, "learning_rate": 1e10}, quick, proxy_fraction=1.0)
    assert not outcome.ok
    assert outcome.value is None
    assert outcome.error.startswith("trial failed")
    assert any(word in outcome.error for word in ("nan", "inf", "non-finite"))


def test_a_crashing_trial_is_caught_with_the_error_text(
    tiny_task: LoraTask, quick: TrainingConfig
) -> None:
    outcome = run_trial(tiny_task, {**PARAMS, "target_modules": ["no_such_layer"]}, quick)
    assert not outcome.ok
    assert outcome.value is None
    assert "no_such_layer" in outcome.error


def test_from_frame_names_the_missing_columns() -> None:
    frame = tiny_frame(20)
    with pytest.raises(InputError) as info:
        LoraTask.from_frame(frame, text_column="smiles", model="minilm")
    assert "'smiles'" in str(info.value)
    assert "['text', 'label']" in str(info.value)  # the columns it has
    with pytest.raises(InputError, match="'solubility'"):
        LoraTask.from_frame(frame, label_column="solubility", model="minilm")


def test_non_numeric_regression_labels_are_refused() -> None:
    frame = tiny_frame(20).assign(label=lambda f: f["text"].str.split().str[2])
    with pytest.raises(InputError, match="non-numeric"):
        LoraTask.from_frame(frame, kind="regression", model="minilm")
    mixed = tiny_frame(20).astype({"label": object})
    mixed.loc[3, "label"] = "n/a"
    with pytest.raises(InputError, match="non-numeric"):
        LoraTask.from_frame(mixed, kind="regression", model="minilm")


def test_tasks_refuse_bad_splits_and_settings() -> None:
    frame = tiny_frame(20)
    with pytest.raises(InputError, match="missing texts or labels"):
        LoraTask.from_frame(frame.assign(label=np.nan), kind="regression", model="minilm")
    with pytest.raises(InputError, match="split fractions"):
        LoraTask.from_frame(frame, fractions=(0.5, 0.5, 0.5), model="minilm")
    with pytest.raises(InputError, match="is empty"):
        LoraTask.from_frame(frame, fractions=(1.0, 0.0, 0.0), model="minilm")
    with pytest.raises(InputError, match="one label value"):
        LoraTask.from_frame(frame.assign(label="x"), model="minilm")
    with pytest.raises(InputError):
        LoraTask.from_frame(frame, metric="no-such-metric", model="minilm")
    with pytest.raises(InputError, match="time_limit"):
        TrainingConfig(time_limit=0)
    with pytest.raises(InputError, match="epochs"):
        TrainingConfig(epochs=0)


def test_classification_by_colour_scores_accuracy(tiny_model: str, quick: TrainingConfig) -> None:
    frame = tiny_frame(60)
    frame["label"] = frame["text"].str.split().str[2]  # "the big red cat" -> "red"
    task = LoraTask.from_frame(frame, model=tiny_model, fractions=(0.6, 0.2, 0.2))
    assert task.kind == "classification"
    assert task.metric_name == "accuracy"
    assert task.higher_is_better
    assert task.classes == ["blue", "green", "red"]
    outcome = run_trial(task, {**PARAMS, "learning_rate": 1e-2}, quick, proxy_fraction=1.0)
    assert outcome.ok, outcome.error
    n = len(task.validation)
    assert 0.0 <= outcome.value <= 1.0
    assert outcome.value * n == pytest.approx(round(outcome.value * n))  # a share of the rows


def test_numeric_labels_with_few_values_are_classes(tiny_model: str) -> None:
    frame = pd.DataFrame({"text": ["red cat", "blue dog"] * 10, "label": [0, 1] * 10})
    task = LoraTask.from_frame(frame, model=tiny_model)
    assert task.kind == "classification"
    assert task.classes == [0, 1]


@pytest.mark.slow
def test_minilm_on_esol_gives_a_finite_rmse() -> None:
    task = esol_task()
    assert task.metric_name == "rmse"
    assert len(task.train) + len(task.validation) + len(task.test) == 1128
    outcome = run_trial(
        task,
        {"r": 8, "alpha_ratio": 2, "lora_dropout": 0.05, "batch_size": 16, "learning_rate": 1e-3},
        TrainingConfig(epochs=1, device="cpu"),
        proxy_fraction=0.1,
    )
    assert outcome.ok, outcome.error
    assert math.isfinite(outcome.value)
    assert 0 < outcome.value < 10  # log solubility spans about -11.6 to 1.6
