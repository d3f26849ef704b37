"""Retries and failures, the same for both HTTP providers: the real anthropic and openai SDKs
against loopback servers that answer with scripted errors."""

from __future__ import annotations

import email.utils
import socket
import time

import pytest
from llm_servers import LLMServer, client_table, error, ok, overloaded, raw, reset, slow

from gitevo.llm import Client, LLMError, Message, Request, make_client
from gitevo.llm.retry import delay, parse_retry_after


@pytest.fixture(params=["anthropic", "openai"])
def provider(request, monkeypatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # loopback: no key needed
    return request.param


def client(provider: str, server: LLMServer | None, **overrides) -> Client:
    made = make_client(client_table(provider, server, **overrides), "gitevo.toml")
    assert made is not None
    return made


def ask(c: Client, text: str = "hi") -> object:
    return c.complete(Request("be brief", [Message("user", text)], 0.1, 64))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_429_waits_at_least_retry_after_seconds(provider):
    with LLMServer([error(429, "slow down", error_type="rate_limit_error", retry_after="1")]
                   ) as server, client(provider, server) as c:
        reply = ask(c)
    first, second = server.requests
    assert second.at - first.at >= 1.0
    assert reply.attempts == 2 and reply.text == "hello"


def test_429_retry_after_as_http_date(provider):
    # a whole second ahead, so the date (1 s resolution) is still in the future when parsed
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    with LLMServer([error(429, retry_after=when)]) as server, client(provider, server) as c:
        ask(c)
    date = email.utils.parsedate_to_datetime(when).timestamp()
    assert server.requests[1].wall >= date - 0.01


def test_429_without_retry_after_backs_off_and_succeeds(provider):
    with LLMServer([error(429), error(429)]) as server, client(provider, server) as c:
        assert ask(c).attempts == 3
    assert len(server.requests) == 3


def test_overloaded_529_then_success(provider):
    with LLMServer([overloaded()]) as server, client(provider, server) as c:
        reply = ask(c)
    assert reply.attempts == 2 and len(server.requests) == 2


def test_500s_exhaust_retries_with_one_line_server_error(provider):
    with LLMServer(default=error(500, "boom\ninternal")) as server, \
            client(provider, server, retries=2) as c, pytest.raises(LLMError) as info:
        ask(c)
    err = info.value
    assert err.kind == "server" and err.attempts == 3
    assert len(server.requests) == 3
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"{provider} (")
    assert "HTTP 500" in message and "boom internal" in message and "after 3 attempts" in message


def test_client_errors_are_not_retried(provider):
    with LLMServer(default=error(400, "no such model", error_type="invalid_request_error")
                   ) as server, client(provider, server) as c, pytest.raises(LLMError) as info:
        ask(c)
    assert info.value.kind == "server" and "HTTP 400" in str(info.value)
    assert len(server.requests) == 1


def test_refused_key_is_auth_error_naming_the_variable(provider):
    with LLMServer(default=error(401, "invalid x-api-key", error_type="authentication_error")
                   ) as server, client(provider, server) as c, pytest.raises(LLMError) as info:
        ask(c)
    assert info.value.kind == "auth" and len(server.requests) == 1
    assert ("ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY") in str(info.value)


def test_slow_server_times_out(provider):
    with LLMServer(default=slow(5)) as server, \
            client(provider, server, timeout=0.3, retries=1) as c, \
            pytest.raises(LLMError) as info:
        start = time.monotonic()
        ask(c)
    assert info.value.kind == "timeout" and info.value.attempts == 2
    assert "within 0.3 s" in str(info.value)
    assert time.monotonic() - start < 4


def test_timeout_then_success(provider):
    with LLMServer([slow(5)]) as server, client(provider, server, timeout=0.3) as c:
        assert ask(c).attempts == 2


def test_connection_reset_is_retried(provider):
    with LLMServer([reset(), reset()]) as server, client(provider, server) as c:
        assert ask(c).attempts == 3


@pytest.mark.parametrize("body", [
    b'{"id": "msg_1", "content": [',
    '{"id": "msg_1", "content": [{"text": "a dash \u2014'.encode()[:-1],  # inside a character
], ids=["mid-json", "mid-utf8"])
def test_malformed_json_is_bad_response(provider, body):
    with LLMServer(default=raw(body)) as server, \
            client(provider, server) as c, pytest.raises(LLMError) as info:
        ask(c)
    # a body cut off in transfer may come whole next time: retried, then given up on
    assert info.value.kind == "bad-response" and len(server.requests) == 3
    assert "not valid JSON" in str(info.value)


def test_json_without_an_answer_is_bad_response(provider):
    with LLMServer(default=raw(b'{"id": "x"}')) as server, client(provider, server) as c, \
            pytest.raises(LLMError) as info:
        ask(c)
    assert info.value.kind == "bad-response"


def test_empty_content_is_an_empty_answer_with_usage(provider):
    with LLMServer([ok("", input_tokens=7, output_tokens=0)]) as server, \
            client(provider, server) as c:
        reply = ask(c)
    assert reply.text == "" and reply.stop_reason == "end"
    assert reply.usage.input_tokens == 7
    assert len(server.requests) == 1


def test_truncated_answer_says_max_tokens(provider):
    stop = "max_tokens" if provider == "anthropic" else "length"
    with LLMServer([ok("--- a/model.py\n+++ b/", stop=stop)]) as server, \
            client(provider, server) as c:
        reply = ask(c)
    assert reply.stop_reason == "max_tokens"


def test_unreachable_server(provider):
    port = free_port()
    url = f"http://127.0.0.1:{port}" + ("/v1" if provider == "openai" else "")
    with client(provider, None, base_url=url, retries=1) as c, pytest.raises(LLMError) as info:
        ask(c)
    assert info.value.kind == "unreachable"
    assert str(info.value).startswith(f"{provider} (")
    assert f"cannot reach {url} (connection refused)" in str(info.value)


def test_retry_after_parsing_and_delays():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=1_000_000) == 10.0
    assert 2.0 <= delay(1, 2.0, 0.01, 60) <= 2.4  # retry-after honoured, jitter on top only
    assert delay(1, 100.0, 0.01, 5.0) <= 6.0  # capped at max_backoff
    assert 0.5 <= delay(1, None, 1.0, 60) <= 1.0
    assert 4.0 <= delay(4, None, 1.0, 60) <= 8.0
    assert delay(30, None, 1.0, 60) <= 60
