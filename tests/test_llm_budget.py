"""The Client's budget and concurrency limit under a thread pool, and its sampling helpers."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from llm_servers import LLMServer, client_table, error, ok, slow

from gitevo.llm import BudgetExceeded, LLMError, Message, Request, make_client

PRICES = {"input": 1000.0, "output": 1000.0}  # $0.001 a token: round numbers


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def make(server: LLMServer, **overrides):
    return make_client(client_table("openai", server, **overrides), "gitevo.toml")


def small(max_tokens: int = 5) -> Request:
    return Request("s", [Message("user", "hi")], 0.1, max_tokens)


def test_max_cost_reached_stops_the_next_call_before_sending():
    # the first answer alone costs $0.105, over the $0.05 budget
    with LLMServer([ok(input_tokens=100, output_tokens=5)]) as server, \
            make(server, prices=PRICES, max_cost=0.05) as client:
        client.complete(small())
        with pytest.raises(BudgetExceeded) as info:
            client.complete(small())
        assert client.spent().cost == pytest.approx(0.105)
    assert len(server.requests) == 1
    err = info.value
    assert isinstance(err, LLMError) and err.kind == "budget"
    assert "max_cost $0.05" in str(err) and "\n" not in str(err)


def test_a_call_whose_worst_case_does_not_fit_is_refused_before_sending():
    # worst case per call: 17 prompt tokens at the cache-write price plus 5 output tokens,
    # $0.026; real use $0.015. Two calls fit in $0.05, a third could overshoot.
    with LLMServer(default=ok(input_tokens=10, output_tokens=5)) as server, \
            make(server, prices=PRICES, max_cost=0.05) as client:
        client.complete(small())
        client.complete(small())
        with pytest.raises(BudgetExceeded, match="may cost up to"):
            client.complete(small())
    assert len(server.requests) == 2


def test_max_tokens_budget_and_an_oversized_call():
    with LLMServer(default=ok(input_tokens=10, output_tokens=5)) as server, \
            make(server, max_tokens=100) as client:
        with pytest.raises(BudgetExceeded, match="max_tokens 100"):
            client.complete(small(max_tokens=200))  # could never fit
        client.complete(small())
        assert client.spent().total_tokens == 15
    assert len(server.requests) == 1


def test_concurrent_calls_never_overshoot_a_tight_budget():
    limit = 500
    request = Request("s" * 30, [Message("user", "m" * 60)], 0.1, 20)  # worst case 66 tokens
    answer = slow(0.05, ok(input_tokens=40, output_tokens=20))  # 60 tokens, overlapping
    with LLMServer(default=answer) as server, \
            make(server, max_tokens=limit, concurrency=8) as client:
        def worker() -> int:
            done = 0
            for _ in range(20):  # bounded: the budget stops every worker long before
                try:
                    client.complete(request)
                except BudgetExceeded:
                    return done
                done += 1
            return done

        with ThreadPoolExecutor(8) as pool:
            answered = sum(pool.map(lambda _: worker(), range(8)))
        spent = client.spent().total_tokens
    assert spent <= limit
    assert spent > limit - 66  # refused only when even the settled total left no room
    assert answered == len(server.requests) == spent // 60
    assert server.max_in_flight > 1  # the calls really overlapped


def test_concurrency_limit_holds_across_threads():
    with LLMServer(default=slow(0.1)) as server, make(server, concurrency=2) as client, \
            ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: client.complete(small()), range(6)))
    assert len(server.requests) == 6
    assert server.max_in_flight == 2


def test_failed_calls_release_their_reservation():
    with LLMServer([slow(5), slow(5)]) as server, \
            make(server, max_tokens=60, timeout=0.2, retries=1) as client:
        with pytest.raises(LLMError, match="within 0.2 s"):
            client.complete(small())
        client.complete(small())  # the whole budget is free again
        assert client.spent().total_tokens == 15
    assert len(server.requests) == 3


def test_temperature_draws_and_max_tokens_scale_with_the_block():
    with LLMServer() as server, make(server, temperature=[0.05, 0.4],
                                     max_output_tokens=[1024, 8192]) as client:
        rng = random.Random(7)
        temps = [client.settings.draw_temperature(rng) for _ in range(200)]
        assert all(0.05 <= t <= 0.4 for t in temps) and len(set(temps)) > 50
        small_block = [client.settings.max_tokens_for(100, rng) for _ in range(50)]
        big_block = [client.settings.max_tokens_for(9000, rng) for _ in range(50)]
        huge_block = client.settings.max_tokens_for(100_000, rng)
    assert all(t == 1024 for t in small_block)  # clamped up to the range's low end
    # a 9000-character block rewritten as a diff needs 2 * 9000 / 3 + 512 tokens at least
    assert all(6512 <= t <= 8192 for t in big_block) and len(set(big_block)) > 1
    assert huge_block == 8192
    # the same seed gives the same draws
    draw = client.settings.draw_temperature
    assert draw(random.Random(1)) == draw(random.Random(1))


def test_providers_without_temperature_still_consume_the_draw(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    client = make_client(client_table("anthropic"), "gitevo.toml")
    rng, twin = random.Random(3), random.Random(3)
    assert client.settings.draw_temperature(rng) is None
    twin.random()
    assert rng.random() == twin.random()
    client.close()


def test_close_cuts_a_retry_wait_short():
    with LLMServer(default=error(503)) as server, \
            make(server, backoff=30, max_backoff=30) as client:
        timer = threading.Timer(0.3, client.close)
        timer.start()
        with pytest.raises(LLMError) as info:
            client.complete(small())
        timer.join()
    assert info.value.kind == "server" and len(server.requests) == 1
