"""The OpenAI-compatible backend against a real chat-completions server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmbo.errors import InputError, LLMUnavailableError
from llmbo.llm import BACKENDS, GenerationConfig, OpenAIChatBackend, make_backend

KEY = "sk-test-7c2e9a41-do-not-leak"
KEY_ENV = "LLMBO_TEST_OPENAI_KEY"


@dataclass
class Reply:
    """One scripted answer: a status, a JSON body (or raw bytes) and headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def completion(contents: list[str | None], model: str = "tiny-chat") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": c},
                "finish_reason": "stop",
            }
            for i, c in enumerate(contents)
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "code": status}}


class ChatServer:
    """A chat-completions server whose replies are scripted per request.

    ``script(request_number, body) -> Reply``; every request is recorded as
    ``(path, headers, body)``.
    """

    def __init__(self) -> None:
        self.script: Callable[[int, dict[str, Any]], Reply] = self.echo
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.release = threading.Event()  # ends the waits of slow replies
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                body = json.loads(raw) if raw else {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append((self.path, headers, body))
                if self.path != "/v1/chat/completions":
                    reply = Reply(404, error_body(404, f"no route {self.path}"))
                else:
                    reply = server.script(len(server.requests) - 1, body)
                if reply.delay:
                    server.release.wait(reply.delay)
                data = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @staticmethod
    def echo(i: int, body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]["content"]
        return Reply(body=completion([f"echo {k}: {last}" for k in range(body.get("n", 1))]))

    def bodies(self) -> list[dict[str, Any]]:
        return [b for _, _, b in self.requests]


@pytest.fixture
def server() -> Iterator[ChatServer]:
    srv = ChatServer()
    srv.thread.start()
    yield srv
    srv.release.set()
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def backend(server: ChatServer, **options: Any) -> OpenAIChatBackend:
    options = {"api_key_env": KEY_ENV, "max_retries": 1, "timeout": 5.0, **options}
    return OpenAIChatBackend("tiny-chat", base_url=server.base_url, **options)


def test_registered_and_built_by_name(server: ChatServer, key: str) -> None:
    assert "openai" in BACKENDS
    llm = make_backend("openai", model="tiny-chat", base_url=server.base_url, api_key_env=KEY_ENV)
    assert isinstance(llm, OpenAIChatBackend)
    assert llm.can_score is False
    assert llm.label == "openai:tiny-chat"
    with pytest.raises(InputError, match="Bad options"):
        make_backend("openai", model="m", temperature=0.3)


def test_reply_and_request_body(server: ChatServer, key: str) -> None:
    llm = backend(server)
    gen = GenerationConfig(max_new_tokens=12, temperature=0.25, top_p=0.9, seed=7)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Which ligand?"},
    ]
    assert llm.chat(messages, gen) == ["echo 0: Which ligand?"]
    ((path, headers, body),) = server.requests
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == f"Bearer {KEY}"
    assert body["model"] == "tiny-chat"
    assert body["messages"] == messages
    assert body["max_tokens"] == 12
    assert body["temperature"] == 0.25
    assert body["top_p"] == 0.9
    assert body["seed"] == 7
    assert body["n"] == 1


def test_string_prompt_and_extra_body(server: ChatServer, key: str) -> None:
    llm = backend(server, extra_body={"top_k": 20})
    assert llm.chat("hello") == ["echo 0: hello"]
    body = server.bodies()[0]
    assert body["messages"] == [{"role": "user", "content": "hello"}]
    assert body["top_k"] == 20
    assert "seed" not in body  # no seed: none sent


def test_n_replies(server: ChatServer, key: str) -> None:
    replies = backend(server).chat("q", GenerationConfig(n=3))
    assert replies == ["echo 0: q", "echo 1: q", "echo 2: q"]
    assert len(server.requests) == 1


