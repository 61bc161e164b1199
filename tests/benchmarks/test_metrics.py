"""Benchmark metrics and the protocol's initial design, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from llmbo.benchmarks.metrics import (
    best_so_far,
    iteration_of_max,
    mean_and_sem,
    top_fraction_coverage,
)
from llmbo.benchmarks.protocol import ProtocolConfig, initial_design
from llmbo.errors import InputError

POOL = np.arange(1.0, 21.0)  # 1, 2, ..., 20


def test_coverage_hand_computed() -> None:
    # 95th percentile of 1..20 (linear): position 0.95 * 19 = 18.05 -> 19 + 0.05 = 19.05,
    # so only 20 is in the top group; top-20 %: position 15.2 -> 16.2, top group {17..20}.
    assert np.quantile(POOL, 0.95) == pytest.approx(19.05)
    assert top_fraction_coverage([20.0, 3.0], POOL) == 1.0
    assert top_fraction_coverage([19.0, 3.0], POOL) == 0.0
    assert top_fraction_coverage([17.0, 20.0, 1.0], POOL, fraction=0.2) == pytest.approx(2 / 4)
    assert top_fraction_coverage([], POOL, fraction=0.2) == 0.0
    assert top_fraction_coverage(POOL, POOL, fraction=0.2) == 1.0


def test_coverage_with_ties() -> None:
    pool = np.array([0.0] * 10 + [5.0] * 10)
    # 95th percentile is 5.0; all ten 5.0s are in the top group.
    assert top_fraction_coverage([5.0, 5.0, 0.0], pool) == pytest.approx(2 / 10)


def test_coverage_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        top_fraction_coverage([1.0], POOL, fraction=0.0)
    with pytest.raises(InputError):
        top_fraction_coverage([np.nan], POOL)
    with pytest.raises(InputError):
        top_fraction_coverage(np.zeros(21), POOL)


def test_best_so_far() -> None:
    np.testing.assert_array_equal(best_so_far([3, 1, 4, 1, 5, 2]), [3, 3, 4, 4, 5, 5])
    np.testing.assert_array_equal(best_so_far([3, 1, 4], maximize=False), [3, 1, 1])
    assert best_so_far([2]).dtype == np.float64


def test_iteration_of_max() -> None:
    values = [1.0, 2.0, 3.0, 9.0, 4.0, 9.0]
    assert iteration_of_max(values, 9.0, n_initial=3) == 1
    assert iteration_of_max(values, 9.0, n_initial=4) == 0
    assert iteration_of_max(values, 9.0, n_initial=2) == 2
    assert iteration_of_max(values, 10.0, n_initial=3) is None
    assert iteration_of_max(values, 9.0, n_initial=1, batch_size=2) == 2
    assert iteration_of_max(np.float32(values), 9.0, n_initial=3) == 1


def test_mean_and_sem() -> None:
    mean, sem = mean_and_sem([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert sem == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    curves = np.array([[0.0, 1.0], [2.0, 3.0]])
    m, s = mean_and_sem(curves)
    np.testing.assert_allclose(m, [1.0, 2.0])
    np.testing.assert_allclose(s, [1.0, 1.0])
    assert np.isnan(mean_and_sem([5.0])[1])
    with pytest.raises(InputError):
        mean_and_sem([])


def test_initial_design_reproducible_and_below_median() -> None:
    rng = np.random.default_rng(123)
    values = rng.uniform(0, 100, size=200)
    a = initial_design(values, 10, seed=0)
    b = initial_design(values, 10, seed=0)
    c = initial_design(values, 10, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.int64 and len(set(a.tolist())) == 10
    assert np.all(values[a] <= np.median(values))
    hi = initial_design(values, 10, seed=0, maximize=False)
    assert np.all(values[hi] >= np.median(values))


def test_initial_design_matches_documented_draw() -> None:
    values = np.arange(10.0)  # median 4.5 -> eligible rows 0..4
    expected = np.random.default_rng(7).choice(np.arange(5), size=3, replace=False)
    np.testing.assert_array_equal(initial_design(values, 3, seed=7), expected)


def test_initial_design_too_few_candidates() -> None:
    with pytest.raises(InputError, match="fewer than the 6"):
        initial_design(np.arange(10.0), 6, seed=0)


def test_protocol_config_defaults_and_round_trip() -> None:
    cfg = ProtocolConfig()
    # The direction is the pool's own unless given (see tests/benchmarks/test_direction.py).
    assert (cfg.n_initial, cfg.iterations, cfg.batch_size, cfg.maximize) == (10, 50, 1, None)
    assert cfg.budget == 60
    assert ProtocolConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError):
        ProtocolConfig(batch_size=0)
    with pytest.raises(InputError):
        ProtocolConfig.from_dict({"n_init": 3})
