"""Loopback HTTP servers that speak the Anthropic Messages and OpenAI Chat Completions APIs.

Tests drive the real `anthropic` and `openai` SDKs against these with `base_url`, so what
is checked is the wire format the SDKs really send and parse. Each test scripts the
responses (a list of steps, consumed one per request) and reads back every request body.

Every response goes out in one `sendall` (status line, headers and body together):
several small writes on one socket meet Nagle's algorithm and delayed ACKs and cost
about 40 ms each. Every wait is bounded and wakes when the server stops.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANTHROPIC_PATH = "/v1/messages"
OPENAI_PATH = "/v1/chat/completions"
MAX_DELAY = 10.0  # no scripted wait may hold a handler thread longer than this


@dataclass
class Step:
    """One scripted response. `kind` picks the shape; the other fields fill it in."""

    kind: str = "ok"  # ok | error | raw | reset
    text: str | None = "hello"  # None: the server's responder writes it (see answered)
    status: int = 200
    stop: str | None = None  # stop_reason / finish_reason; None: the API's normal "done"
    input_tokens: int = 10
    output_tokens: int = 5
    cache_read: int = 0
    cache_write: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""  # for kind "raw"
    message: str = "scripted error"
    error_type: str = "api_error"
    delay: float = 0.0  # seconds to wait before answering (a slow server)


def ok(text: str = "hello", **kw: Any) -> Step:
    return Step("ok", text=text, **kw)


def answered(**kw: Any) -> Step:
    """A normal answer whose text the server's responder writes from the request."""
    return Step("ok", text=None, **kw)


def error(status: int, message: str = "scripted error", *, error_type: str = "api_error",
          retry_after: str | None = None, **kw: Any) -> Step:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Step("error", status=status, message=message, error_type=error_type,
                headers=headers, **kw)


def overloaded() -> Step:
    """Anthropic's 529: the API is temporarily overloaded."""
    return error(529, "Overloaded", error_type="overloaded_error")


def raw(body: bytes, status: int = 200, **kw: Any) -> Step:
    """A body sent as is, e.g. truncated JSON."""
    return Step("raw", body=body, status=status, **kw)


def slow(delay: float, then: Step | None = None) -> Step:
    step = then or ok()
    step.delay = delay
    return step


def reset() -> Step:
    """Close the connection without sending any response."""
    return Step("reset")


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON (or the raw text when it is not JSON)
    at: float  # time.monotonic() when the request was complete
    wall: float  # time.time() then, to compare with HTTP dates


class LLMServer:
    """A ThreadingHTTPServer on 127.0.0.1 with a random port, serving one script."""

    def __init__(self, script: list[Step] | None = None, default: Step | None = None,
                 responder: Callable[[Any], str] | None = None):
        self.script = list(script or [])
        self.default = default or ok()
        self.responder = responder  # writes the text of answered() steps from the request
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests ever being answered at once
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.llm = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        """The Anthropic base_url (the SDK appends /v1/messages)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """The OpenAI base_url (the SDK appends /chat/completions)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def next_step(self, recorded: Recorded) -> Step:
        with self.lock:
            self.requests.append(recorded)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.script.pop(0) if self.script else self.default

    def done(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def first_turns(self) -> list[Recorded]:
        """The requests that open a conversation (a repair turn carries earlier answers)."""
        with self.lock:
            return [r for r in self.requests
                    if sum(m.get("role") == "user" for m in r.body.get("messages", [])) == 1]

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.body for r in self.requests]

    def __enter__(self) -> LLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()  # wakes handlers in a scripted delay
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs expect

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        server: LLMServer = self.server.llm  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        data = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body: Any = json.loads(data)
        except ValueError:
            body = data
        recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                            time.monotonic(), time.time())
        step = server.next_step(recorded)
        try:
            self._answer(server, step, body)
        finally:
            server.done()

    def _answer(self, server: LLMServer, step: Step, body: Any) -> None:
        if step.delay and server.stopping.wait(min(step.delay, MAX_DELAY)):
            self.close_connection = True
            return
        if step.kind == "reset":
            self._reset()
            return
        if step.kind == "ok" and step.text is None:
            step = dataclasses.replace(step, text=server.responder(body))
        status, payload = _payload(self.path, step, body)
        self._send(status, payload, step.headers)

    def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        reason = self.responses.get(status, ("Overloaded" if status == 529 else "Error",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
                 f"content-length: {len(payload)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.connection.sendall(head + payload)  # one write: see the module docstring
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST, like a proxy or server dropping the connection
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


def _payload(path: str, step: Step, request: Any) -> tuple[int, bytes]:
    if step.kind == "raw":
        return step.status, step.body
    openai = path.rstrip("/").endswith("/chat/completions")
    if step.kind == "error":
        shape = _openai_error(step) if openai else _anthropic_error(step)
        return step.status, json.dumps(shape).encode()
    model = request.get("model", "unknown") if isinstance(request, dict) else "unknown"
    shape = _openai_reply(step, model) if openai else _anthropic_reply(step, model)
    return step.status, json.dumps(shape).encode()


def _anthropic_reply(step: Step, model: str) -> dict[str, Any]:
    content = [{"type": "text", "text": step.text}] if step.text else []
    return {"id": "msg_test", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": step.stop or "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": step.input_tokens, "output_tokens": step.output_tokens,
                      "cache_read_input_tokens": step.cache_read,
                      "cache_creation_input_tokens": step.cache_write}}


def _anthropic_error(step: Step) -> dict[str, Any]:
    return {"type": "error", "error": {"type": step.error_type, "message": step.message}}


def _openai_reply(step: Step, model: str) -> dict[str, Any]:
    prompt = step.input_tokens + step.cache_read
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": step.output_tokens,
                             "total_tokens": prompt + step.output_tokens}
    if step.cache_read:
        usage["prompt_tokens_details"] = {"cached_tokens": step.cache_read}
    message = {"role": "assistant", "content": step.text or None}
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
            "model": model, "usage": usage,
            "choices": [{"index": 0, "message": message, "finish_reason": step.stop or "stop"}]}


def _openai_error(step: Step) -> dict[str, Any]:
    return {"error": {"message": step.message, "type": step.error_type, "code": None}}


def client_table(provider: str, server: LLMServer | None = None, **overrides: Any
                 ) -> dict[str, Any]:
    """An [llm] table for `provider` pointed at `server`, with retries fast enough for tests."""
    table: dict[str, Any] = {"provider": provider, "retries": 2, "backoff": 0.01,
                             "max_backoff": 5.0, "timeout": 5.0}
    if provider == "anthropic":
        table["model"] = "claude-sonnet-4-6"
        if server is not None:
            table["base_url"] = server.url
    elif provider == "openai":
        table["model"] = "local-model"
        if server is not None:
            table["base_url"] = server.openai_url
    table.update(overrides)
    return table
