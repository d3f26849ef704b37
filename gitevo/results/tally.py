"""Counters of the generation in progress, fed by events, and its ETA: what the live
display draws.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gitevo.core.events import Event


@dataclass
class Tally:
    """What the generation in progress has done so far, fed by events."""

    generation: int | None = None
    offspring: int = 0
    proposed_before: int = 0  # settled by an earlier, interrupted process
    committed: int = 0
    rejected: int = 0
    calls: int = 0
    failed_calls: int = 0
    tokens: int = 0
    cost: float = 0.0
    to_evaluate: int = 0
    workers: int = 1
    running: dict[str, float] = field(default_factory=dict)  # id -> when it started
    durations: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    @classmethod
    def of_plan(cls, event: Event) -> Tally:
        return cls(event["generation"], event["offspring"],
                   event["offspring"] - event["to_propose"])

    def update(self, event: Event) -> None:
        """Count one event (a `plan` starts a new Tally: see `of_plan`)."""
        f = event.fields
        if event.kind == "llm_call":
            self.calls += 1
            self.failed_calls += not f["ok"]
            self.tokens += f["tokens"]
            self.cost += f["cost"]
        elif event.kind in ("committed", "rejected"):
            setattr(self, event.kind, getattr(self, event.kind) + 1)
        elif event.kind == "evaluating":
            self.to_evaluate, self.workers = f["count"], f["workers"]
        elif event.kind == "evaluation_started":
            self.running[f["id"]] = event.t
        elif event.kind == "evaluation_finished":
            self.running.pop(f["id"], None)
            self.durations.append(f["seconds"])
            self.statuses[f["status"]] += 1

    @property
    def proposed(self) -> int:
        return self.proposed_before + self.committed + self.rejected

    @property
    def evaluated(self) -> int:
        return len(self.durations)

    def eta(self, now: float) -> float | None:
        return eta(self.durations, self.to_evaluate - self.evaluated,
                   [now - t for t in self.running.values()], self.workers)


def eta(durations: list[float], remaining: int, running: list[float],
        workers: int) -> float | None:
    """Seconds until the remaining evaluations end (None before one has finished): the
    work left at the mean duration so far, less what the running ones have done, shared
    by the workers that still have work."""
    if remaining <= 0:
        return 0.0
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    left = mean * remaining - sum(min(elapsed, mean) for elapsed in running)
    return max(0.0, left) / max(1, min(workers, remaining))
