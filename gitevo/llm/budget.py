"""Thread-safe accounting of tokens and cost against the run's max_tokens and max_cost.

A call reserves its worst case (estimated input plus its whole max_tokens of output) before
it is sent, and the reservation is replaced by the real usage when the answer comes, so
calls running at the same time can never together overshoot a limit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from gitevo.llm.types import BudgetExceeded, Usage


@dataclass(frozen=True)
class Reservation:
    tokens: int
    cost: float


class Budget:
    def __init__(self, max_cost: float | None, max_tokens: int | None):
        self.max_cost, self.max_tokens = max_cost, max_tokens
        self._spent = Usage()
        self._tokens_held, self._cost_held = 0, 0.0
        self._changed = threading.Condition()

    def spent(self) -> Usage:
        with self._changed:
            return self._spent

    def check(self) -> None:
        """Raise BudgetExceeded when a limit is already reached."""
        with self._changed:
            self._refuse_if(0, 0.0)

    def reserve(self, tokens: int, cost: float) -> Reservation:
        """Hold `tokens` and `cost` for a call, or raise BudgetExceeded.

        If the call would fit once the calls in flight have settled, wait for them (they
        usually use far less than they reserved) instead of refusing early."""
        with self._changed:
            self._refuse_if(tokens, cost)
            while not self._fits(tokens, cost, held=True):
                self._changed.wait(timeout=1.0)
                self._refuse_if(tokens, cost)
            self._tokens_held += tokens
            self._cost_held += cost
            return Reservation(tokens, cost)

    def settle(self, reservation: Reservation, usage: Usage | None) -> None:
        """Replace a reservation by what the call really used (None: nothing billed)."""
        with self._changed:
            self._tokens_held -= reservation.tokens
            self._cost_held -= reservation.cost
            if usage is not None:
                self._spent = self._spent + usage
            self._changed.notify_all()

    def _fits(self, tokens: int, cost: float, *, held: bool) -> bool:
        used_tokens = self._spent.total_tokens + (self._tokens_held if held else 0)
        used_cost = self._spent.cost + (self._cost_held if held else 0.0)
        if self.max_tokens is not None and used_tokens + tokens > self.max_tokens:
            return False
        return self.max_cost is None or used_cost + cost <= self.max_cost + 1e-12

    def _refuse_if(self, tokens: int, cost: float) -> None:
        """Refuse when the call could not fit even after everything in flight settles."""
        if self._fits(tokens, cost, held=False) and not self._reached():
            return
        raise BudgetExceeded(self._explain(tokens, cost))

    def _reached(self) -> bool:
        s = self._spent
        return ((self.max_tokens is not None and s.total_tokens >= self.max_tokens)
                or (self.max_cost is not None and s.cost >= self.max_cost))

    def _explain(self, tokens: int, cost: float) -> str:
        s = self._spent
        if self.max_tokens is not None and s.total_tokens + tokens > self.max_tokens:
            return (f"budget: {s.total_tokens} of max_tokens {self.max_tokens} used; the next "
                    f"call may need up to {tokens} more, so no more LLM calls are made")
        return (f"budget: ${s.cost:.4f} of max_cost ${self.max_cost:g} spent; the next call "
                f"may cost up to ${cost:.4f} more, so no more LLM calls are made")
