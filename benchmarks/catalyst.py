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

import numpy as np
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


#: What each task of the table is, by task-name prefix.
SETUPS = {
    "sentiment-lexicon": (
        "all-MiniLM-L6-v2 (packaged), 8 soft-prompt vectors (PEFT prompt tuning) and a linear "
        "head on the VADER lexicon subset (split 80/10/10 with split seed 0), 5 epochs, batch "
        "32, AdamW (prompt 3e-3, head 1e-3); the metric is the test RMSE of the best "
        "validation state. `catalyst`: the mentor after epochs 0, 1 and 2 (5 decoded prompts "
        "shown, 3 asked for), restart from the first valid proposal, as the paper; "
        "`catalyst-guarded`: restart only when the proposal beats the current prompt on "
        "validation. The seed sets the initial prompt, shuffling, dropout and the mentor's "
        "sampling."
    ),
    "bh": (
        "Reaction pool, `names` template; the first 5 suggestions from the LLM (its "
        "likelihood ranks a seeded subsample of 128 candidates, shown the pool's columns and "
        "example candidates) or uniformly at random, then 15 rounds of BO with the "
        "`components` GP and LogEI; the metric is the best yield found in 20 trials."
    ),
}


def se(x: pd.Series) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def write_summary() -> str:
    """benchmarks/results/catalyst.md from catalyst.csv: per task, each method's mean and
    its difference to the baseline of the task, paired by seed."""
    frame = pd.read_csv(OUT)
    parts = ["# LLM catalyst and LLM warm starts, as measured\n"]
    for task, rows in frame.groupby("task", sort=False):
        wide = rows.pivot_table(index="seed", columns="method", values="metric")
        higher = bool(rows["higher_is_better"].iloc[0])
        base = "gradient" if "gradient" in wide else "random-start"
        llm = ", ".join(sorted({str(x) for x in rows["llm"].dropna() if str(x)}))
        setup = next((v for k, v in SETUPS.items() if str(task).startswith(k)), "")
        parts += [
            f"## {task}: {rows['metric_name'].iloc[0]} ({'higher' if higher else 'lower'} is "
            "better)",
            "",
            f"Seeds {sorted(int(x) for x in wide.index)}; LLM: {llm or 'none'}; "
            f"{rows['hardware'].iloc[0]}; {rows['date'].max()}; commands: "
            + "; ".join(f"`{c}`" for c in dict.fromkeys(rows["command"]))
            + ".",
            "",
            setup,
            "",
            f"| method | seeds | mean ± s.e. | minus {base}, paired (mean ± s.e.) | "
            "seeds better than " + base + " |",
            "|---|---|---|---|---|",
        ]
        for method in wide.columns:
            x = wide[method].dropna()
            if method == base:
                cells = "— | —"
            else:
                d = (x - wide[base]).dropna()
                wins = int((d > 0).sum() if higher else (d < 0).sum())
                cells = f"{d.mean():+.4f} ± {se(d):.4f} | {wins} of {len(d)}"
            parts.append(f"| {method} | {len(x)} | {x.mean():.4f} ± {se(x):.4f} | {cells} |")
        if "initial_best" in rows and rows["initial_best"].notna().any():
            init = rows.pivot_table(index="seed", columns="method", values="initial_best")
            d = (init.drop(columns=base).iloc[:, 0] - init[base]).dropna()
            parts += [
                "",
                "Best value of the initial design alone: "
                + ", ".join(f"{m} {init[m].mean():.2f} ± {se(init[m]):.2f}" for m in init)
                + f" (paired difference {d.mean():+.2f} ± {se(d):.2f}).",
            ]
        parts.append("")
    text = "\n".join(parts)
    (OUT.parent / "catalyst.md").write_text(text)
    return text


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
    parser.add_argument("--summary-only", action="store_true", help="only write catalyst.md")
    args = parser.parse_args()
    if args.summary_only:
        print(write_summary())
        return
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
