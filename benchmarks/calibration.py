"""How honest is a surrogate's uncertainty during a benchmark campaign?

Runs the reaction protocol for one pool, method and seed and, after every fit, compares the
GP's predictive distribution (noise included) over the *untested* reactions with their
true yields: median predictive standard deviation, root-mean-square error of the posterior mean, the share of reactions
whose true yield lies within two standard deviations, and the Spearman correlation.
A model whose errors dwarf its standard deviations is overconfident and lets the
acquisition function exploit one region for good. Rows go to
``benchmarks/results/calibration.csv``. Example::

    python benchmarks/calibration.py --benchmark bh1 --methods projection-seg,drfp --seeds 2 \\
        --iterations 30 --template names
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from llmbo.benchmarks.datasets import load_pool
from llmbo.benchmarks.methods import method_label
from llmbo.benchmarks.protocol import initial_design
from llmbo.benchmarks.runner import build_surrogate, cpu_description
from llmbo.optimizer import Optimizer, TableObjective
from llmbo.surrogates.config import parse_value

COLUMNS = [
    "benchmark",
    "method",
    "template",
    "seed",
    "n_train",
    "posterior_sd_median",
    "rmse",
    "within_2sd",
    "spearman",
    "gp_noise",
    "cpu",
    "date",
]


def _calibration(fitted: Any, untested: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    with torch.no_grad():
        x = fitted.features[torch.from_numpy(untested)]
        post = fitted.model.posterior(x, observation_noise=True)  # measured yields are noisy
        mean = post.mean.squeeze(-1).cpu().numpy()
        sd = post.variance.clamp_min(0).sqrt().squeeze(-1).cpu().numpy()
    error = truth - mean
    noise = getattr(getattr(fitted.model, "likelihood", None), "noise", None)
    noise = noise.detach() if noise is not None else None
    return {
        "posterior_sd_median": float(np.median(sd)),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "within_2sd": float(np.mean(np.abs(error) <= 2 * sd)),
        "spearman": float(spearmanr(mean, truth).statistic),
        "gp_noise": float(noise.mean()) if noise is not None else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="bh1")
    parser.add_argument("--methods", default="projection-seg,drfp")
    parser.add_argument("--template", default="names")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default="benchmarks/results/calibration.csv")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {}
    for item in args.set:
        key, _, value = item.partition("=")
        options[key] = parse_value(value)
    if any(key.split(".")[0] == "acquisition" for key in options):
        # The errors below compare the model's predictions with the yields themselves, which
        # an outcome warp would put on another scale; the acquisition does not enter them.
        parser.error("--set acquisition... does not apply: this script measures the surrogate.")
    pool = load_pool(args.benchmark)
    space = pool.space(args.template)
    values = np.asarray(pool.values, dtype=np.float64)
    out = Path(args.output)
    new = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for method in args.methods.split(","):
            surrogate = build_surrogate(
                pool, method, template=args.template, model="minilm", options=options
            )
            for seed in [int(s) for s in args.seeds.split(",")]:
                opt = Optimizer(space, surrogate, seed=seed, progress=False)
                starts = initial_design(values, 10, seed)
                opt.tell([space.ids[i] for i in starts], values[starts].tolist())

                def record(o: Optimizer, ids: list[str], vals: list[float], m=method, s=seed):
                    fitted = o.last_fit.get("fitted")
                    if fitted is None:
                        return
                    done = o.space.index_of(o.history["candidate_id"].astype(str).tolist())
                    untested = np.setdiff1d(np.arange(len(space)), done)
                    row = {
                        "benchmark": args.benchmark,
                        "method": method_label(m, options),
                        "template": args.template,
                        "seed": s,
                        "n_train": o.last_fit["n_train"],
                        **_calibration(fitted, untested, values[untested]),
                        "cpu": cpu_description(),
                        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    }
                    writer.writerow(row)
                    fh.flush()

                opt.run(TableObjective(space, pool.target), args.iterations, callback=record)
                print(f"{method} seed {seed}: done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
