"""Every packaged pool by name: the one registry the CLI and the benchmarks read.

:data:`POOLS` maps a name to a loader returning a fresh
:class:`~llmbo.datasets.pool.CandidatePool`; :data:`POOL_NAMES` lists them in protocol
order, the reaction pools (:mod:`llmbo.datasets.reactions`) first, then the molecule pools
(:mod:`llmbo.datasets.molecules`). :func:`pool_maximizes` tells a pool's direction without
loading its data (for reports written from results files).
"""

from __future__ import annotations

from collections.abc import Callable

from llmbo.datasets.molecules import MOLECULE_POOL_DEFS, MOLECULE_POOL_LOADERS
from llmbo.datasets.pool import CandidatePool
from llmbo.datasets.reactions import REACTION_POOL_LOADERS
from llmbo.registry import Registry

__all__ = ["POOLS", "POOL_NAMES", "load_pool", "pool_maximizes"]

_LOADERS: dict[str, Callable[[], CandidatePool]] = {
    **REACTION_POOL_LOADERS,
    **MOLECULE_POOL_LOADERS,
}

#: Pool name -> loader returning a fresh :class:`~llmbo.datasets.pool.CandidatePool`.
POOLS: Registry[Callable[[], CandidatePool]] = Registry("pool")
for _name, _load in _LOADERS.items():
    POOLS.register(_name)(_load)

#: Names of the packaged pools, in protocol order: bh1..bh5, suzuki, esol, freesolv.
POOL_NAMES: tuple[str, ...] = tuple(_LOADERS)

_MAXIMIZE: dict[str, bool] = {d.name: d.maximize for d in MOLECULE_POOL_DEFS}


def load_pool(name: str) -> CandidatePool:
    """Load a packaged pool by name (one of :data:`POOL_NAMES`)."""
    return POOLS.get(name)()


def pool_maximizes(name: str) -> bool:
    """Whether the packaged pool ``name`` is maximised, read from its definition (its data
    is not loaded). Every reaction pool maximises its yield.

    Raises:
        InputError: No pool has that name.
    """
    POOLS.get(name)
    return _MAXIMIZE.get(name.lower(), True)
