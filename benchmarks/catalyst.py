"""Gradient-only prompt tuning against LLM catalyst (gradient descent + an LLM mentor).

    python benchmarks/catalyst.py [--seeds 5] [--epochs 6] [--rows 2000] [--llm smollm2]

Task: the VADER sentiment lexicon (``llmbo.hpo.sentiment_lexicon_task``: words, slang and
emoticons with their mean human rating), a seeded subset of ``--rows`` entries split
80/10/10 with split seed 0; model: the packaged all-MiniLM-L6-v2 with 8 soft-prompt tokens
and a linear head (``llmbo.catalyst``). Both methods share everything (data, seed,
initial prompt, epochs); ``catalyst`` also consults the mentor after epochs 0, 1 and 2
(the paper's schedule) with the local LLM named by ``--llm`` and always restarts from its
first valid proposal (as the paper); ``catalyst-guarded`` restarts only when the proposal
beats the current prompt on validation (``restart_when="improves"``). Appends one row per method
and seed to benchmarks/results/catalyst.csv: the test RMSE of the best validation state.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

import pandas as pd
import torch

from llmbo.catalyst import Catalyst, CatalystConfig
from llmbo.hpo import sentiment_lexicon_task
from llmbo.llm import make_backend

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "catalyst.csv"


def save_row(row: dict) -> None:
    """Print ``row`` and store it in catalyst.csv, replacing the row of the same task,
    method and seed."""
    print(row, flush=True)
    frame = pd.DataFrame([row])
    if OUT.is_file():
        old = pd.read_csv(OUT)
        same = (
            (old["task"] == row["task"])
            & (old["method"] == row["method"])
            & (old["seed"] == row["seed"])
        )
        frame = pd.concat([old[~same], frame], ignore_index=True)
    frame.to_csv(OUT, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--llm", default="smollm2")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["gradient", "catalyst"],
        choices=["gradient", "catalyst", "catalyst-guarded"],
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = sentiment_lexicon_task(rows=args.rows, seed=0)
    needs_llm = any(m != "gradient" for m in args.methods)
    backend = make_backend("local", model=args.llm) if needs_llm else None
    command = (
        f"python benchmarks/catalyst.py --seeds {args.seeds} --first-seed {args.first_seed} "
        f"--epochs {args.epochs} --rows {args.rows} --llm {args.llm} "
        f"--methods {' '.join(args.methods)}"
    )
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for method in args.methods:
            mentor = backend if method != "gradient" else None
            config = CatalystConfig(
                epochs=args.epochs,
                mentor_epochs=(0, 1, 2) if mentor is not None else (),
                restart_when="improves" if method == "catalyst-guarded" else "always",
                seed=seed,
            )
            start = time.perf_counter()
            result = Catalyst(task, mentor, config, progress=True).run()
            row = {
                "task": f"sentiment-lexicon-{args.rows}",
                "method": method,
                "seed": seed,
                "metric": result.test_metric,
                "higher_is_better": False,
                "llm": mentor.label if mentor is not None else "",
                "date": datetime.date.today().isoformat(),
                "metric_name": "test rmse",
                "best_validation": result.best_validation,
                "best_epoch": result.best_epoch,
                "restarts": result.restarts,
                "best_prompt": result.best_prompt,
                "epochs": args.epochs,
                "seconds": round(time.perf_counter() - start, 1),
                "hardware": f"{platform.machine()} CPU, {args.threads} torch thread(s)",
                "command": command,
            }
            save_row(row)


if __name__ == "__main__":
    main()
