"""Where a generation's wall time went: LLM calls, validation, training (the fitness command).

The phases are measured where they run (the LLM client, the guide's checks, each
evaluation) and reach us as events. Proposals and evaluations overlap, so summed
seconds exceed the wall time; the split shares each moment among the spans running
then, which makes the phases add up to at most the wall time.
"""

from __future__ import annotations

import math
import time

from gitevo.core.events import Event

PHASES = ("llm", "validate", "fitness")

Span = tuple[str, float, float]  # phase, start, end (time.monotonic())


class Timeline:
    """An event listener that keeps the phases' spans since the last `restart`."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.started = time.monotonic()
        self.spans: list[Span] = []

    def __call__(self, event: Event) -> None:
        if event.kind == "llm_call":
            self.spans.append(("llm", event.t - event["seconds"], event.t))
        elif event.kind == "validated":
            self.spans.append(("validate", event.t - event["seconds"], event.t))
        elif event.kind == "evaluation_finished":
            # an evaluation validates, then trains; the event comes as it ends
            # a scorer apart runs right after the trainer: both measure the fitness
            fitness = event["timings"].get("fitness", 0.0) + event["timings"].get("score", 0.0)
            validate = event["timings"].get("validate", 0.0)
            self.spans.append(("fitness", event.t - fitness, event.t))
            self.spans.append(("validate", event.t - fitness - validate, event.t - fitness))

    def split(self) -> dict[str, dict[str, float]]:
        """{"time": wall seconds per phase plus "other" and "wall", "busy": summed seconds}."""
        now = time.monotonic()
        shares = share_wall(self.spans, self.started, now)
        wall = _ceil_ms(now - self.started)
        parts = {p: _floor_ms(shares[p]) for p in PHASES}
        busy = {p: round(sum((end - start for q, start, end in self.spans if q == p), 0.0), 3)
                for p in PHASES}
        return {"time": {"wall": wall, **parts,
                         "other": round(max(0.0, wall - sum(parts.values())), 3)},
                "busy": busy}


def share_wall(spans: list[Span], start: float, end: float) -> dict[str, float]:
    """Seconds of [start, end] per phase, each moment shared equally by the spans in it.

    One sweep over the sorted span edges (a generation has thousands of spans, so the
    pairwise way, edges times spans, cost more than the rest of the ledger)."""
    edges = []
    for phase, a, b in spans:
        a, b = max(a, start), min(b, end)
        if b > a:
            edges += [(a, 1, phase), (b, -1, phase)]
    edges.sort(key=lambda edge: edge[0])
    shares = dict.fromkeys(PHASES, 0.0)
    running = dict.fromkeys(PHASES, 0)
    active, last = 0, start
    for t, step, phase in edges:
        if active and t > last:
            for name, count in running.items():
                shares[name] += (t - last) * count / active
        running[phase] += step
        active += step
        last = t
    return shares


# rounded outward so that the rounded parts never add up to more than the wall
def _floor_ms(seconds: float) -> float:
    return math.floor(seconds * 1000) / 1000


def _ceil_ms(seconds: float) -> float:
    return math.ceil(seconds * 1000) / 1000
