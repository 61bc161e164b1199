"""Fast (cached) vs naive (uncached) LoRA deep kernel: same campaign?

Runs the reaction protocol on one pool with a LoRA benchmark method twice per seed, once
on the fast path (cached frozen activations) and once recomputing the whole transformer at
every step and pool pass, and records the suggested reactions, coverage and time side by
side in ``benchmarks/results/cache_equivalence.csv``. Example::

    python research/cache_equivalence.py --method lora-out-seg --seeds 0,1 --iterations 10
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import time
from pathlib import Path

import pandas as pd
import torch

from llmbo.benchmarks.methods import METHODS
from llmbo.benchmarks.runner import cpu_description
from llmbo.datasets import load_pool
from llmbo.design import initial_design
from llmbo.metrics import top_fraction_coverage
from llmbo.optimizer import Optimizer, TableObjective
from llmbo.surrogates import make_surrogate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="bh1")
    parser.add_argument("--method", default="lora-out-seg", help="a LoRA benchmark method")
    parser.add_argument("--template", default="names")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda... (default: CUDA if present)")
    parser.add_argument("--output", default="benchmarks/results/cache_equivalence.csv")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pool = load_pool(args.benchmark)
    space = pool.space(args.template)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        runs = {}
        for cached in (True, False):
            options = {"cache_hidden_states": cached, "deep_kernel.steps": args.steps}
            spec = METHODS.get(args.method)(pool, "minilm", device, args.template, options)
            start = time.perf_counter()
            opt = Optimizer(space, make_surrogate(spec), seed=seed, progress=False)
            init = initial_design(pool.values, 10, seed)
            opt.tell([space.ids[i] for i in init], pool.values[init].tolist())
            history = opt.run(TableObjective(space, pool.target), args.iterations)
            runs[cached] = (history, time.perf_counter() - start)
        (fast, t_fast), (naive, t_naive) = runs[True], runs[False]
        rows.append(
            {
                "benchmark": args.benchmark,
                "method": args.method,
                "template": args.template,
                "seed": seed,
                "iterations": args.iterations,
                "steps": args.steps,
                "same_suggestions": list(fast.candidate_id) == list(naive.candidate_id),
                "fast_coverage": top_fraction_coverage(fast.value.to_numpy(), pool.values),
                "naive_coverage": top_fraction_coverage(naive.value.to_numpy(), pool.values),
                "fast_seconds": round(t_fast, 1),
                "naive_seconds": round(t_naive, 1),
                "cpu": cpu_description(),
                "device": torch.cuda.get_device_name(device)
                if device.startswith("cuda")
                else device,
                "threads": torch.get_num_threads(),
                "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
        )
        print(rows[-1], flush=True)
    out = Path(args.output)
    if out.exists() and list(pd.read_csv(out, nrows=0).columns) != list(rows[0]):
        # Older files lack later columns (device): rewrite them with the union, rows kept.
        pd.concat([pd.read_csv(out), pd.DataFrame(rows)]).to_csv(out, index=False)
        return 0
    new = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
