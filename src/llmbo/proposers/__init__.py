"""Proposers: where a study's next candidates come from (see :mod:`llmbo.proposers.base`)."""

from llmbo.proposers.base import PROPOSERS, Observations, Proposal, Proposer, proposer_from_config
from llmbo.proposers.baybe import BayBEProposer
from llmbo.proposers.bayesian import BayesianProposer
from llmbo.proposers.llm import LLMProposer
from llmbo.proposers.random import RandomProposer
from llmbo.proposers.tpe import TPEProposer
from llmbo.proposers.warm_start import WarmStartProposer

__all__ = [
    "PROPOSERS",
    "BayBEProposer",
    "BayesianProposer",
    "LLMProposer",
    "Observations",
    "Proposal",
    "Proposer",
    "RandomProposer",
    "TPEProposer",
    "WarmStartProposer",
    "proposer_from_config",
]
