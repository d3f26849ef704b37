"""Client: one provider behind a concurrency limit, retries and the run's budget.

Calls come from a thread pool; everything here is thread-safe. The provider makes one
attempt per `send` and says through LLMError.retryable whether another may help.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from typing import Protocol

from gitevo.llm import retry
from gitevo.llm.budget import Budget, Reservation
from gitevo.llm.settings import CHARS_PER_TOKEN_WORST, LLMSettings
from gitevo.llm.types import LLMError, Reply, Request, Usage

TOKENS_PER_MESSAGE = 8  # role markers and chat template around each message


class Provider(Protocol):
    name: str  # "anthropic", "openai", "command"
    model: str

    def send(self, request: Request) -> Reply:
        """One attempt; raises LLMError."""

    def close(self) -> None: ...


class Client:
    def __init__(self, settings: LLMSettings, provider: Provider, budget: Budget | None = None):
        """`budget`: the run's, when several models share it (an ensemble)."""
        self.settings = settings
        self.provider = provider
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._budget = budget or Budget(settings.max_cost, settings.max_tokens)
        self._closed = threading.Event()

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def model(self) -> str:
        return self.provider.model

    def complete(self, request: Request) -> Reply:
        """Send `request` (retrying transient failures) and return the answer.

        Raises BudgetExceeded before sending anything when the budget cannot cover the
        call's worst case, and LLMError when no answer came."""
        self._budget.check()  # fail fast, without queueing for a slot
        with self._slots:
            held = self._budget.reserve(*self._worst_case(request))
            return self._complete_reserved(request, held)

    def _complete_reserved(self, request: Request, held: Reservation) -> Reply:
        usage: Usage | None = None
        started = time.monotonic()  # after the slot is ours: waiting for one is not LLM time
        try:
            reply = self._send_with_retries(request)
            usage = self._priced(reply.usage)
            return replace(reply, usage=usage, seconds=_since(started))
        except LLMError as err:
            err.seconds = _since(started)
            raise
        finally:
            self._budget.settle(held, usage)

    def _send_with_retries(self, request: Request) -> Reply:
        for attempt in range(1, self.settings.retries + 2):
            try:
                reply = self.provider.send(request)
            except LLMError as err:
                if not err.retryable or attempt > self.settings.retries:
                    raise err.after(attempt) from err.__cause__
                wait = retry.delay(attempt, err.retry_after, self.settings.backoff,
                                   self.settings.max_backoff)
                if self._closed.wait(wait):
                    raise err.after(attempt) from err.__cause__
                continue
            return replace(reply, attempts=attempt)
        raise AssertionError("unreachable: the loop returns or raises")

    def _priced(self, usage: Usage) -> Usage:
        return replace(usage, cost=self.settings.prices.cost(
            usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
            usage.cache_write_tokens))

    def _worst_case(self, request: Request) -> tuple[int, float]:
        """Tokens and cost the call could use at most, reserved while it is in flight."""
        prompt = (math.ceil(request.chars() / CHARS_PER_TOKEN_WORST)
                  + TOKENS_PER_MESSAGE * (len(request.messages) + 1))
        prices = self.settings.prices
        cost = (prompt * prices.worst_input + request.max_tokens * prices.output) / 1e6
        return prompt + request.max_tokens, cost

    def carry_over(self, usage: Usage) -> None:
        """Count what earlier processes of the same run spent, so the budget is per run."""
        self._budget.settle(Reservation(0, 0.0), usage)

    def spent(self) -> Usage:
        """Tokens and cost of every answered call so far."""
        return self._budget.spent()

    def close(self) -> None:
        """Stop waiting between retries and release the provider's connections."""
        self._closed.set()
        self.provider.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
