"""Chat LLMs behind one contract (see :mod:`llmbo.llm.base`): an OpenAI-compatible server
(``"openai"``) or a causal LM run in this process (``"local"``, SmolLM2 by default)."""

from llmbo.llm.base import (
    BACKENDS,
    ChatBackend,
    ChatMessage,
    GenerationConfig,
    as_messages,
    make_backend,
)
from llmbo.llm.local import LocalChatBackend
from llmbo.llm.openai_compat import OpenAIChatBackend

__all__ = [
    "BACKENDS",
    "ChatBackend",
    "ChatMessage",
    "GenerationConfig",
    "LocalChatBackend",
    "OpenAIChatBackend",
    "as_messages",
    "make_backend",
]
