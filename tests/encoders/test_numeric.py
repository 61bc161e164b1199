"""``NumericFeaturizer``: the numbers of a grid in [0, 1], log-scaled where they span decades."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llmbo.encoders.base import FEATURIZERS
from llmbo.encoders.numeric import NumericFeaturizer
from llmbo.errors import InputError
from llmbo.space import CandidateSpace


def _space(**columns: list) -> CandidateSpace:
    frame = pd.DataFrame(columns)
    return CandidateSpace(frame, lambda row: " ".join(f"{k}={v}" for k, v in row.items()))


@pytest.fixture
def grid() -> CandidateSpace:
    return _space(
        learning_rate=[1e-5, 1e-4, 1e-3, 1e-2],  # positive, spans 1000x -> log
        batch_size=[2, 8, 32, 128],  # positive, 64x -> log
        lora_dropout=[0.0, 0.1, 0.2, 0.3],  # has a zero -> linear
        alpha_ratio=[1.0, 2.0, 4.0, 8.0],  # positive but 8x < 10x -> linear
        constant=[5, 5, 5, 5],
        name=["a", "b", "c", "d"],  # text: not a feature
        flag=[True, False, True, False],  # boolean: not a feature
    )


def test_auto_log_scales_wide_positive_columns(grid: CandidateSpace) -> None:
    featurizer = NumericFeaturizer()
    x = featurizer.featurize(grid)
    assert x.dtype == torch.float64
    assert x.shape == (4, 5)
    assert featurizer.log_columns_ == ["learning_rate", "batch_size"]
    lr, batch, dropout, ratio, constant = x.T.numpy()
    # Log scale: equal ratios become equal steps.
    assert np.allclose(lr, [0, 1 / 3, 2 / 3, 1])
    assert np.allclose(batch, [0, 1 / 3, 2 / 3, 1])
    # Linear scale for the others.
    assert np.allclose(dropout, [0, 1 / 3, 2 / 3, 1])
    assert np.allclose(ratio, [0, 1 / 7, 3 / 7, 1])
    assert np.allclose(constant, 0)  # constant columns are 0
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_explicit_columns_and_log_columns(grid: CandidateSpace) -> None:
    featurizer = NumericFeaturizer(columns=["alpha_ratio", "learning_rate"], log=["alpha_ratio"])
    x = featurizer.featurize(grid)
    assert x.shape == (4, 2)
    assert featurizer.log_columns_ == ["alpha_ratio"]
    assert np.allclose(x[:, 0].numpy(), [0, 1 / 3, 2 / 3, 1])  # log of 1, 2, 4, 8
    lr = np.array([1e-5, 1e-4, 1e-3, 1e-2])
    assert np.allclose(x[:, 1].numpy(), (lr - lr.min()) / (lr.max() - lr.min()))
    # One column name as a string.
    assert NumericFeaturizer(columns="batch_size").featurize(grid).shape == (4, 1)


def test_rows_keep_their_order(grid: CandidateSpace) -> None:
    shuffled = CandidateSpace(grid.frame.iloc[[2, 0, 3, 1]], grid.template)
    a = NumericFeaturizer().featurize(grid)
    b = NumericFeaturizer().featurize(shuffled)
    assert torch.equal(b, a[[2, 0, 3, 1]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": ["learning_rate", "depth"]}, "['depth'] are not in the table"),
        ({"columns": ["name"]}, "column 'name' has missing or non-numeric values"),
        ({"columns": ["lora_dropout"], "log": ["lora_dropout"]}, "values <= 0"),
    ],
)
def test_bad_columns_are_refused(grid: CandidateSpace, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        NumericFeaturizer(**kwargs).featurize(grid)
    assert message in str(info.value)


def test_missing_values_and_text_only_tables_are_refused() -> None:
    gaps = _space(x=[1.0, np.nan, 3.0], y=[1, 2, 3])
    with pytest.raises(InputError, match="column 'x' has missing"):
        NumericFeaturizer().featurize(gaps)
    with pytest.raises(InputError, match="found no numeric columns"):
        NumericFeaturizer().featurize(_space(word=["a", "b"]))
    with pytest.raises(InputError, match="'auto'"):
        NumericFeaturizer(log="always")


def test_registered_as_numeric(grid: CandidateSpace) -> None:
    cls = FEATURIZERS.get("numeric")
    assert cls is NumericFeaturizer
    assert torch.equal(cls().featurize(grid), NumericFeaturizer().featurize(grid))
