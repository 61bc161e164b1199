"""Seconds per BO iteration of the LoRA search on the full 45,360-configuration grid.

    python benchmarks/hpo_speed.py [--threads 2] [--observations 30] [--repeats 3]

One iteration = fit the surrogate to the observations + score every untried
configuration with the acquisition + pick one (llmbo's public API: a Bayesian proposer
on the grid's candidate space). Observations are a seeded random design valued by a
synthetic function of the configuration (timing does not depend on the values). Also
reported: the one-time preparation per study (reading the prompts), and, for the
in-context variant, the measured time to read a 2,000-prompt sample in one pass per
prompt. Appends rows to benchmarks/results/hpo_speed.csv.
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

from llmbo.hpo import LoraSearchSpace
from llmbo.hpo.search import METHODS
from llmbo.proposers import Observations
from llmbo.space import CandidateSpace

OUT = Path(__file__).parent / "results" / "hpo_speed.csv"


def synthetic(frame: pd.DataFrame) -> np.ndarray:
    lr = np.log10(frame["learning_rate"].to_numpy(float))
    scale = np.log2(frame["alpha_ratio"].to_numpy(float))
    return -((lr + 3.5 - 0.2 * scale) ** 2) - 0.05 * np.log2(frame["r"].to_numpy(float))


def time_method(name: str, space: CandidateSpace, n_obs: int, repeats: int) -> dict:
    method = METHODS.get(name)
    proposer = method.proposer("minilm", 2)
    start = time.perf_counter()
    proposer.prepare(space)
    prepare = time.perf_counter() - start
    rng = np.random.default_rng(0)
    index = rng.choice(len(space), n_obs, replace=False)
    values = synthetic(space.frame.iloc[index])
    available = np.setdiff1d(np.arange(len(space)), index)
    seconds = []
    for k in range(repeats):
        obs = Observations(index, values, np.array([], dtype=np.int64), available)
        start = time.perf_counter()
        proposer.propose(space, obs, 1, seed=k)
        seconds.append(time.perf_counter() - start)
    return {
        "prepare_seconds": prepare,
        "iteration_seconds": float(np.median(seconds)),
        "iteration_seconds_max": max(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--observations", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--in-context-sample", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    base = dict(
        observations=args.observations,
        hardware=f"{platform.machine()} CPU, {args.threads} torch threads (2-core machine)",
        date=datetime.date.today().isoformat(),
        command=f"python benchmarks/hpo_speed.py --threads {args.threads} --observations {args.observations}",
    )
    import os

    base["load_average_1min"] = round(os.getloadavg()[0], 2)
    for name in ("llmbo", "llmbo-no-token", "llmbo-bare", "standard-bo"):
        grid = LoraSearchSpace(prompt=METHODS.get(name).prompt)  # type: ignore[arg-type]
        space = grid.candidate_space()
        result = time_method(name, space, args.observations, args.repeats)
        rows.append({"method": name, "candidates": len(space), **result, **base})
        print(rows[-1])
    # The in-context variant reads one prompt per pass: measured on a sample of the grid.
    grid = LoraSearchSpace()
    full = grid.candidate_space()
    sample = np.random.default_rng(0).choice(len(full), args.in_context_sample, replace=False)
    space = CandidateSpace(full.frame.iloc[np.sort(sample)].reset_index(drop=True), grid.render)
    result = time_method("llmbo-in-context", space, args.observations, args.repeats)
    scale = len(full) / len(space)
    rows.append(
        {
            "method": "llmbo-in-context",
            "candidates": len(space),
            **result,
            **base,
            "note": f"prepare for all {len(full)} prompts ~ {result['prepare_seconds'] * scale:.0f} s "
            f"(x{scale:.1f}, extrapolated, not run)",
        }
    )
    print(rows[-1])
    frame = pd.DataFrame(rows)
    frame.to_csv(OUT, mode="a", header=not OUT.is_file(), index=False)
    ok = frame.loc[frame.method == "llmbo", "iteration_seconds"].iloc[0]
    print(
        f"llmbo (with token), 45,360 configurations, {args.observations} observations: "
        f"{ok:.2f} s per iteration (target <= 10 s): {'met' if ok <= 10 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
