"""The chat-backend contract: messages in, reply texts out (and, where the backend holds
the model's weights, the log likelihood of given replies).

Backends are registered by name in :data:`BACKENDS` (``factory(**options) -> ChatBackend``)
so that studies, the catalyst and the CLI pick one from a string; :func:`make_backend`
builds one. A backend raises :class:`~llmbo.errors.LLMUnavailableError` when it cannot
answer (connection refused, timeout, error status, malformed reply) after its own retries,
and :class:`~llmbo.errors.InputError` for settings that can never work (a URL that is not
a URL, an API-key variable that is not set, a model that does not exist). Callers decide
what an unusable answer means; none of them stops an optimisation for it.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from llmbo.errors import InputError
from llmbo.registry import Registry

__all__ = [
    "BACKENDS",
    "ChatBackend",
    "ChatMessage",
    "GenerationConfig",
    "as_messages",
    "make_backend",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a conversation."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise InputError(
                f"Chat role {self.role!r} is not one of 'system', 'user', 'assistant'."
            )
        if not isinstance(self.content, str):
            raise InputError(f"Chat content must be a string, got {type(self.content).__name__}.")

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def as_messages(messages: Sequence[ChatMessage | Mapping[str, str]] | str) -> list[ChatMessage]:
    """Normalise a prompt: a string (one user turn), dicts with ``role``/``content``, or
    :class:`ChatMessage` objects."""
    if isinstance(messages, str):
        return [ChatMessage("user", messages)]
    out = []
    for m in messages:
        if isinstance(m, ChatMessage):
            out.append(m)
        elif isinstance(m, Mapping) and "role" in m and "content" in m:
            out.append(ChatMessage(m["role"], m["content"]))  # type: ignore[arg-type]
        else:
            raise InputError(f"A chat message needs 'role' and 'content'; got {m!r}.")
    if not out:
        raise InputError("A chat request needs at least one message.")
    return out


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings of one request.

    Attributes:
        max_new_tokens: Longest reply, in tokens.
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus sampling mass.
        n: Replies wanted (backends that cannot return several ask several times).
        seed: Sampling seed (local backends; passed on to servers that accept one).
    """

    max_new_tokens: int = 96
    temperature: float = 0.7
    top_p: float = 0.95
    n: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise InputError(f"max_new_tokens must be an integer, got {self.max_new_tokens!r}.")
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if not (isinstance(self.n, int) and self.n >= 1):
            raise InputError(f"n (replies per request) must be an integer >= 1, got {self.n!r}.")
        if not (0 <= float(self.temperature) <= 5):
            raise InputError(f"temperature must be in [0, 5], got {self.temperature!r}.")
        if not (0 < float(self.top_p) <= 1):
            raise InputError(f"top_p must be in (0, 1], got {self.top_p!r}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChatBackend(ABC):
    """A chat LLM.

    Subclasses implement :meth:`chat` and :meth:`describe`; backends holding the weights
    also implement :meth:`score` (``can_score = True``), which lets callers constrain a
    small model to a fixed set of answers instead of parsing free text.
    """

    name: ClassVar[str] = "backend"
    can_score: ClassVar[bool] = False

    @abstractmethod
    def chat(
        self,
        messages: Sequence[ChatMessage | Mapping[str, str]] | str,
        generation: GenerationConfig | None = None,
    ) -> list[str]:
        """``generation.n`` reply texts (possibly empty strings) to ``messages``.

        Raises:
            LLMUnavailableError: The backend could not answer after its retries.
        """

    def score(
        self,
        messages: Sequence[ChatMessage | Mapping[str, str]] | str,
        replies: Sequence[str],
        *,
        batch_size: int = 16,
    ) -> list[float]:
        """Log likelihood (natural log, summed over tokens) of each of ``replies`` as the
        assistant's answer to ``messages``. Only for backends with ``can_score``."""
        raise NotImplementedError(
            f"The {self.name!r} backend cannot score replies (it has no access to the "
            "model's likelihoods); use a local backend."
        )

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Settings that identify the model and endpoint, for records and logs. Never
        includes secrets (API keys)."""

    @property
    def label(self) -> str:
        """A short name for logs and tables, e.g. ``"local:smollm2"``."""
        info = self.describe()
        return f"{self.name}:{info.get('model', '?')}"


#: Backend factories ``factory(**options) -> ChatBackend`` by name.
BACKENDS: Registry[Callable[..., ChatBackend]] = Registry("LLM backend")


def make_backend(name: str, **options: Any) -> ChatBackend:
    """Build the backend registered as ``name`` (``"openai"``, ``"local"``) with ``options``."""
    from llmbo.llm import local, openai_compat  # noqa: F401  (register the built-in backends)

    factory = BACKENDS.get(name)
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise InputError(f"Bad options for the {name!r} LLM backend: {exc}") from exc
    return factory(**options)
