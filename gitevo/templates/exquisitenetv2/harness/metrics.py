"""Write the metrics file last, atomically, and end the process before anything else runs.

Writing to a temporary name and renaming means gitevo never reads half a file, and a
file the candidate planted earlier is simply replaced. `finish` leaves through
`os._exit`: atexit handlers and finalisers the candidate registered never get to
overwrite the numbers.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

from harness import guard

Value = int | float | str


def flat(values: dict[str, object]) -> dict[str, Value]:
    """Numbers stay numbers (non-finite ones become strings, which JSON cannot hold)."""
    out: dict[str, Value] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            out[key] = int(value)
        elif isinstance(value, int | float):
            out[key] = value if math.isfinite(value) else str(value)
        else:
            out[key] = str(value)
    return out


def write(path: Path, values: dict[str, object]) -> None:
    text = guard.DUMPS(flat(values), indent=2, sort_keys=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with guard.OPEN(tmp, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    guard.REPLACE(tmp, path)


def discard(path: Path) -> None:
    """Remove a metrics file left from an earlier run, so a crash cannot inherit it."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def finish(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    guard.EXIT(code)
