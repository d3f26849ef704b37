"""Several models behind one run budget: the clients of an [[llm]] ensemble.

Each model keeps its own provider, prices, retries and concurrency limit; the budget
(max_cost, max_tokens, from the first model's table) is one for all of them, so a cheap
model's calls and a strong one's are counted against the same limits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gitevo.llm.budget import Budget, Reservation
from gitevo.llm.client import Client, Provider
from gitevo.llm.settings import LLMSettings
from gitevo.llm.types import Usage


class Ensemble:
    def __init__(self, models: Sequence[LLMSettings],
                 make_provider: Callable[[LLMSettings], Provider]):
        """Raises what make_provider raises (a missing key) after closing those made."""
        first = models[0]
        self.budget = Budget(first.max_cost, first.max_tokens)
        self.clients: dict[str, Client] = {}
        try:
            for settings in models:
                self.clients[settings.label] = Client(settings, make_provider(settings),
                                                      self.budget)
        except BaseException:
            self.close()
            raise
        self.first = self.clients[first.label]

    def client(self, name: str | None) -> Client:
        """The client of model `name`; the first model for None (a plan from before
        ensembles) or a name the config no longer has."""
        return self.clients.get(name or "", self.first)

    @property
    def concurrency(self) -> int:
        return sum(c.settings.concurrency for c in self.clients.values())

    def carry_over(self, usage: Usage) -> None:
        self.budget.settle(Reservation(0, 0.0), usage)

    def spent(self) -> Usage:
        return self.budget.spent()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def __enter__(self) -> Ensemble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
