"""Showing a run as it goes: plain lines, JSON Lines, nothing, or a live display.

Each renderer is an event listener (see gitevo.events). Plain text suits logs and
pipes (one line per child and step), JSON Lines suits scripts, quiet suits cron;
the live display (gitevo.live, rich) is for a terminal.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from gitevo.events import Event, Events


@contextlib.contextmanager
def output(mode: str = "auto") -> Iterator[Events]:
    """An event bus wired to the renderer of `mode` ("auto", "live", "plain", "json" or
    "quiet"); "auto" is live on a terminal, else plain."""
    if mode == "auto":
        mode = "live" if sys.stdout.isatty() else "plain"
    if mode == "live":
        from gitevo.live import LiveRenderer  # rich loads only for a terminal

        with LiveRenderer() as live:
            yield Events(live)
        return
    renderers = {"plain": PlainRenderer, "json": JsonRenderer, "quiet": QuietRenderer}
    yield Events(renderers[mode]())


class PlainRenderer:
    """One line per event worth reading in a log; the summary as a few lines."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        lines = summary_lines(event.fields) if event.kind == "summary" else [line(event)]
        for text in lines:
            if text is not None:
                print(text, file=self.stream, flush=True)


class JsonRenderer:
    """JSON Lines: every event as one object, "kind" and "t" first."""

    def __init__(self, stream: IO[str] | None = None):
        self.stream = stream or sys.stdout
        self.started = time.monotonic()

    def __call__(self, event: Event) -> None:
        record = {"kind": event.kind, "t": round(event.t - self.started, 3), **event.fields}
        print(json.dumps(record), file=self.stream, flush=True)


class QuietRenderer:
    """Nothing on stdout. Errors reach stderr on their own (the CLI prints them); a run
    that stopped early for its budget says so there too."""

    def __call__(self, event: Event) -> None:
        if event.kind == "budget_spent":
            print(f"gitevo: {event['message']}", file=sys.stderr, flush=True)


# ---- text of one event ----------------------------------------------------------------------

def line(event: Event) -> str | None:
    """The plain-text line of an event, or None for the ones only counters need."""
    f = event.fields
    if event.kind in ("notice", "budget_spent"):
        return f["message"]
    if event.kind == "plan":
        if f["resumed"]:
            return (f"generation {f['generation']}: resuming its saved plan "
                    f"({f['to_propose']} of {f['offspring']} still to propose)")
        ops = ", ".join(f"{n} {op}" for op, n in sorted(f["operators"].items()))
        return f"generation {f['generation']}: {f['offspring']} offspring ({ops})"
    if event.kind == "committed" and f["turns"]:  # an offline child is not news yet
        turns = "" if f["turns"] == 1 else f", {f['turns']} turns"
        return f"{f['id']}: committed {f['commit'][:10]} ({f['operator']}, {f['template']}{turns})"
    if event.kind == "rejected":
        return f"{f['id']}: rejected ({f['reason']})"
    if event.kind == "evaluation_finished":
        error = f" ({f['error']})" if f["error"] else ""
        return (f"{f['id']}: {f['status']} {objectives(f['objectives'])}{error} "
                f"[{f['seconds']:.1f} s]")
    return None


def objectives(values: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.6g}" for k, v in values.items())


def summary_lines(s: dict[str, Any]) -> list[str]:
    """A generation's summary as text: best per objective, validity, LLM use, time split."""
    best = ", ".join(f"{name} {_value(value)}{_delta(s['best_delta'].get(name))}"
                     for name, value in s["best"].items())
    head = (f"generation {s['generation']}: best {best}; hv {s['hypervolume']:.6g}"
            f"{_delta(s['hypervolume_delta'])}")
    if s["generation"] > 0:
        head += f"; {s['valid']}/{s['offspring']} valid ({s['valid_rate']:.0%})"
    out = [head]
    if s["rejected"]:
        out.append("  rejected: " + ", ".join(f"{k} {n}" for k, n in s["rejected"].items()))
    llm = s["llm"]
    if llm["calls"]:
        out.append(f"  LLM: {llm['calls']} calls ({llm['failed']} failed), "
                   f"{llm['tokens']:,} tokens, ${llm['cost']:.4f}")
    if s["time"]:
        out.append("  time: " + time_split(s["time"]))
    return out


def time_split(t: dict[str, float]) -> str:
    return (f"{t['wall']:.1f} s = LLM {t['llm']:.1f} s, validation {t['validate']:.1f} s, "
            f"training {t['fitness']:.1f} s, other {t['other']:.1f} s")


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _delta(value: float | None) -> str:
    return "" if value is None else f" ({value:+.4g})"


# ---- counters for the live display ----------------------------------------------------------

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
