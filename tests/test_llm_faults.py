"""Malformed LLM traffic through a whole generation: the real SDKs against loopback servers
that fail in every way an API or a local server does. Failures are retried with backoff;
what still fails becomes one refused proposal with its reason in the ledger; the run
finishes; the budget is never exceeded."""

from __future__ import annotations

import re

import pytest

from gitevo.store import ledger
from gitevo.store.gitstore import Store
from tests.conftest import cli, git
from tests.llm_servers import LLMServer, answered, error, ok, overloaded, raw, reset, slow
from tests.responder import answer, as_prompt

KEY_ENV = "GITEVO_TEST_LLM_KEY"


def respond(body: dict) -> str:
    return answer(as_prompt(body))


def guided_toy(tmp_path, provider: str, server: LLMServer, extra: str = "",
               concurrency: int = 1) -> object:
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy")
    url = server.url if provider == "anthropic" else server.openai_url
    model = "claude-sonnet-4-6" if provider == "anthropic" else "local-model"
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace(
        'provider = "offline"',
        f'provider = "{provider}"\nmodel = "{model}"\nbase_url = "{url}"\n'
        f'api_key_env = "{KEY_ENV}"\nconcurrency = {concurrency}\nretries = 2\nbackoff = 0.01\n'
        f'timeout = 1.5\nrepair_turns = 1{extra}')
        # these tests count requests per fault: a sibling's duplicate, refused and asked
        # again, would add requests that no fault caused
        .replace("[evolution]", "[evolution]\ndedupe = false"))
    git(repo, "commit", "-qam", "evolve through a misbehaving server")
    return repo


def served_by(repo, server: LLMServer) -> None:
    """Point the run's gitevo.toml at `server` (a rerun against a new loopback port)."""
    toml = repo / "gitevo.toml"
    toml.write_text(re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{server.port}",
                           toml.read_text()))
    git(repo, "commit", "-qam", f"the LLM server, now on port {server.port}")


def offspring(repo) -> list[dict]:
    return ledger.read(Store(repo), "main").offspring


def children_with_notes(repo) -> int:
    refs = git(repo, "for-each-ref", "--format=%(objectname)", "refs/heads/gitevo/main/g001-*")
    return sum(1 for commit in refs.split()
               if git(repo, "notes", "--ref", "gitevo/main", "show", commit, check=False))


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_transient_faults_are_retried_and_the_generation_completes(tmp_path, monkeypatch,
                                                                   provider):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    script = [error(429, "slow down", retry_after="1"), answered(),  # honoured retry-after
              error(429, "slow down"), answered(),                   # without one: backoff
              overloaded() if provider == "anthropic" else error(503), answered(),
              error(500, "internal"), answered(),
              reset(), answered(),                                    # connection reset
              slow(3.0), answered()]                                  # past the 1.5 s timeout
    with LLMServer(script, default=answered(), responder=respond) as server:
        repo = guided_toy(tmp_path, provider, server)
        cli("-C", str(repo), "generation", "--n", "6")
        # a repair turn (an answer refused, say as a sibling's duplicate) is not a retry
        requests = server.first_turns()
    entries = offspring(repo)
    assert len(entries) == 6 and children_with_notes(repo) == 6, entries
    assert not [e for e in entries if e["status"] == "rejected"], entries
    assert len(requests) == 6 + 6  # every fault cost exactly one more request
    waited = requests[1].at - requests[0].at
    assert waited >= 0.9, f"retry-after: 1 was not honoured ({waited:.2f}s)"


