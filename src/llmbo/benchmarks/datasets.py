"""The benchmark pools, re-exported: they live in :mod:`llmbo.datasets` (see there).

Kept so that code written against ``llmbo.benchmarks.datasets`` keeps working; new code
imports from :mod:`llmbo.datasets`.
"""

from __future__ import annotations

from llmbo.datasets import *  # noqa: F403
from llmbo.datasets import __all__ as __all__
