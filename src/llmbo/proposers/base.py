"""The proposer contract: observations of a study in, the candidates to try next out.

A :class:`~llmbo.study.Study` owns trials and storage; a :class:`Proposer` owns the model
(or lack of one) that decides what to try. The study hands the proposer everything it
may use — the space, the pool rows measured so far with their values (always to be
maximised: the study negates them when minimising), the rows that are pending and those
still available — and a seed derived from the study seed and the number of trials, so
the same study state always gives the same proposal. New sources of candidates (an LLM,
a Ray Tune searcher, ...) plug in by implementing :meth:`Proposer.propose` and registering
a factory in :data:`PROPOSERS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from llmbo.errors import StudyError
from llmbo.registry import Registry
from llmbo.space import CandidateSpace

__all__ = ["PROPOSERS", "Observations", "Proposal", "Proposer", "proposer_from_config"]


@dataclass(frozen=True)
class Observations:
    """What a study knows when it asks for candidates.

    Attributes:
        index: Pool rows (``space.ids[i]``) with a measured value, in trial order.
        values: Their values, oriented so that larger is better.
        pending: Pool rows suggested or running but not measured yet.
        available: Pool rows that may be proposed (not measured, not pending).
    """

    index: np.ndarray
    values: np.ndarray
    pending: np.ndarray
    available: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class Proposal:
    """The rows a proposer chose (in order) and what it wants to report about the choice.

    ``info`` holds diagnostics, e.g. for the Bayesian proposer ``seconds``, ``n_train``,
    training ``losses``, the ``fallback`` used and the ``fitted`` model.
    """

    index: list[int]
    info: dict[str, Any] = field(default_factory=dict)


class Proposer(ABC):
    """Chooses ``n`` candidates from the available ones.

    Subclasses implement :meth:`propose` and :meth:`config` and register a factory
    ``factory(config_dict) -> Proposer`` under their ``name`` in :data:`PROPOSERS`, so a
    stored study can rebuild its proposer. ``runtime_settings`` names the dotted config
    keys that say where to run, not what to compute (they may differ on reopening).
    """

    name: ClassVar[str] = "proposer"
    runtime_settings: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        """``n`` distinct rows of ``observed.available``; a deterministic function of the
        arguments (the global torch RNG may be used only under ``seed``)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The serialisable settings that define this proposer, with ``"name"``; the
        registered factory rebuilds an equal proposer from it."""

    def prepare(self, space: CandidateSpace, *, progress: bool = False) -> None:  # noqa: B027
        """Pre-compute what does not depend on observations (optional)."""

    @property
    def label(self) -> str:
        """A short name for progress bars and logs."""
        return self.name


#: Proposer factories ``factory(config: dict) -> Proposer`` by name.
PROPOSERS: Registry[Callable[[dict[str, Any]], Proposer]] = Registry("proposer")


def proposer_from_config(config: dict[str, Any]) -> Proposer:
    """Rebuild the proposer a stored config describes (:class:`StudyError` if unreadable)."""
    from llmbo import proposers  # noqa: F401  (registers the built-in proposers)

    if not isinstance(config, dict) or "name" not in config:
        raise StudyError(f"A proposer config needs a 'name'; got {config!r}.")
    return PROPOSERS.get(str(config["name"]))(config)
