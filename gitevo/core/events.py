"""What happens during a run, as structured events: the one channel from the pipeline to
whatever shows it (a live display, plain lines, JSON Lines) and to the time split.

Proposals and evaluations run in worker threads; `Events.emit` hands each event to the
listeners one at a time, so a listener never has to guard against two at once.
"""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Every kind and its keys. They are the JSON Lines contract (`--json`): scripts read
# them, so add keys rather than rename them.
KINDS: dict[str, tuple[str, ...]] = {
    "notice": ("message",),
    "plan": ("generation", "offspring", "to_propose", "resumed", "operators"),
    "llm_call": ("id", "turn", "ok", "tokens", "input_tokens", "output_tokens", "cost",
                 "seconds", "attempts", "error"),
    "validated": ("id", "turn", "ok", "seconds"),
    "committed": ("id", "commit", "operator", "template", "turns"),
    "rejected": ("id", "operator", "reason"),
    # with an LLM, evaluations start while proposals are still out: `count` is what may
    # still come, and the event is sent again, one lower, for each refused proposal
    "evaluating": ("count", "workers"),
    "evaluation_started": ("id",),
    "evaluation_finished": ("id", "status", "objectives", "seconds", "timings", "error"),
    "budget_spent": ("message",),
    "summary": ("generation", "best", "best_delta", "hypervolume", "hypervolume_delta",
                "offspring", "valid", "valid_rate", "statuses", "rejected", "llm", "time",
                "busy", "cascade"),
    "screened": ("id", "status", "rung"),
    # early: decided before every sibling was in at the rung (asynchronous promotion)
    "promoted": ("id", "rung", "early"),
}



def _kinds_table() -> str:
    rows = []
    for kind, keys in KINDS.items():
        lines = textwrap.wrap(", ".join(keys), 56)
        rows += [f"  {kind:<21}{lines[0]}", *(f"  {'':<21}{rest}" for rest in lines[1:])]
    return "\n".join(rows)


JSON_HELP = """\b
--json prints JSON Lines on stdout: one object per event, each with "kind" and
"t" (seconds since the command started), then the keys of its kind:
""" + _kinds_table() + """
Each generation ends with a "summary" object: best and best_delta per objective,
valid = offspring with status ok, llm = {calls, failed, tokens, cost}, time =
{wall, llm, validate, fitness, other} (wall seconds split among the phases running
at each moment) and busy = {llm, validate, fitness} (summed seconds). The same
numbers are in the ledger's stats.json."""


@dataclass(frozen=True)
class Event:
    kind: str
    t: float  # time.monotonic() when it was emitted
    fields: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


Listener = Callable[[Event], None]


class Events:
    """Fans events out to listeners; safe to call from any thread."""

    def __init__(self, *listeners: Listener):
        self.started = time.monotonic()
        self._listeners = list(listeners)
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def emit(self, kind: str, **fields: Any) -> None:
        expected = KINDS.get(kind)
        if expected is None or set(fields) != set(expected):
            raise ValueError(f"event {kind!r} with keys {sorted(fields)} breaks its contract")
        with self._lock:  # stamped inside the lock: listeners see time move forward
            event = Event(kind, time.monotonic(), fields)
            for listener in self._listeners:
                listener(event)


def summary(generation: int, stats: dict[str, Any]) -> dict[str, Any]:
    """The `summary` event of a generation, read from its ledger stats."""
    statuses = stats.get("statuses", {})
    calls = stats.get("llm_calls", {})
    return {"generation": generation, "best": stats["best"],
            "best_delta": stats.get("best_delta", {}), "hypervolume": stats["hypervolume"],
            "hypervolume_delta": stats.get("hypervolume_delta"),
            "offspring": stats.get("offspring", 0),
            "valid": stats.get("valid", statuses.get("ok", 0)),
            "valid_rate": stats.get("valid_rate", 1.0), "statuses": statuses,
            "rejected": stats.get("rejected", {}),
            "llm": {"calls": calls.get("ok", 0) + calls.get("failed", 0),
                    "failed": calls.get("failed", 0), "tokens": stats.get("tokens", 0),
                    "cost": stats.get("cost", 0.0)},
            "time": stats.get("time", {}), "busy": stats.get("busy", {}),
            "cascade": stats.get("cascade", [])}