@pytest.mark.slow
def test_bad_answers_are_retried_or_repaired(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    answers = []

    def cut_the_last(body: dict) -> str:
        """Answers as usual, except the third answer, which stops mid-diff."""
        text = respond(body)
        answers.append(text)
        return text[: len(text) // 2] if len(answers) == 3 else text

    script = [raw(b'{"id": "chatcmpl-1", "choices": [{"message": {"conte'),  # truncated JSON
              answered(),                      # ... retried: whole this time
              ok(""),                          # empty content: a repair turn
              answered(),
              answered(stop="length"),         # stopped at max tokens, mid-diff: repaired
              answered()]
    with LLMServer(script, default=answered(), responder=cut_the_last) as server:
        repo = guided_toy(tmp_path, "openai", server)
        cli("-C", str(repo), "generation", "--n", "3")
        bodies = server.bodies()
    entries = offspring(repo)
    assert len(entries) == 3 and children_with_notes(repo) == 3, entries
    assert len(bodies) == 6
    # the empty and the cut answers each went back, with what was wrong, for a second turn
    repairs = [b["messages"][-1]["content"] for b in bodies if len(b["messages"]) > 2]
    assert len(repairs) == 2, [len(b["messages"]) for b in bodies]
    assert "empty" in repairs[0].lower(), repairs[0]
    assert "cut off" in repairs[1], repairs[1]


@pytest.mark.slow
def test_a_server_that_keeps_failing_is_one_refusal_per_proposal(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with LLMServer(default=error(500, "the model crashed"), responder=respond) as server:
        repo = guided_toy(tmp_path, "openai", server)
        cli("-C", str(repo), "generation", "--n", "3")
        count = len(server.requests)
    entries = offspring(repo)
    assert len(entries) == 3 and count == 3 * 3  # a first try and two retries each
    for entry in entries:
        assert entry["status"] == "rejected" and entry["error"].startswith("llm-server: "), entry
        assert "HTTP 500" in entry["error"] and "the model crashed" in entry["error"], entry
    assert children_with_notes(repo) == 0
    assert ledger.read(Store(repo), "main").generation == 1  # the run goes on


@pytest.mark.slow
def test_the_token_budget_is_never_exceeded(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    # each answer costs 2,100 tokens and a call is only made when the most it could cost
    # still fits: 8,000 allow three, whatever the concurrency
    with LLMServer(default=answered(input_tokens=100, output_tokens=2000),
                   responder=respond) as server:
        repo = guided_toy(tmp_path, "openai", server, extra="\nmax_tokens = 8000",
                          concurrency=3)
        out = cli("-C", str(repo), "generation", "--n", "8")
        count = len(server.requests)
    spent = ledger.read(Store(repo), "main").stats["llm_total"]
    assert spent["input_tokens"] + spent["output_tokens"] <= 8000, spent
    assert count == 3, count
    assert spent["output_tokens"] == 2000 * count
    assert "budget" in out.lower()
    refused = [e for e in offspring(repo) if e["status"] == "rejected"]
    assert len(refused) == 8 - count, refused
    assert all(e["error"].startswith("budget: ") and "max_tokens 8000" in e["error"]
               and "budget: budget" not in e["error"] for e in refused), refused


@pytest.mark.slow
def test_a_fatal_error_keeps_the_answers_already_in_flight(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    # three calls at once: one is refused for its key at once, two answer a second later
    script = [slow(1.0, answered()), slow(1.0, answered()), error(401, "bad key")]
    with LLMServer(script, default=error(401, "bad key"), responder=respond) as server:
        repo = guided_toy(tmp_path, "openai", server, concurrency=3)
        out = cli("-C", str(repo), "generation", "--n", "6", expect=2)
        first = len(server.requests)
    assert "was refused" in out and first == 3  # no call started after the refusal
    # the two answered while the refusal was raised are children, with their provenance
    kept = git(repo, "for-each-ref", "--format=%(objectname)",
               "refs/heads/gitevo/main/g001-*").split()
    assert len(kept) == 2
    for commit in kept:
        assert git(repo, "notes", "--ref", "gitevo/main-llm", "show", commit)
    with LLMServer(default=answered(), responder=respond) as server:
        served_by(repo, server)
        cli("-C", str(repo), "generation")
        again = len(server.requests)
    assert again == 4  # only the four never answered are asked again
    assert len(offspring(repo)) == 6 and children_with_notes(repo) == 6
