"""The rule that chooses the default preset, applied to hand-made results."""

from __future__ import annotations

import pandas as pd
import pytest

from llmbo.benchmarks.selection import preset_table, select_default

POOLS = ("bh1", "esol")
SEEDS = (0, 1, 2)
TEMPLATE = {"bh1": "names", "esol": "smiles"}


def _results(coverage: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (method, pool), values in coverage.items():
        for seed, value in zip(SEEDS, values, strict=True):
            text = method in ("static", "projection", "lora")
            rows.append(
                {
                    "benchmark": pool,
                    "method": method,
                    "seed": seed,
                    "iterations": 50,
                    "n_initial": 10,
                    "batch_size": 1,
                    "template": TEMPLATE[pool] if text else "procedure",
                    "model": "minilm" if text else "",
                    "top5_coverage": value,
                }
            )
    return pd.DataFrame(rows)


def _speed(seconds: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"experiment": "bh1", "surrogate": s, "n_train": 60, "sec_per_iter": v, "date": "d"}
            for s, v in seconds.items()
        ]
    )


def test_the_best_mean_rank_among_fast_presets_that_run_everywhere_wins() -> None:
    results = _results(
        {
            ("static", "bh1"): [0.3, 0.3, 0.3],
            ("static", "esol"): [0.2, 0.2, 0.2],
            ("projection", "bh1"): [0.5, 0.5, 0.5],  # best, but too slow
            ("projection", "esol"): [0.5, 0.5, 0.5],
            ("lora", "bh1"): [0.4, 0.4, 0.4],
            ("lora", "esol"): [0.1, 0.1, 0.1],
            ("components", "bh1"): [0.9, 0.9, 0.9],  # reaction pools only
            ("random", "bh1"): [0.0, 0.1, 0.0],
            ("random", "esol"): [0.0, 0.0, 0.0],
        }
    )
    # Mixed templates: a static run on another template does not count.
    other = results[results["method"] == "static"].assign(template="procedure", top5_coverage=1.0)
    results = pd.concat([results, other], ignore_index=True)
    speed = _speed({"static": 0.1, "projection": 6.0, "lora": 1.0})
    sel = select_default(
        results, speed, presets=["static", "projection", "lora", "components", "random"],
        pools=POOLS, seeds=SEEDS,
    )  # fmt: skip
    assert sel.candidates == ["static", "lora", "random"]
    # ranks: bh1 lora 1, static 2, random 3; esol static 1, lora 2, random 3 -> tie 1.5
    assert sel.ranks.loc["static"].tolist() == [2.0, 1.0]
    assert sel.chosen == "static"  # tied with lora on mean rank, and faster
    assert any("projection: 6.00 s per suggestion > 5 s" in n for n in sel.notes)
    assert any("components: not on every pool" in n for n in sel.notes)
    assert sel.coverage.loc["static", "bh1"] == pytest.approx(0.3)


def test_the_table_reports_the_default_against_baselines_and_peers() -> None:
    results = _results(
        {
            ("lora", "bh1"): [0.4, 0.5, 0.6],
            ("lora", "esol"): [0.3, 0.3, 0.3],
            ("morgan", "bh1"): [0.3, 0.4, 0.5],
            ("morgan", "esol"): [0.2, 0.2, 0.2],
            ("tpe", "bh1"): [0.1, 0.2, 0.3],
        }
    )
    text, sel = preset_table(
        results, _speed({"lora": 1.0, "morgan": 0.2}), "lora", pools=POOLS, seeds=SEEDS
    )
    assert sel.chosen == "lora"
    assert "| bh1 | 0.500 ± 0.058 | morgan 0.400 | +0.100 ± 0.000 (n=3) | tpe 0.200 |" in text
    assert "| esol | 0.300 ± 0.000 | morgan 0.200 | +0.100 ± 0.000 (n=3) | — | — |" in text
