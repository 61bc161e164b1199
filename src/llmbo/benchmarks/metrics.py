"""The benchmark metrics, re-exported: they live in :mod:`llmbo.metrics` (see there)."""

from __future__ import annotations

from llmbo.metrics import *  # noqa: F403
from llmbo.metrics import __all__ as __all__
