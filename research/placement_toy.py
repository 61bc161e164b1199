"""Toy check of the LoRA placement (issue 4 note): 60-candidate synthetic pool, 12 iterations.

Run as: python research/placement_toy.py auto none  (from the repository root).
Prints, per placement and seed 0-2, the best candidate's animal and the values measured.
"""

import sys

import numpy as np
import torch

sys.path.insert(0, "tests")
from conftest import synthetic_pool
from llmbo.encoders.transformer import EncoderConfig
from llmbo.optimizer import Optimizer, TableObjective
from llmbo.space import CandidateSpace
from llmbo.surrogates import surrogate_config
from llmbo.surrogates.deep_kernel import DeepKernelConfig

torch.set_num_threads(1)
frame = synthetic_pool(seed=4).sample(n=60, random_state=2).reset_index(drop=True)
space = CandidateSpace(frame, "A {color} {animal} in the {place}.")
y = space.frame["y"].to_numpy()
for tm in sys.argv[1:]:
    for seed in (0, 1, 2):
        spec = surrogate_config(
            name="lora",
            encoder=EncoderConfig(model="minilm", device="cpu"),
            deep_kernel=DeepKernelConfig(steps=30),
            top_module=None if tm == "none" else tm,
        )
        opt = Optimizer(space, spec, seed=seed, progress=False)
        below = [cid for cid, v in zip(space.ids, y, strict=True) if v < np.median(y)]
        start = list(np.random.default_rng(seed).choice(below, 5, replace=False))
        opt.tell(start, [float(y[space.index_of(c)[0]]) for c in start])
        h = opt.run(TableObjective(space, "y"), iterations=12)
        print(tm, seed, opt.best(1)["animal"].item(), list(h["value"].round(1))[5:])
