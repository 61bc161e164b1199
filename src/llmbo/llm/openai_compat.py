"""Chat through any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, vLLM,
llama.cpp's server, Ollama, LM Studio, ...), using the official ``openai`` client.

The client's own retries do the waiting: exponential backoff with jitter, ``Retry-After``
honoured on rate limits (429), and retries on 408/409/5xx, timeouts and dropped
connections. Whatever still fails becomes :class:`~llmbo.errors.LLMUnavailableError`,
whose message names the endpoint, the model and the cause, never the API key.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from llmbo._imports import require
from llmbo.errors import InputError, LLMUnavailableError
from llmbo.llm.base import BACKENDS, ChatBackend, ChatMessage, GenerationConfig, as_messages

logger = logging.getLogger("llmbo.llm")

__all__ = ["OpenAIChatBackend"]

#: Sent as the key to servers that need none (``api_key_env=None``); the client wants one.
NO_KEY = "no-key"


@BACKENDS.register("openai")
class OpenAIChatBackend(ChatBackend):
    """A model behind an OpenAI-compatible chat-completions endpoint.

    Args:
        model: Model name the server knows (e.g. ``"gpt-4o-mini"``, or what a local
            server was started with).
        base_url: Endpoint root, up to and including ``/v1``.
        api_key_env: Name of the environment variable holding the API key, read once
            here; ``None`` (or ``"none"``) for local servers that need no key.
        timeout: Seconds allowed for one HTTP request.
        max_retries: Retries of the ``openai`` client (backoff, ``Retry-After``) before
            a request counts as failed.
        extra_body: Extra JSON fields sent with every request (server-specific options,
            e.g. ``{"top_k": 20}``).
    """

    name = "openai"
    can_score = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise InputError(f"The openai backend needs a model name, got {model!r}.")
        self.model = model
        self.base_url = _check_url(base_url)
        if isinstance(api_key_env, str) and api_key_env.strip().lower() in ("", "none"):
            api_key_env = None
        self.api_key_env = api_key_env
        try:
            self.timeout = float(timeout)
        except (TypeError, ValueError):
            raise InputError(f"timeout must be a number of seconds, got {timeout!r}.") from None
        if not self.timeout > 0:
            raise InputError(f"timeout must be > 0 seconds, got {timeout!r}.")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InputError(f"max_retries must be an integer >= 0, got {max_retries!r}.")
        self.max_retries = max_retries
        if extra_body is not None and not isinstance(extra_body, Mapping):
            raise InputError(f"extra_body must be a dict of JSON fields, got {extra_body!r}.")
        self.extra_body = dict(extra_body) if extra_body is not None else None
        key = self._read_key()
        openai = require("openai", "The openai LLM backend")
        # The key lives in the client only: never on this object, in logs or in messages.
        self._client = openai.OpenAI(
            api_key=key,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    def _read_key(self) -> str:
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise InputError(
                f"The openai LLM backend reads its API key from the environment variable "
                f"{self.api_key_env}, which is not set (or empty). Export it "
                f"(export {self.api_key_env}=...), or pass api_key_env=None "
                "(CLI: --api-key-env none) for a local server that needs no key."
            )
        return key

    def chat(
        self,
        messages: Sequence[ChatMessage | Mapping[str, str]] | str,
        generation: GenerationConfig | None = None,
    ) -> list[str]:
        gen = generation or GenerationConfig()
        payload = [m.to_dict() for m in as_messages(messages)]
        replies: list[str] = []
        start = time.perf_counter()
        # Some servers ignore ``n`` and answer once: ask again for the rest.
        while len(replies) < gen.n:
            want = gen.n - len(replies)
            choices = self._complete(payload, gen, want)
            replies += [_content(c) for c in choices[:want]]
        logger.debug(
            "%s answered %d replies in %.2f s.",
            self.label,
            len(replies),
            time.perf_counter() - start,
        )
        return replies

    def _complete(self, payload: list[dict[str, str]], gen: GenerationConfig, n: int) -> list[Any]:
        """The choices of one chat-completions request (at least one)."""
        openai = require("openai", "The openai LLM backend")
        options: dict[str, Any] = {
            "model": self.model,
            "messages": payload,
            "max_tokens": gen.max_new_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            "n": n,
        }
        if gen.seed is not None:
            options["seed"] = gen.seed
        if self.extra_body is not None:
            options["extra_body"] = self.extra_body
        try:
            response = self._client.chat.completions.create(**options)
        except openai.APIStatusError as exc:
            raise self._unavailable(
                f"HTTP {exc.status_code} ({self._short(exc.message)})"
            ) from self._chain(exc)
        except openai.APITimeoutError as exc:
            raise self._unavailable(
                f"no reply within the {self.timeout:g} s timeout ({_attempts(self.max_retries)})"
            ) from self._chain(exc)
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise self._unavailable(
                f"connection failed ({_attempts(self.max_retries)}; "
                f"{type(cause).__name__}: {self._short(str(cause))})"
            ) from self._chain(exc)
        except (openai.APIError, json.JSONDecodeError) as exc:
            raise self._unavailable(
                f"the reply is not a chat completion ({type(exc).__name__}: {self._short(str(exc))})"
            ) from self._chain(exc)
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise self._unavailable("the reply holds no choices")
        for choice in choices:
            content = getattr(getattr(choice, "message", None), "content", 0)
            if content is not None and not isinstance(content, str):
                raise self._unavailable(
                    f"a choice holds no message text ({self._short(repr(choice), 120)})"
                )
        return choices

    def _unavailable(self, cause: str) -> LLMUnavailableError:
        return LLMUnavailableError(
            self._redact(
                f"The chat server at {self.base_url} (model {self.model!r}) could not "
                f"answer: {cause}"
            )
        )

    def _chain(self, exc: BaseException) -> BaseException | None:
        """``exc`` as the cause of our error, unless its text would show the key."""
        secret = self._secret()
        return None if secret and secret in str(exc) else exc

    def _secret(self) -> str | None:
        return self._client.api_key if self.api_key_env is not None else None

    def _redact(self, text: str) -> str:
        secret = self._secret()
        return text.replace(secret, "***") if secret else text

    def _short(self, text: str, limit: int = 300) -> str:
        """A server's text on one line, without the key, at most ``limit`` characters."""
        text = " ".join(self._redact(str(text)).split())
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "api_key_env": self.api_key_env,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
        }

    def __repr__(self) -> str:
        return f"OpenAIChatBackend(model={self.model!r}, base_url={self.base_url!r})"


def _check_url(base_url: object) -> str:
    example = "http://127.0.0.1:8080/v1"
    if not isinstance(base_url, str):
        raise InputError(f"base_url must be a URL such as {example}, got {base_url!r}.")
    try:
        parts = urlsplit(base_url.strip())
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise InputError(
            f"base_url {base_url!r} is not an http(s) URL with a host; give the endpoint "
            f"root, e.g. {example} or https://api.openai.com/v1."
        )
    return base_url.strip().rstrip("/")


def _attempts(max_retries: int) -> str:
    return "1 attempt" if max_retries == 0 else f"{max_retries + 1} attempts"


def _content(choice: Any) -> str:
    """The text of one choice ("" when the server sent none)."""
    content = choice.message.content
    return content if isinstance(content, str) else ""
