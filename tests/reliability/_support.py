"""Helpers of the reliability suite, kept light: spawned worker processes import them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"]
ANIMALS = ["cat", "dog", "fox", "owl", "bee"]
TEMPLATE = "{color} {animal}"


def animal_table() -> pd.DataFrame:
    """40 candidates ``"<color> <animal>"`` with a known value ``y`` (best: white fox)."""
    rows = [
        {"color": c, "animal": a, "y": 0.5 * i + (3.0 if a == "fox" else 0.1 * j)}
        for i, c in enumerate(COLORS)
        for j, a in enumerate(ANIMALS)
    ]
    return pd.DataFrame(rows)


def campaign_worker(
    url: str, study_name: str, log_path: str, iterations: int, batch_size: int, start: Any
) -> None:
    """Open (or create) the shared study and ``Optimizer.run`` on it, logging evaluations.

    Every worker uses the same seed, so their proposals collide on purpose.
    """
    from llmbo.optimizer import Optimizer
    from llmbo.space import CandidateSpace

    space = CandidateSpace(animal_table(), TEMPLATE)
    log = Path(log_path)

    def objective(rows: Any) -> list[float]:
        values = [float(v) for v in rows["y"]]
        with log.open("a") as fh:
            for cid, v in zip(rows.index, values, strict=True):
                fh.write(json.dumps({"pid": os.getpid(), "id": str(cid), "value": v}) + "\n")
        time.sleep(0.3)  # longer than a heartbeat: the lease is extended meanwhile
        return values

    start.wait(120)  # all workers open the (not yet existing) study at once
    opt = Optimizer(
        space,
        "random",
        seed=0,
        storage=url,
        study_name=study_name,
        progress=False,
        lease_seconds=30.0,
        heartbeat_seconds=0.2,
    )
    opt.run(objective, iterations, batch_size=batch_size)
