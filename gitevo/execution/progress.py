"""A fitness command's learning curve, and the rule that stops a run clearly behind.

A command that names {progress} appends one JSON object per line to it as it goes, for
instance `{"at": 3, "of": 15, "accuracy": 0.52}`: `at` is how far it got (an epoch, a
step), `of` where it will end, and any other numbers beside. gitevo reads the file while
the command runs and keeps the curve in the note. With [fitness.early_stop], a run whose
metric falls behind its parent's at the same `at` by more than the margin, once `at/of`
reaches the minimum fraction, is stopped there and noted `stopped` with the curve it had.

The curve is the candidate's own report, so it decides where compute goes, never a score:
a run that claims too much is still measured in full, and one that claims too little only
loses its own evaluation.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import threading
from pathlib import Path
from types import TracebackType

from gitevo.config import EarlyStop

STOPPED = "stopped"
POLL = 0.5  # seconds between reads of the file while the command runs
MAX_BYTES = 256 * 1024  # of the file read: a command cannot make gitevo read gigabytes
MAX_POINTS = 1000
MAX_KEYS = 16

Point = dict[str, float]


def read(path: Path) -> list[Point]:
    """The curve in `path`: its complete, well-formed lines in order (others skipped),
    each point's finite numbers only, `at` required."""
    data = _head(path)
    if not data:
        return []
    lines = data.split(b"\n")[:-1]  # the last piece is still being written, or empty
    points = [p for p in (_point(line) for line in lines) if p is not None]
    return points[:MAX_POINTS]


def _head(path: Path) -> bytes:
    """The first MAX_BYTES of a regular file, not followed through a link; b"" else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return b""
        return handle.read(MAX_BYTES)


def _point(line: bytes) -> Point | None:
    try:
        raw = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    point = {str(k)[:64]: float(v) for k, v in list(raw.items())[:MAX_KEYS]
             if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    return point if "at" in point else None


def behind(point: Point, reference: list[Point] | tuple[Point, ...],
           rule: EarlyStop) -> str | None:
    """Why a run at `point` should stop, measured against its parent's curve at the same
    `at` (and the same `of`); None while it may go on."""
    value, at, of = point.get(rule.metric), point["at"], point.get("of")
    if value is None or not of or at / of < rule.min_fraction:
        return None
    before = next((p for p in reference if p.get("at") == at and p.get("of") == of
                   and rule.metric in p), None)
    if before is None:
        return None
    gap = before[rule.metric] - value if rule.goal == "max" else value - before[rule.metric]
    if gap <= rule.margin:
        return None
    return (f"stopped early at {at:g} of {of:g}: {rule.metric} {value:.4g} against its "
            f"parent's {before[rule.metric]:.4g} there (margin {rule.margin:g})")


class Watch:
    """Reads {progress} while a command runs, and sets `stop` once the run is behind.

    Used as a context manager around the command; afterwards `curve` is the whole curve
    and `reason` says why it was stopped (None if it was not)."""

    def __init__(self, path: Path, reference: tuple[Point, ...], rule: EarlyStop | None):
        self.path, self.reference, self.rule = path, reference, rule
        self.stop = threading.Event()
        self.curve: list[Point] = []
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        if self.rule is not None and self.reference:
            self._thread = threading.Thread(target=self._run, name="gitevo-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(OSError):
            self.curve = read(self.path)

    def _run(self) -> None:
        while not self._done.wait(POLL):
            curve = read(self.path)
            for point in curve[len(self.curve):]:
                self.reason = behind(point, self.reference, self.rule)
                if self.reason is not None:
                    self.stop.set()
                    return
            self.curve = curve
