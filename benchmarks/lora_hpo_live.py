"""Live 30-trial LoRA searches on the full 45,360-configuration grid (llmbo public API).

    python benchmarks/lora_hpo_live.py [--seeds 3] [--trials 30] [--methods llmbo random tpe]

Each search is a real :class:`llmbo.hpo.LoraSearch` on ESOL (MiniLM + LoRA, 10 % proxy,
5 epochs, validation RMSE), stored in benchmarks/results/lora_hpo_live.db (so an
interrupted run resumes). A trial is deterministic given its configuration (fixed
training seed), so a configuration another search already trained is not trained again:
its stored value is reused (the search still counts it as one of its trials). Appends one
row per method and seed to benchmarks/results/lora_hpo.csv (``table`` = live).
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

import pandas as pd
import torch

from llmbo.hpo import LoraSearch, TrainingConfig, TrialOutcome, esol_task, run_trial
from llmbo.hpo.space import DEFAULT_CONFIGURATION

RESULTS = Path(__file__).parent / "results"
TRAINING = TrainingConfig(epochs=5, max_length=64, seed=0)


class ReusingTrials:
    """``run_trial`` that returns the stored outcome of a configuration trained before."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[str, TrialOutcome] = {}
        if path.is_file():
            for row in pd.read_csv(path).to_dict("records"):
                value = row["value"] if pd.notna(row["value"]) else None
                error = row["error"] if isinstance(row["error"], str) and row["error"] else None
                self.known[row["key"]] = TrialOutcome(value, error, row["seconds"])

    def __call__(self, task, params, training=None, **kwargs):  # type: ignore[no-untyped-def]
        key = repr(sorted(params.items())) + repr(sorted(kwargs.items()))
        if key not in self.known:
            outcome = run_trial(task, params, training, **kwargs)
            self.known[key] = outcome
            pd.DataFrame(
                [
                    {
                        "key": key,
                        "value": outcome.value,
                        "error": outcome.error or "",
                        "seconds": outcome.seconds,
                    }
                ]
            ).to_csv(self.path, mode="a", header=not self.path.is_file(), index=False)
        return self.known[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--methods", nargs="+", default=["llmbo", "random", "tpe"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse = ReusingTrials(RESULTS / "lora_hpo_live_trials.csv")
    task = esol_task()
    default = reuse(task, {**DEFAULT_CONFIGURATION}, TRAINING, proxy_fraction=0.1).value
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for method in args.methods:
            search = LoraSearch(
                task,
                method=method,
                training=TRAINING,
                seed=seed,
                storage=str(RESULTS / "lora_hpo_live.db"),
                study_name=f"esol-{method}-seed{seed}",
                progress=True,
                runner=reuse,
            )
            search.run(args.trials)
            best = search.best()
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "trials": args.trials,
                    "best_metric": best["value"] if best else float("nan"),
                    "default_metric": default,
                    "higher_is_better": False,
                    "task": "esol-rmse",
                    "table": "live",
                    "date": datetime.date.today().isoformat(),
                    "hardware": f"{platform.machine()} CPU, {args.threads} torch thread(s)",
                    "command": f"python benchmarks/lora_hpo_live.py --seeds {args.seeds} --trials {args.trials}",
                }
            )
            print(rows[-1], flush=True)
            out = RESULTS / "lora_hpo.csv"
            frame = pd.DataFrame([rows[-1]])
            if out.is_file():
                old = pd.read_csv(out)
                old = old[
                    ~((old["table"] == "live") & (old["method"] == method) & (old["seed"] == seed))
                ]
                frame = pd.concat([old, frame], ignore_index=True)
            frame.to_csv(out, index=False)


if __name__ == "__main__":
    main()
