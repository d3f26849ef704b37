"""The live display on a terminal (rich): counters for the generation in progress, the
children's lines scrolling above them, and a summary panel as each generation ends."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gitevo.core.events import Event
from gitevo.results.lines import line, time_split
from gitevo.results.tally import Tally

BAR = 30
STYLES = {"ok": "green", "invalid": "yellow", "rejected": "yellow", "timeout": "red",
          "crashed": "red", "suspect": "magenta", "stopped": "blue", "screened": "blue"}


class LiveRenderer:
    """An event listener; use it as a context manager around the run."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.tally = Tally()
        self._lock = threading.Lock()  # the refresh thread reads what events write
        self._live = Live(console=self.console, get_renderable=self._render,
                          refresh_per_second=4)

    def __enter__(self) -> LiveRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live.is_started:
            self._live.stop()

    def __call__(self, event: Event) -> None:
        if not self._live.is_started:  # on the first event: an early error draws nothing
            self._live.start()
        with self._lock:
            if event.kind == "plan":
                self.tally = Tally.of_plan(event)
            else:
                self.tally.update(event)
        if event.kind == "summary":
            self.console.print(summary_panel(event.fields))
        elif (text := line(event)) is not None:
            style = STYLES.get(event.fields.get("status") or event.kind, "")
            self.console.print(Text(text, style=style))

    def _render(self) -> RenderableType:
        with self._lock:
            return counters(self.tally, time.monotonic())


def counters(tally: Tally, now: float) -> RenderableType:
    """Proposals, LLM calls and evaluations of the generation in progress."""
    grid = Table.grid(padding=(0, 1))
    if tally.generation is not None:
        grid.add_row(Text(f"generation {tally.generation}", style="bold"))
        grid.add_row("proposals", ProgressBar(tally.offspring, tally.proposed, width=BAR),
                     f"{tally.proposed}/{tally.offspring}  {tally.committed} applied, "
                     f"{tally.rejected} rejected")
    if tally.calls:
        grid.add_row("LLM calls", "", f"{tally.calls - tally.failed_calls} done, "
                     f"{tally.failed_calls} failed, {tally.tokens:,} tokens, ${tally.cost:.4f}")
    if tally.to_evaluate:
        left = tally.eta(now)
        grid.add_row("evaluations", ProgressBar(tally.to_evaluate, tally.evaluated, width=BAR),
                     f"{tally.evaluated}/{tally.to_evaluate}  {len(tally.running)} running, "
                     f"ETA {'?' if left is None else _clock(left)}")
    return grid


def summary_panel(s: dict[str, Any]) -> RenderableType:
    """One screen at the end of a generation: what improved, what it cost, where time went."""
    table = Table.grid(padding=(0, 2))
    for name, value in s["best"].items():
        delta = s["best_delta"].get(name)
        table.add_row(f"best {name}", "-" if value is None else f"{value:.6g}",
                      "" if delta is None else f"{delta:+.4g}")
    hv_delta = s["hypervolume_delta"]
    table.add_row("hypervolume", f"{s['hypervolume']:.6g}",
                  "" if hv_delta is None else f"{hv_delta:+.4g}")
    if s["generation"] > 0:
        rejected = ", ".join(f"{k} {n}" for k, n in s["rejected"].items())
        table.add_row("valid offspring", f"{s['valid']}/{s['offspring']} "
                      f"({s['valid_rate']:.0%})", f"rejected: {rejected}" if rejected else "")
    if s["llm"]["calls"]:
        llm = s["llm"]
        table.add_row("LLM", f"{llm['calls']} calls", f"{llm['failed']} failed, "
                      f"{llm['tokens']:,} tokens, ${llm['cost']:.4f}")
    parts = [table, Text("time: " + time_split(s["time"]))] if s["time"] else [table]
    return Panel(Group(*parts), title=f"generation {s['generation']}", expand=False)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
