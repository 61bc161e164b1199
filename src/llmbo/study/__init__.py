"""Durable studies: trials, leases and storage (see :mod:`llmbo.study.core`)."""

from llmbo.study.core import Objective, Study, derived_seed
from llmbo.study.settings import stored_proposer_config

__all__ = ["Objective", "Study", "derived_seed", "stored_proposer_config"]
