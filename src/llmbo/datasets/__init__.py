"""Packaged candidate pools with known values: the reaction-yield data sets.

:data:`POOLS` is the one registry of them (:data:`POOL_NAMES` in protocol order);
:func:`load_pool` returns a fresh :class:`ReactionPool`, and :meth:`ReactionPool.space` turns
it into a :class:`~llmbo.space.CandidateSpace`. The pools are data, not benchmark code: the
``llmbo`` CLI (``--benchmark NAME``) and the benchmark protocol (:mod:`llmbo.benchmarks`)
both read them from here.

* :mod:`llmbo.datasets.pool`: :class:`ReactionPool` and what its tables tell a surrogate
  (:data:`TEMPLATE_SEPARATORS`, :func:`pool_featurizer_options`);
* :mod:`llmbo.datasets.reactions`: the Buchwald–Hartwig and Suzuki–Miyaura pools.
"""

from __future__ import annotations

from llmbo.datasets import pool, reactions
from llmbo.datasets.pool import *  # noqa: F403
from llmbo.datasets.reactions import *  # noqa: F403

__all__ = [*pool.__all__, *reactions.__all__]
