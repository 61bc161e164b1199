"""LLM warm start against random starts on the reaction pools.

    python benchmarks/catalyst_warm_start.py [--pools bh1] [--seeds 10] [--initial 5]
        [--iterations 15] [--llm smollm2]

For each pool and seed, two studies on the same pool (``names`` template) with the same
Bayesian optimiser after the initial design (proposed as one batch of ``--initial``) (the ``components`` GP, LogEI): one whose first
``--initial`` suggestions come from an LLM (``llmbo.proposers.LLMProposer`` with the local
backend: the model reads the pool's columns and example candidates and its likelihood
ranks a seeded subsample of the pool), the other from uniformly random rows. Appends one
row per method, pool and seed to benchmarks/results/catalyst.csv: ``metric`` is the best
yield after all trials; ``initial_best`` the best yield of the initial design.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmbo.datasets import POOLS
from llmbo.llm import make_backend
from llmbo.proposers import BayesianProposer, LLMProposer, RandomProposer, WarmStartProposer
from llmbo.study import Study
from llmbo.surrogates import surrogate_config

sys.path.insert(0, str(Path(__file__).parent))
from catalyst import save_row


def lookup(values: dict[str, float], id_column: str):  # type: ignore[no-untyped-def]
    """The objective: each suggested row's measured yield."""
    return lambda rows: [values[i] for i in rows[id_column]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", nargs="+", default=["bh1"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--initial", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument("--max-scored", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backend = make_backend("local", model=args.llm)
    command = (
        f"python benchmarks/catalyst_warm_start.py --pools {' '.join(args.pools)} --seeds "
        f"{args.seeds} --initial {args.initial} --iterations {args.iterations} --llm {args.llm}"
    )
    for pool_name in args.pools:
        pool = POOLS.get(pool_name)()
        space = pool.space("names")
        yields = dict(zip(pool.ids, pool.values, strict=True))
        for seed in range(args.seeds):
            for method in ("llm-warm-start", "random-start"):
                first = (
                    LLMProposer(backend, max_scored=args.max_scored)
                    if method == "llm-warm-start"
                    else RandomProposer()
                )
                then = BayesianProposer(surrogate_config("components"), min_observations=1)
                proposer = WarmStartProposer(first, then, n_initial=args.initial)
                study = Study(space, proposer, seed=seed, study_name=f"{pool_name}-{method}")
                start = time.perf_counter()
                objective = lookup(yields, space.id_column)
                study.run(objective, 1, batch_size=args.initial)  # the initial design
                study.run(objective, args.iterations)
                values = study.history["value"].to_numpy(dtype=float)
                row = {
                    "task": f"{pool_name}-warm-start",
                    "method": method,
                    "seed": seed,
                    "metric": float(values.max()),
                    "higher_is_better": True,
                    "llm": backend.label if method == "llm-warm-start" else "",
                    "date": datetime.date.today().isoformat(),
                    "metric_name": f"best yield after {len(values)} trials",
                    "initial_best": float(values[: args.initial].max()),
                    "pool_best": float(np.max(pool.values)),
                    "seconds": round(time.perf_counter() - start, 1),
                    "hardware": f"{platform.machine()} CPU, {args.threads} torch thread(s)",
                    "command": command,
                }
                save_row(row)


if __name__ == "__main__":
    main()
