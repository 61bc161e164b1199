"""LLM catalyst: gradient-based soft-prompt tuning alternating with an LLM mentor's restarts
(arXiv 2405.19732).

* :class:`Catalyst` — the loop (:mod:`llmbo.catalyst.run`); :class:`CatalystResult`;
* :class:`CatalystConfig` — its settings;
* :class:`Mentor` — the meta-prompt and the parsing of its replies;
* :class:`SoftPromptModel` — PEFT prompt tuning with a task head and the nearest-token
  projection;
* :class:`CatalystRecord` — the run's history in llmbo's study storage.

The task is a :class:`~llmbo.hpo.LoraTask` (model, splits, metric), e.g.
:func:`~llmbo.hpo.sentiment_lexicon_task`; the mentor is any
:class:`~llmbo.llm.ChatBackend`.
"""

from llmbo.catalyst.config import CatalystConfig
from llmbo.catalyst.mentor import Consultation, Mentor, ScoredPrompt, parse_proposals
from llmbo.catalyst.model import SoftPromptModel
from llmbo.catalyst.record import CatalystRecord
from llmbo.catalyst.run import Catalyst, CatalystResult

__all__ = [
    "Catalyst",
    "CatalystConfig",
    "CatalystRecord",
    "CatalystResult",
    "Consultation",
    "Mentor",
    "ScoredPrompt",
    "SoftPromptModel",
    "parse_proposals",
]
