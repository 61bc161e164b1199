"""How well each LoRA-search surrogate ranks held-out configurations of the full grid.

    python research/screens/lora_live_surrogates.py [--splits 20] [--train 30]

Pools every completed trial of the live searches in benchmarks/results/lora_hpo_live.db
(all methods and seeds; a configuration trained twice has the same value, trials being
deterministic), then, for ``--splits`` random splits, fits each surrogate on ``--train``
of them and scores the rest: Spearman correlation of the posterior mean with the negated
RMSE, and the held-out RMSE of the configuration the posterior mean ranks first (its
regret against the best held-out one). This is issue 22's first research round: is the
LLM surrogate's model of the full grid worse than the numeric GP's, or is the gap in how
the search uses it?

Prints one line per surrogate: label, mean Spearman ± s.e., mean regret ± s.e.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr

from llmbo.hpo import LoraSearchSpace
from llmbo.storage import SQLStorage, TrialState
from llmbo.surrogates import make_surrogate, surrogate_config
from llmbo.surrogates.deep_kernel import DeepKernelConfig

DB = "sqlite:///benchmarks/results/lora_hpo_live.db"

VARIANTS = {
    "token (llmbo)": ("knowledge", dict(name="token", token=True)),
    "no token": ("knowledge", dict(name="token", token=False)),
    "bare prompt": ("bare", dict(name="token", token=True)),
    "numeric (standard-bo)": ("knowledge", dict(name="numeric")),
    "token, no projection": (
        "knowledge",
        dict(name="token", token=True, deep_kernel=DeepKernelConfig(projection_dim=None)),
    ),
    "token + numeric side (joint)": (
        "knowledge",
        dict(name="token", token=True, side_features="numeric"),
    ),
    "token + numeric side (fixed)": (
        "knowledge",
        dict(
            name="token",
            token=True,
            side_features="numeric",
            deep_kernel=DeepKernelConfig(side_fit="fixed"),
        ),
    ),
    "no token, no projection": (
        "knowledge",
        dict(name="token", token=False, deep_kernel=DeepKernelConfig(projection_dim=None)),
    ),
}


def pooled_trials() -> dict[str, float]:
    storage = SQLStorage(DB)
    values: dict[str, float] = {}
    for name in storage.study_names():
        record = storage.load_study(name)
        for trial in storage.trials(record.study_id, [TrialState.COMPLETE]):
            values[trial.candidate_id] = float(trial.value)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--train", type=int, default=30)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    values = pooled_trials()
    print(f"{len(values)} distinct configurations", flush=True)
    ids = list(values)
    # Candidate ids depend on the prompt text; rows are in grid order for every prompt.
    positions = LoraSearchSpace().candidate_space().index_of(ids)
    index = torch.as_tensor(positions, dtype=torch.long)
    y = -torch.tensor([values[i] for i in ids], dtype=torch.float64)
    for label in args.only:
        prompt, options = VARIANTS[label]
        space = LoraSearchSpace(prompt=prompt).candidate_space()
        name = options.pop("name")
        config = surrogate_config(name, **options)
        options["name"] = name
        surrogate = make_surrogate(config)
        surrogate.prepare(space)
        rhos, regrets = [], []
        for split in range(args.splits):
            rng = np.random.default_rng(split)
            order = rng.permutation(len(ids))
            train, test = order[: args.train], order[args.train :]
            torch.manual_seed(split)
            surrogate.reset()
            fitted = surrogate.fit(index[train], y[train])
            with torch.no_grad():
                mean = fitted.model.posterior(fitted.features[index[test]]).mean.flatten()
            rhos.append(spearmanr(mean.numpy(), y[test].numpy()).statistic)
            pick = int(torch.argmax(mean))
            regrets.append(float(y[test].max() - y[test][pick]))
        rhos_a, reg_a = np.array(rhos), np.array(regrets)
        se = lambda a: a.std(ddof=1) / np.sqrt(len(a))  # noqa: E731
        print(
            f"{label:24s} spearman {rhos_a.mean():.3f} ± {se(rhos_a):.3f}   "
            f"regret of top pick {reg_a.mean():.3f} ± {se(reg_a):.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