def test_server_that_ignores_n_is_asked_again(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: Reply(body=completion([f"reply {i} (n={body['n']})"]))
    replies = backend(server).chat("q", GenerationConfig(n=3))
    assert replies == ["reply 0 (n=3)", "reply 1 (n=2)", "reply 2 (n=1)"]
    assert [b["n"] for b in server.bodies()] == [3, 2, 1]


def test_extra_choices_are_dropped(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: Reply(body=completion(["a", "b", "c"]))
    assert backend(server).chat("q", GenerationConfig(n=2)) == ["a", "b"]


def test_server_error_is_retried(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: (
        Reply(500, error_body(500, "overloaded")) if i == 0 else server.echo(i, body)
    )
    assert backend(server, max_retries=1).chat("q") == ["echo 0: q"]
    assert len(server.requests) == 2


def test_rate_limit_with_retry_after_is_retried(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: (
        Reply(429, error_body(429, "slow down"), {"Retry-After": "0"})
        if i < 2
        else server.echo(i, body)
    )
    assert backend(server, max_retries=2).chat("q") == ["echo 0: q"]
    assert len(server.requests) == 3


def test_endless_rate_limit_gives_up(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: Reply(
        429, error_body(429, "rate limit reached"), {"Retry-After": "0"}
    )
    with pytest.raises(LLMUnavailableError, match="HTTP 429") as info:
        backend(server, max_retries=1).chat("q")
    assert len(server.requests) == 2
    message = str(info.value)
    assert server.base_url in message and "tiny-chat" in message
    assert "rate limit reached" in message


def test_unauthorized_is_not_retried(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: Reply(401, error_body(401, "Incorrect API key provided"))
    with pytest.raises(LLMUnavailableError, match="HTTP 401") as info:
        backend(server, max_retries=3).chat("q")
    assert len(server.requests) == 1
    assert KEY not in str(info.value)


def test_slow_reply_times_out(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: Reply(body=completion(["late"]), delay=5.0)
    start = time.perf_counter()
    with pytest.raises(LLMUnavailableError, match="timeout") as info:
        backend(server, timeout=0.3, max_retries=0).chat("q")
    assert time.perf_counter() - start < 3.0
    assert server.base_url in str(info.value)


def test_malformed_json_is_unavailable(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: Reply(body=b'{"choices": [ not json')
    with pytest.raises(LLMUnavailableError, match="not a chat completion"):
        backend(server).chat("q")


@pytest.mark.parametrize("payload", [{"id": "x", "object": "chat.completion"}, completion([])])
def test_reply_without_choices_is_unavailable(
    server: ChatServer, key: str, payload: dict[str, Any]
) -> None:
    server.script = lambda i, body: Reply(body=payload)
    with pytest.raises(LLMUnavailableError, match="no choices"):
        backend(server).chat("q")


def test_choice_without_message_is_unavailable(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: Reply(body={**completion([]), "choices": [{"index": 0}]})
    with pytest.raises(LLMUnavailableError, match="no message text"):
        backend(server).chat("q")


def test_missing_content_is_empty_text(server: ChatServer, key: str) -> None:
    server.script = lambda i, body: Reply(body=completion([None, ""]))
    assert backend(server).chat("q", GenerationConfig(n=2)) == ["", ""]


def test_connection_refused(key: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    llm = OpenAIChatBackend("tiny-chat", base_url=url, api_key_env=KEY_ENV, max_retries=0)
    with pytest.raises(LLMUnavailableError, match="connection failed") as info:
        llm.chat("q")
    assert url in str(info.value) and "tiny-chat" in str(info.value)


def test_no_key_sends_a_placeholder(server: ChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for api_key_env in (None, "none"):
        llm = backend(server, api_key_env=api_key_env)
        assert llm.describe()["api_key_env"] is None
        assert llm.chat("q") == ["echo 0: q"]
    assert all(h["authorization"].startswith("Bearer ") for _, h, _ in server.requests)


@pytest.mark.parametrize("url", ["not a url", "ftp://x/v1", "http://", "127.0.0.1:8080/v1", 8080])
def test_bad_base_url(url: Any, key: str) -> None:
    with pytest.raises(InputError, match=r"http://127\.0\.0\.1:8080/v1") as info:
        OpenAIChatBackend("m", base_url=url, api_key_env=KEY_ENV)
    assert repr(url) in str(info.value)


def test_missing_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMBO_TEST_UNSET_KEY", raising=False)
    with pytest.raises(InputError, match="LLMBO_TEST_UNSET_KEY") as info:
        OpenAIChatBackend("m", api_key_env="LLMBO_TEST_UNSET_KEY")
    assert "export" in str(info.value) and "api_key_env=None" in str(info.value)
    monkeypatch.setenv("LLMBO_TEST_UNSET_KEY", "  ")
    with pytest.raises(InputError, match="LLMBO_TEST_UNSET_KEY"):
        OpenAIChatBackend("m", api_key_env="LLMBO_TEST_UNSET_KEY")


@pytest.mark.parametrize(
    "options",
    [{"model": ""}, {"timeout": 0}, {"timeout": "soon"}, {"max_retries": -1}, {"extra_body": 3}],
)
def test_bad_settings(options: dict[str, Any], key: str) -> None:
    options = {"model": "m", "api_key_env": KEY_ENV, **options}
    with pytest.raises(InputError):
        OpenAIChatBackend(**options)


def test_describe(server: ChatServer, key: str) -> None:
    llm = backend(server, timeout=2.5, max_retries=0)
    assert llm.describe() == {
        "backend": "openai",
        "model": "tiny-chat",
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "timeout": 2.5,
        "max_retries": 0,
    }
    json.dumps(llm.describe())


def test_key_never_shown(server: ChatServer, key: str, caplog: pytest.LogCaptureFixture) -> None:
    """The key is in no description, repr, log record or error, even when a server echoes
    it back in an error body."""
    caplog.set_level(logging.DEBUG)
    llm = backend(server, max_retries=1)
    llm.chat("q")
    server.script = lambda i, body: Reply(
        500, error_body(500, f"bad token {KEY} rejected"), {"Retry-After": "0"}
    )
    with pytest.raises(LLMUnavailableError) as info:
        llm.chat("q")
    error = info.value
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    texts = [str(llm.describe()), repr(llm), *map(str, chain)]
    texts += [repr(v) for k, v in vars(llm).items() if k != "_client"]
    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records  # the library and the client did log
    assert not [t for t in texts if KEY in t]
    assert "***" in str(error)
