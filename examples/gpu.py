"""Run on a GPU when there is one (the CPU otherwise): the LoRA deep kernel on bh1.

python examples/gpu.py [--smoke]
"""

from __future__ import annotations

import torch
from _common import parse

from llmbo import Optimizer
from llmbo.datasets import load_pool
from llmbo.optimizer import TableObjective

args = parse(__doc__.splitlines()[0])
device = "cuda" if torch.cuda.is_available() else "cpu"
pool = load_pool("bh1")
space = pool.space()
opt = Optimizer(space, "lora", device=device, seed=0, progress=False)
objective = TableObjective(space, "yield")
opt.tell(space.ids[:10], objective(space.rows(space.ids[:10])))
opt.run(objective, iterations=2 if args.smoke else 30)
print(f"device {device}: best {opt.best_value:.1f}; last fit {opt.last_fit['seconds']:.2f} s")
