"""Showing a run as it goes: plain lines, JSON Lines, nothing, or a live display.

Each renderer is an event listener (see gitevo.core.events). Plain text suits logs and
pipes (one line per child and step), JSON Lines suits scripts, quiet suits cron;
the live display (gitevo.results.live, rich) is for a terminal.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import IO

from gitevo.core.events import Event, Events
from gitevo.results.lines import line, summary_lines


@contextlib.contextmanager
def output(mode: str = "auto") -> Iterator[Events]:
    """An event bus wired to the renderer of `mode` ("auto", "live", "plain", "json" or
    "quiet"); "auto" is live on a terminal, else plain."""
    if mode == "auto":
        mode = "live" if sys.stdout.isatty() else "plain"
    if mode == "live":
        from gitevo.results.live import LiveRenderer  # rich loads only for a terminal

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
