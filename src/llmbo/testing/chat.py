"""Stand-ins for chat LLMs that answer and score, for tests of code that proposes
candidates with :mod:`llmbo.llm` without a model or a network.

* :class:`ScriptedScorer` — a :class:`~llmbo.llm.ChatBackend` whose replies and log
  likelihoods come from its options; registered as ``"scripted-scorer"`` in
  :data:`llmbo.llm.BACKENDS` when this module is imported, so a proposer that stores its
  backend by name round-trips. (:class:`llmbo.testing.llm.ScriptedBackend` is the plain
  chat stand-in: replies in turn, no scores, not registered.)
* :class:`ChatServer` — a scripted OpenAI-compatible chat server on 127.0.0.1 for the
  ``"openai"`` backend (:mod:`llmbo.llm.openai_compat`)::

      from llmbo.testing.chat import ChatServer

      with ChatServer(lambda i, body: ["red fox in the forest"]) as server:
          backend = make_backend("openai", model="tiny", base_url=server.base_url,
                                 api_key_env=None, max_retries=0)
          ...
      server.bodies()  # the JSON bodies of the requests it answered

  It speaks ``POST /v1/chat/completions`` (a ``ThreadingHTTPServer`` on a free port in a
  daemon thread). ``script(request_number, body)`` returns the reply texts (one choice
  each), or a ``(status, json_body)`` pair for anything else (errors).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from llmbo.errors import LLMUnavailableError
from llmbo.llm.base import BACKENDS, ChatBackend, ChatMessage, GenerationConfig

__all__ = ["ChatServer", "ScriptedScorer", "completion"]

Script = Callable[[int, dict[str, Any]], "list[str] | tuple[int, Any]"]


@BACKENDS.register("scripted-scorer")
class ScriptedScorer(ChatBackend):
    """Replies and log likelihoods from a script; records every request.

    Args:
        replies: What :meth:`chat` answers (every time).
        scoring: Whether the backend can score (``can_score``).
        per_char: Word -> log likelihood per character of a reply containing it (the
            first word that matches counts; other replies: -1 per character).
        dead: Every call raises :class:`~llmbo.errors.LLMUnavailableError`.
    """

    name = "scripted-scorer"

    def __init__(
        self,
        replies: list[str] | None = None,
        *,
        scoring: bool = False,
        per_char: dict[str, float] | None = None,
        dead: bool = False,
    ) -> None:
        self.replies = list(replies or [])
        self.can_score = bool(scoring)  # type: ignore[misc]
        self.per_char = dict(per_char or {})
        self.dead = dead
        #: ``(messages, generation)`` of every :meth:`chat` call.
        self.chats: list[tuple[list[Any], GenerationConfig | None]] = []
        #: ``(replies, batch_size)`` of every :meth:`score` call.
        self.scored: list[tuple[list[str], int]] = []

    def chat(
        self,
        messages: Sequence[ChatMessage | Mapping[str, str]] | str,
        generation: GenerationConfig | None = None,
    ) -> list[str]:
        self.chats.append((list(messages), generation))
        if self.dead:
            raise LLMUnavailableError("The scripted server is down.")
        return list(self.replies) * (generation.n if generation is not None else 1)

    def score(
        self,
        messages: Sequence[ChatMessage | Mapping[str, str]] | str,
        replies: Sequence[str],
        *,
        batch_size: int = 16,
    ) -> list[float]:
        self.scored.append((list(replies), batch_size))
        if self.dead:
            raise LLMUnavailableError("The scripted model is gone.")
        rate = [next((v for w, v in self.per_char.items() if w in r), -1.0) for r in replies]
        return [k * len(r) for k, r in zip(rate, replies, strict=True)]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": "script"}


def completion(contents: list[str], model: str = "test-chat") -> dict[str, Any]:
    """A chat-completions response body with one choice per text."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": c}, "finish_reason": "stop"}
            for i, c in enumerate(contents)
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class ChatServer:
    """A chat-completions server whose replies come from ``script``; a context manager that
    starts it on entry and stops it on exit. ``requests`` holds ``(path, body)`` pairs."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[str, dict[str, Any]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw) if raw else {}
                server.requests.append((self.path, body))
                if self.path != "/v1/chat/completions":
                    status, payload = 404, {"error": {"message": f"no route {self.path}"}}
                else:
                    answer = server.script(len(server.requests) - 1, body)
                    if isinstance(answer, tuple):
                        status, payload = answer
                    else:
                        status, payload = 200, completion(list(answer), body.get("model", "?"))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The endpoint root to give the backend (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the requests so far."""
        return [body for _, body in self.requests]

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
