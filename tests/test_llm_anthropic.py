"""The anthropic provider: what the real SDK sends (cached stable prefix, system prompt, repair
turns) and what gitevo reads back (tokens, cache tokens, cost)."""

from __future__ import annotations

import pytest
from llm_servers import LLMServer, client_table, ok

from gitevo.llm import LLMError, Message, Request, Usage, make_client

SYSTEM = "You improve PyTorch models."
PREFIX = "RULES: answer with a unified diff.\n\nSEED model.py:\nclass SE: ..."


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def make(server: LLMServer, **overrides):
    return make_client(client_table("anthropic", server, **overrides), "gitevo.toml")


def test_success_with_cached_prefix_tokens_and_cost():
    reply_usage = dict(input_tokens=100, output_tokens=50, cache_read=1000, cache_write=2000)
    with LLMServer([ok("--- a/model.py\n+++ b/model.py", **reply_usage)]) as server, \
            make(server) as client:
        reply = client.complete(Request(SYSTEM, [Message("user", "Mutate block SE.")], None,
                                        900, stable_prefix=PREFIX))
        spent = client.spent()
    body = server.bodies()[0]
    assert body["model"] == "claude-sonnet-4-6" and body["max_tokens"] == 900
    assert body["system"] == SYSTEM
    assert "temperature" not in body  # API version 2026-10-21 rejects sampling parameters
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": PREFIX, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Mutate block SE."}]}]
    assert server.requests[0].headers["authorization"] == "Bearer sk-ant-test"
    assert reply.text.startswith("--- a/model.py") and reply.stop_reason == "end"
    assert reply.model == "claude-sonnet-4-6" and reply.attempts == 1
    # sonnet list prices: 3 in, 15 out, 0.30 cache read, 3.75 cache write (USD / MTok)
    cost = (100 * 3 + 50 * 15 + 1000 * 0.30 + 2000 * 3.75) / 1e6
    assert reply.usage == Usage(100, 50, 1000, 2000, pytest.approx(cost))
    assert spent == reply.usage
    assert reply.raw["usage"]["cache_read_input_tokens"] == 1000


def test_repair_conversation_sends_prior_turns_after_the_cached_prefix():
    turns = [Message("user", "Mutate block SE."), Message("assistant", "--- a/x\n+++ b/x"),
             Message("user", "The diff did not apply: hunk 1 matches nothing.")]
    with LLMServer() as server, make(server, prices={"input": 2, "output": 4}) as client:
        client.complete(Request(SYSTEM, turns, None, 500, stable_prefix=PREFIX))
        client.complete(Request(SYSTEM, turns[:1], None, 500, stable_prefix=PREFIX))
        spent = client.spent()
    first, second = server.bodies()
    assert first["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert first["messages"][1:] == [
        {"role": "assistant", "content": "--- a/x\n+++ b/x"},
        {"role": "user", "content": "The diff did not apply: hunk 1 matches nothing."}]
    # the cached block is byte-identical from call to call, or the cache would never hit
    assert first["messages"][0]["content"][0] == second["messages"][0]["content"][0]
    assert spent == Usage(20, 10, 0, 0, pytest.approx((20 * 2 + 10 * 4) / 1e6))


def test_no_prefix_and_no_system():
    with LLMServer() as server, make(server) as client:
        client.complete(Request("", [Message("user", "hello")], None, 100))
    body = server.bodies()[0]
    assert "system" not in body
    assert body["messages"] == [{"role": "user", "content": "hello"}]


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(LLMError) as info:
        make_client(client_table("anthropic"), "gitevo.toml")
    assert info.value.kind == "missing-key"
    assert str(info.value) == "anthropic: environment variable ANTHROPIC_API_KEY is not set"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")  # set but empty is just as missing
    with pytest.raises(LLMError, match="ANTHROPIC_API_KEY is not set"):
        make_client(client_table("anthropic"), "gitevo.toml")


def test_custom_key_variable(monkeypatch):
    monkeypatch.setenv("TEAM_CLAUDE_KEY", "sk-team")
    with LLMServer() as server, make(server, api_key_env="TEAM_CLAUDE_KEY") as client:
        client.complete(Request("", [Message("user", "hi")], None, 10))
    assert server.requests[0].headers["authorization"] == "Bearer sk-team"
    with pytest.raises(LLMError, match="OTHER_KEY is not set"):
        make(server, api_key_env="OTHER_KEY")
