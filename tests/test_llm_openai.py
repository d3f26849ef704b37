"""The openai provider against an OpenAI-compatible loopback server: messages, sampling
parameters, usage with cached tokens, finish reasons, and keys for local servers."""

from __future__ import annotations

import pytest
from llm_servers import LLMServer, client_table, ok, raw

from gitevo.llm import LLMError, Message, Request, Usage, make_client

PREFIX = "RULES: answer with a unified diff.\n\nSEED model.py:\nclass SE: ..."


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def make(server: LLMServer | None, **overrides):
    return make_client(client_table("openai", server, **overrides), "gitevo.toml")


def test_request_shape_usage_and_cost():
    prices = {"input": 1.0, "output": 2.0, "cache_read": 0.5}
    with LLMServer([ok("diff", input_tokens=30, cache_read=70, output_tokens=9)]) as server, \
            make(server, prices=prices) as client:
        turns = [Message("user", "Mutate SE."), Message("assistant", "bad diff"),
                 Message("user", "It did not apply.")]
        reply = client.complete(Request("sys", turns, 0.27, 321, stable_prefix=PREFIX))
    body = server.bodies()[0]
    assert server.requests[0].path == "/v1/chat/completions"
    assert body["model"] == "local-model"
    assert body["temperature"] == 0.27 and body["max_tokens"] == 321
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": PREFIX + "\n\nMutate SE."},  # stable part first
        {"role": "assistant", "content": "bad diff"},
        {"role": "user", "content": "It did not apply."}]
    assert server.requests[0].headers["authorization"] == "Bearer no-key-needed"
    # prompt_tokens (100) includes the 70 cached ones
    assert reply.usage == Usage(30, 9, 70, 0, pytest.approx((30 * 1 + 9 * 2 + 70 * 0.5) / 1e6))
    assert reply.text == "diff" and reply.stop_reason == "end" and reply.model == "local-model"


def test_finish_reason_length_is_max_tokens_and_others_pass_through():
    with LLMServer([ok("--- a/m", stop="length"), ok("", stop="content_filter")]) as server, \
            make(server) as client:
        request = Request("", [Message("user", "hi")], 0.1, 10)
        assert client.complete(request).stop_reason == "max_tokens"
        assert client.complete(request).stop_reason == "content_filter"


def test_missing_usage_is_estimated_so_token_budgets_still_bind():
    # some local servers send no usage at all; 4 characters a token stands in for it
    body = (b'{"id":"c","object":"chat.completion","created":0,"model":"m","choices":'
            b'[{"index":0,"message":{"role":"assistant","content":"' + b"x" * 40 +
            b'"},"finish_reason":"stop"}]}')
    with LLMServer([raw(body)]) as server, make(server) as client:
        reply = client.complete(Request("", [Message("user", "y" * 80)], 0.1, 10))
    assert reply.usage.input_tokens == 20 and reply.usage.output_tokens == 10


def test_content_given_as_parts_is_joined_into_the_answer():
    # some OpenAI-compatible servers send content as a list of typed parts
    body = (b'{"id":"c","object":"chat.completion","created":0,"model":"m","choices":'
            b'[{"index":0,"message":{"role":"assistant","content":[{"type":"text","text":'
            b'"--- a/model.py\\n"},{"type":"text","text":"+++ b/model.py\\n"}]},'
            b'"finish_reason":"stop"}]}')
    with LLMServer([raw(body)]) as server, make(server) as client:
        reply = client.complete(Request("", [Message("user", "y")], 0.1, 10))
    assert reply.text == "--- a/model.py\n+++ b/model.py\n"
    assert reply.usage.output_tokens == 8  # estimated from the 30 characters, not 2 parts


def test_key_from_environment_is_sent(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    with LLMServer() as server, make(server) as client:
        client.complete(Request("", [Message("user", "hi")], 0.1, 10))
    assert server.requests[0].headers["authorization"] == "Bearer sk-real"


def test_base_url_from_environment(monkeypatch):
    with LLMServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        with make(None) as client:
            client.complete(Request("", [Message("user", "hi")], 0.1, 10))
    assert len(server.requests) == 1


def test_remote_server_without_key_is_missing_key():
    with pytest.raises(LLMError) as info:
        make(None, base_url="https://llm.example.com/v1")
    assert info.value.kind == "missing-key"
    assert "OPENAI_API_KEY is not set" in str(info.value)
    assert "https://llm.example.com/v1" in str(info.value)
