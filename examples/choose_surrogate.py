"""Choose a surrogate: the same short campaign with several presets, side by side.

python examples/choose_surrogate.py [--smoke]
"""

from __future__ import annotations

import time

from _common import parse

from llmbo import Optimizer
from llmbo.datasets import load_pool
from llmbo.optimizer import TableObjective

args = parse(__doc__.splitlines()[0])
pool = load_pool("bh1")
space = pool.space()  # the names template
objective = TableObjective(space, "yield")
presets = (
    ["random", "components-or-lora"]
    if args.smoke
    else ["random", "morgan", "projection", "lora", "components-or-lora"]
)
iterations = 3 if args.smoke else 30
for preset in presets:
    start = time.perf_counter()
    opt = Optimizer(space, preset, seed=0, progress=False)
    opt.tell(space.ids[:10], objective(space.rows(space.ids[:10])))
    opt.run(objective, iterations=iterations)
    print(f"{preset:>20}: best {opt.best_value:.1f} of {pool.values.max():.1f} "
          f"in {time.perf_counter() - start:.0f} s")  # fmt: skip
