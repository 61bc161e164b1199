"""Resume and share a study: stop a campaign, reopen it from the file, and get the same
suggestions as an uninterrupted campaign.

    python examples/studies.py [--smoke]
"""

from __future__ import annotations

from _common import parse

from llmbo import Optimizer
from llmbo.datasets import load_pool
from llmbo.optimizer import TableObjective

args = parse(__doc__.splitlines()[0])
pool = load_pool("bh1")
space = pool.space()
objective = TableObjective(space, "yield")
n = 4 if args.smoke else 12

straight = Optimizer(space, "components", seed=7, progress=False)
straight.run(objective, iterations=2 * n)

path = args.out / "campaign.db"
first = Optimizer(space, "components", seed=7, storage=path, study_name="screen", progress=False)
first.run(objective, iterations=n)
del first  # the process could end here
again = Optimizer.load(path, "screen", progress=False)  # another process, another day
again.run(objective, iterations=n)

same = again.history["candidate_id"].tolist() == straight.history["candidate_id"].tolist()
print(f"{len(again.history)} trials; same suggestions as without the break: {same}")
assert same
