"""The speed benchmark script end to end on a tiny model (timings are not asserted)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from llmbo.benchmarks.speed import COLUMNS, main, method_config, synthetic_space
from llmbo.datasets import load_pool


@pytest.mark.slow
def test_speed_script_writes_side_by_side_rows(tiny_model: str, tmp_path: Path) -> None:
    out = tmp_path / "speed.csv"
    argv = [
        "--model", tiny_model, "--device", "cpu", "--template", "names",
        "--surrogates", "projection,lora,lora-out", "--n-train", "8", "--steps", "2",
        "--repeats", "1", "--reference-n-train", "8", "--pool-sizes", "300",
        "--scaling-surrogates", "lora-out", "--scaling-n-train", "8", "--threads", "1",
        "--output", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS
    # Timings depend on the instruction set torch dispatches to, so the CPU column names it.
    capability = torch.backends.cpu.get_cpu_capability()
    assert table.cpu.str.endswith(f" ({capability})").all()
    bh1 = table[table.experiment == "bh1"].set_index("surrogate")
    assert list(bh1.index) == ["projection", "lora", "lora-out"]
    assert (bh1.pool_size == 790).all() and (bh1.n_train == 8).all()
    # Each LoRA method is timed against its own naive uncached reference in the same run.
    assert bh1.loc[["lora", "lora-out"], "reference_sec_per_iter"].gt(0).all()
    assert pd.isna(bh1.loc["projection", "reference_sec_per_iter"])
    ratio = bh1.reference_sec_per_iter / bh1.sec_per_iter
    pd.testing.assert_series_equal(bh1.speedup.dropna(), ratio.dropna(), check_names=False)
    scaling = table[table.experiment == "synthetic-pool"]
    assert scaling.pool_size.tolist() == [300] and (scaling.peak_mem_mb > 0).all()
    # Appending keeps earlier rows; each deep kernel is timed once per GP placement asked
    # for (static has no deep kernel).
    more = ["--surrogates", "static,projection", "--gp-devices", "auto,cpu", "--pool-sizes", ""]
    assert main([*argv[:-2], *more, "--reference-n-train", "", "--output", str(out)]) == 0
    added = pd.read_csv(out).iloc[len(table) :]
    assert added.surrogate.tolist() == ["static", "projection", "projection{gp_device=cpu}"]
    pool = load_pool("bh1")
    build = {"model": tiny_model, "device": "cpu", "template": "names", "steps": 2}
    assert (
        method_config("projection", pool, **build, gp_device="cpu").deep_kernel.gp_device == "cpu"
    )
    assert method_config("projection", pool, **build).deep_kernel.gp_device == "auto"


def test_synthetic_pool_has_distinct_texts_and_requested_size() -> None:
    space, values = synthetic_space(1234)
    assert len(space) == len(values) == 1234
    assert len(set(space.texts)) == 1234
