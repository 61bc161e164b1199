"""Random search as a proposer: uniform choices among the available candidates."""

from __future__ import annotations

from typing import Any

import torch

from llmbo.errors import StudyError
from llmbo.proposers.base import PROPOSERS, Observations, Proposal, Proposer
from llmbo.space import CandidateSpace

__all__ = ["RandomProposer", "random_rows"]


def random_rows(available: Any, n: int, seed: int) -> list[int]:
    """``n`` distinct rows drawn uniformly from ``available`` by a generator seeded with
    ``seed`` (the same draw as :func:`llmbo.acquisition.select_candidates` without a model)."""
    rows = torch.as_tensor(available, dtype=torch.long)
    gen = torch.Generator().manual_seed(int(seed))
    return rows[torch.randperm(len(rows), generator=gen)[:n]].tolist()


class RandomProposer(Proposer):
    """The random-search baseline: every suggestion uniform over the untried candidates."""

    name = "random"

    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        return Proposal(random_rows(observed.available, n, seed), {"n_train": len(observed)})

    def config(self) -> dict[str, Any]:
        return {"name": self.name}


@PROPOSERS.register("random")
def _from_config(config: dict[str, Any]) -> RandomProposer:
    extra = sorted(set(config) - {"name"})
    if extra:
        raise StudyError(f"The random proposer has no settings; got {extra}.")
    return RandomProposer()
