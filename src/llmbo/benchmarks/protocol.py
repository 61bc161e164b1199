"""The benchmark protocol: run settings and the seeded initial design.

:func:`initial_design` lives in :mod:`llmbo.design` and is re-exported here.

See DESIGN.md, "Benchmark protocol": 10 initial candidates drawn uniformly from the worse
half of the pool (at or below the median; at or above it on a pool that is minimised, such
as ``freesolv``), then 50 sequential iterations in the pool's direction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmbo.design import initial_design
from llmbo.errors import InputError

if TYPE_CHECKING:
    from llmbo.datasets import CandidatePool

__all__ = ["ProtocolConfig", "initial_design"]


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of one benchmark run (defaults are the protocol's).

    Attributes:
        n_initial: Size of the random initial design.
        iterations: Number of BO iterations after the initial design.
        batch_size: Candidates proposed per iteration.
        maximize: Whether a larger value is better. ``None`` (default): the pool's own
            direction (:attr:`~llmbo.datasets.CandidatePool.maximize`); a value given
            must agree with it (see :meth:`for_pool`).
    """

    n_initial: int = 10
    iterations: int = 50
    batch_size: int = 1
    maximize: bool | None = None

    def __post_init__(self) -> None:
        for name in ("n_initial", "iterations", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"ProtocolConfig.{name} must be an integer, got {value!r}.")
        if self.n_initial < 1 or self.iterations < 0 or self.batch_size < 1:
            raise InputError(
                "ProtocolConfig needs n_initial >= 1, iterations >= 0 and batch_size >= 1; got "
                f"{self.n_initial}, {self.iterations}, {self.batch_size}."
            )
        if self.maximize is not None and not isinstance(self.maximize, bool):
            raise InputError(
                f"ProtocolConfig.maximize must be True, False or None, got {self.maximize!r}."
            )

    def for_pool(self, pool: CandidatePool) -> ProtocolConfig:
        """These settings with the direction of ``pool`` (:attr:`maximize` set).

        Raises:
            InputError: :attr:`maximize` was given and contradicts the pool's direction.
        """
        if self.maximize is None:
            return dataclasses.replace(self, maximize=pool.maximize)
        if self.maximize != pool.maximize:
            wanted = "maximised" if pool.maximize else "minimised"
            raise InputError(
                f"Pool {pool.name!r} is {wanted} ({pool.target!r}), but the protocol says "
                f"maximize={self.maximize}; leave maximize unset to follow the pool."
            )
        return self

    @property
    def budget(self) -> int:
        """Total number of evaluations: initial design plus all iterations."""
        return self.n_initial + self.iterations * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (round-trips through :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProtocolConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"Unknown ProtocolConfig field(s) {unknown}; known: {sorted(known)}.")
        return cls(**data)
