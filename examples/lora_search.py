"""Tune LoRA hyperparameters: language-aided BO over a small grid with real PEFT trials on a
proxy subset of ESOL (solubility from SMILES, MiniLM + LoRA).

    python examples/lora_search.py [--smoke]
"""

from __future__ import annotations

from _common import parse

from llmbo.hpo import LoraSearch, LoraSearchSpace, TrainingConfig, esol_task

args = parse(__doc__.splitlines()[0])
grid = {"r": [2, 8], "alpha_ratio": [1, 4], "learning_rate": [1e-4, 1e-3]}
space = LoraSearchSpace(grid=grid, fixed={"lora_dropout": 0.0, "batch_size": 32})
search = LoraSearch(
    esol_task(),
    space,
    training=TrainingConfig(epochs=1 if args.smoke else 5),
    proxy_fraction=0.05 if args.smoke else 0.1,
    initial_trials=2,
    storage=args.out / "hpo.db",
    seed=0,
)
search.run(3 if args.smoke else 8)
print(search.best())
