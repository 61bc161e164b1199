"""The mentor: an LLM reads the prompts a training stage went through, with their
validation losses, and proposes new prompts to restart from.

:meth:`Mentor.consult` builds the meta-prompt (the shown prompts sorted from the highest
loss to the lowest, so the best comes last, and a request for ``proposals`` new prompts
under ``max_words`` words, one per line), sends it, and parses the reply: list markers,
numbering, quotes and code fences are stripped, and each line is checked (non-empty, a
word count within ``[min_words, max_words]``, not a heading or an echo of the request,
at least one vocabulary token). Every reply line ends up accepted or rejected with a
reason. A backend that cannot answer is an :class:`Consultation` with ``error`` set and no
proposals: the caller trains on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from llmbo.errors import LLMError
from llmbo.llm.base import ChatBackend, ChatMessage, GenerationConfig

logger = logging.getLogger("llmbo.catalyst")

__all__ = ["Consultation", "Mentor", "ScoredPrompt", "parse_proposals"]

_MARKER = re.compile(r"^\s*(?:[-*•+>]+|\(?\d{1,2}[.):]|[a-zA-Z][.)])\s*")
_LABEL = re.compile(r"^\s*(?:new\s+)?prompt\s*\d*\s*[:=-]\s*", re.IGNORECASE)
_QUOTES = "\"'`“”‘’«»"


@dataclass(frozen=True)
class ScoredPrompt:
    """A prompt shown to the mentor with its validation loss and metric."""

    text: str
    loss: float
    metric: float


@dataclass
class Consultation:
    """One exchange with the mentor: what was asked, what came back, what was kept."""

    messages: list[dict[str, str]]
    replies: list[str] = field(default_factory=list)
    proposals: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "replies": self.replies,
            "proposals": self.proposals,
            "rejected": self.rejected,
            "error": self.error,
        }


def _clean(line: str) -> str:
    line = line.strip()
    previous = None
    while previous != line:
        previous = line
        line = _MARKER.sub("", line, count=1).strip()
        line = _LABEL.sub("", line, count=1).strip()
        line = line.strip(_QUOTES).strip()
        line = re.sub(r"^\*\*(.*)\*\*$", r"\1", line).strip()
    return line


def parse_proposals(
    reply: str,
    *,
    min_words: int,
    max_words: int,
    tokens: Callable[[str], list[int]],
    shown: Sequence[str] = (),
) -> tuple[list[str], list[dict[str, str]]]:
    """Accepted prompts of ``reply`` (in order, distinct) and the rejected lines with the
    reason. ``tokens`` maps a text to its vocabulary tokens (empty: not tokenisable)."""
    accepted: list[str] = []
    rejected: list[dict[str, str]] = []
    seen = {s.strip().lower() for s in shown}
    for raw in reply.replace("\r", "\n").split("\n"):
        if not raw.strip() or raw.strip().startswith("```"):
            continue
        text = _clean(raw)
        words = text.split()
        reason = None
        if not text:
            reason = "empty after removing list markers and quotes"
        elif text.endswith(":"):
            reason = "a heading, not a prompt"
        elif len(words) < min_words:
            reason = f"shorter than {min_words} word(s)"
        elif len(words) > max_words:
            reason = f"longer than {max_words} words"
        elif text.lower() in seen:
            reason = "repeats a prompt already shown or proposed"
        elif not tokens(text):
            reason = "no vocabulary token of the trained model"
        if reason:
            rejected.append({"line": raw.strip(), "reason": reason})
            continue
        seen.add(text.lower())
        accepted.append(text)
    return accepted, rejected


class Mentor:
    """Asks a chat LLM for better prompts.

    Args:
        backend: The LLM.
        task_description: One sentence on what the prompted model must do.
        proposals: How many prompts to ask for.
        min_words: Fewest words of an accepted prompt.
        max_words: Most words of an accepted prompt.
        generation: Sampling settings (``n`` is set to 1).
    """

    def __init__(
        self,
        backend: ChatBackend,
        task_description: str,
        *,
        proposals: int = 3,
        min_words: int = 1,
        max_words: int = 9,
        generation: GenerationConfig | None = None,
    ) -> None:
        self.backend = backend
        self.task_description = task_description
        self.proposals = proposals
        self.min_words = min_words
        self.max_words = max_words
        self.generation = replace(generation or GenerationConfig(), n=1)

    def messages(self, shown: Sequence[ScoredPrompt]) -> list[ChatMessage]:
        """The meta-prompt: shown prompts from the highest loss to the lowest (best last)."""
        ordered = sorted(shown, key=lambda s: -s.loss)
        listing = "\n".join(f"Prompt: {s.text}\nValidation loss: {s.loss:.4f}\n" for s in ordered)
        system = (
            "You improve the instruction placed in front of a model's input. You answer "
            "with the requested prompts only, one per line, without numbering or comments."
        )
        user = (
            f"Task: {self.task_description}\n\n"
            "These prompts were tried, sorted from the worst (highest loss) to the best "
            f"(lowest loss):\n\n{listing}\n"
            f"Write {self.proposals} new prompts, each shorter than {self.max_words} words, "
            "that you expect to reach a lower loss than all of these. One prompt per line."
        )
        return [ChatMessage("system", system), ChatMessage("user", user)]

    def consult(
        self,
        shown: Sequence[ScoredPrompt],
        tokens: Callable[[str], list[int]],
        *,
        seed: int | None = None,
    ) -> Consultation:
        """Ask for new prompts; never raises for a backend failure (see ``error``)."""
        messages = self.messages(shown)
        record = Consultation(messages=[m.to_dict() for m in messages])
        try:
            replies = self.backend.chat(messages, replace(self.generation, seed=seed))
        except LLMError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            logger.warning("The mentor (%s) did not answer: %s", self.backend.label, exc)
            return record
        record.replies = list(replies)
        for reply in replies:
            accepted, rejected = parse_proposals(
                reply,
                min_words=self.min_words,
                max_words=self.max_words,
                tokens=tokens,
                shown=[s.text for s in shown] + record.proposals,
            )
            record.proposals.extend(accepted)
            record.rejected.extend(rejected)
        if not record.proposals:
            record.error = "no usable proposal in the reply"
            logger.warning(
                "The mentor (%s) replied with no usable prompt (%d line(s) rejected).",
                self.backend.label,
                len(record.rejected),
            )
        return record
