"""Language-aided LoRA hyperparameter search (arXiv 2602.11171) on llmbo's engine.

* :class:`LoraSearchSpace` — the grid (45,360 configurations by default) as a candidate
  space whose prompts explain each hyperparameter and their interactions;
* :class:`LoraTask` / :func:`esol_task` / :func:`sentiment_lexicon_task` — model, data splits and metric of a trial;
  :func:`run_trial` — one real PEFT LoRA training run on a proxy subset, failures caught;
* :class:`LoraSearch` — the search: a durable study, the ``token`` surrogate (or an
  ablation, random, TPE), sequential or on Ray workers, resumable;
* :class:`~llmbo.hpo.tune.LlmboSearcher` — the same search as a Ray Tune ``Searcher``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "DEFAULT_CONFIGURATION",
    "METHODS",
    "PAPER_GRID",
    "LoraSearch",
    "LoraSearchSpace",
    "LoraTask",
    "TrainingConfig",
    "TrialOutcome",
    "esol_task",
    "run_trial",
    "sentiment_lexicon_task",
    "train_and_score",
]

_WHERE = {
    "DEFAULT_CONFIGURATION": "space",
    "PAPER_GRID": "space",
    "LoraSearchSpace": "space",
    "LoraTask": "task",
    "TrainingConfig": "task",
    "esol_task": "task",
    "sentiment_lexicon_task": "task",
    "TrialOutcome": "trial",
    "run_trial": "trial",
    "train_and_score": "trial",
    "LoraSearch": "search",
    "METHODS": "search",
}

if TYPE_CHECKING:
    from llmbo.hpo.search import METHODS, LoraSearch
    from llmbo.hpo.space import DEFAULT_CONFIGURATION, PAPER_GRID, LoraSearchSpace
    from llmbo.hpo.task import LoraTask, TrainingConfig, esol_task, sentiment_lexicon_task
    from llmbo.hpo.trial import TrialOutcome, run_trial, train_and_score


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'llmbo.hpo' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"llmbo.hpo.{_WHERE[name]}"), name)
