"""A scripted chat backend for tests of code that consults an LLM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmbo.llm.base import ChatBackend, GenerationConfig

__all__ = ["ScriptedBackend"]


class ScriptedBackend(ChatBackend):
    """Replies from ``replies`` in turn (cycled), or raises ``fail``; keeps every request.

    Args:
        replies: Reply texts, one per request.
        fail: An exception to raise on every request (e.g. ``LLMUnavailableError``).
    """

    name = "scripted"

    def __init__(self, replies: Sequence[str] = (), fail: BaseException | None = None) -> None:
        if not replies and fail is None:
            raise ValueError("Give replies or an exception to raise.")
        self.replies = list(replies)
        self.fail = fail
        self.requests: list[Any] = []
        self.generations: list[GenerationConfig | None] = []

    def chat(self, messages: Any, generation: GenerationConfig | None = None) -> list[str]:
        self.requests.append(messages)
        self.generations.append(generation)
        if self.fail is not None:
            raise self.fail
        n = generation.n if generation is not None else 1
        start = len(self.requests) - 1
        return [self.replies[(start + i) % len(self.replies)] for i in range(n)]

    def describe(self) -> dict[str, Any]:
        return {"backend": "scripted", "model": "script"}
