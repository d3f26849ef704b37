"""Defence in depth in the trainer: a PEP 578 audit hook that refuses what no honest
model needs.

The first layer is where the code runs: the trainer never holds the held-out labels,
and the scorer, apart, decides every number. This hook is the second layer. Installed
before model.py is imported, it refuses, when the code asking is the candidate's (a
file in the worktree other than the harness), frame introspection, trace and profile
hooks, ctypes, walking the garbage collector, starting processes, building code under
another file's name, and opening files outside the worktree and the training data
(reading Python's own installation aside: imports the model triggers read there).
Torch and the standard library asking for themselves are let through: torch reads
frames and opens files as it traces and exports.

A refusal raises PermissionError where it happened and is also kept here, so that a
candidate that catches the error still ends invalid, with the attempt named.
"""

from __future__ import annotations

import functools
import os
import site
import sys
import sysconfig
import threading
from pathlib import Path

_FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
_ALWAYS = {  # never needed by a model, whoever it calls through
    "sys.settrace": "a trace hook (sys.settrace)",
    "sys.setprofile": "a profile hook (sys.setprofile)",
    "sys.addaudithook": "an audit hook of its own (sys.addaudithook)",
    "gc.get_objects": "walking the garbage collector (gc.get_objects)",
    "gc.get_referrers": "walking the garbage collector (gc.get_referrers)",
    "gc.get_referents": "walking the garbage collector (gc.get_referents)",
    "subprocess.Popen": "starting a process (subprocess.Popen)",
    "os.system": "starting a process (os.system)",
    "os.exec": "starting a process (os.exec*)",
    "os.posix_spawn": "starting a process (os.posix_spawn)",
    "os.spawn": "starting a process (os.spawn*)",
    "os.fork": "starting a process (os.fork)",
    "os.forkpty": "starting a process (os.forkpty)",
    "os.kill": "signalling a process (os.kill)",
    "code.__new__": "building a code object (code.__new__)",
}
_FRAMES = {  # stdlib modules use these for themselves (namedtuple, logging, typing)
    "sys._getframe": "frame introspection (sys._getframe)",
    "sys._current_frames": "frame introspection (sys._current_frames)",
}
# stdlib modules whose whole job is reaching frames: asking through them is asking
_FRAME_HELPERS = ("inspect.py", "traceback.py", "linecache.py")


class Audit:
    """Who may do what in this process; `refusals` lists what the candidate tried."""

    def __init__(self, root: Path, readable: list[Path], hidden: list[Path]):
        self.root = _real(str(root))
        self.harness = (self.root / "harness", self.root / "train.py", self.root / "score.py")
        self.readable = [_real(str(p)) for p in readable]
        self.hidden = [_real(str(p)) for p in hidden]
        self.refusals: list[str] = []
        self._stdlib = _stdlib_dirs()
        # Python itself: an import the model triggers (a codec, a lazy stdlib module)
        # reads there; reading it tells a model nothing about the held-out data
        self.library = [_real(d) for d in _library_dirs()]
        self._busy = threading.local()

    def __call__(self, event: str, args: tuple) -> None:
        if getattr(self._busy, "on", False):
            return  # the checks below resolve paths and read frames: their events land here
        self._busy.on = True
        try:
            refused = self._check(event, args)
        finally:
            self._busy.on = False
        if refused:
            raise PermissionError(refused)

    def _check(self, event: str, args: tuple) -> str | None:
        what = _ALWAYS.get(event) or _FRAMES.get(event)
        if what is None and event.startswith("ctypes."):
            what = f"ctypes ({event})"
        elif event == "object.__getattr__" and args[1] in _FRAME_ATTRIBUTES:
            what = f"frame introspection (.{args[1]})"
        elif event == "object.__setattr__" and args[1] == "__code__":
            what = "replacing a function's code (__code__)"
        elif event in ("open", "compile"):
            what = self._path_rule(event, args)
        return None if what is None else self._refuse(event, what)

    def _path_rule(self, event: str, args: tuple) -> str | None:
        path = _path(args[0] if event == "open" else args[1])
        if path is None:
            return None
        if any(_under(path, d) for d in self.hidden):
            return f"reading held-out data ({path})"  # nobody in the trainer does, torch neither
        if event == "compile":
            return None if _under(path, self.root) else f"compiling code as {path}"
        if _under(path, self.root) or any(_under(path, p) for p in self.readable):
            return None
        if not _writes(args[2]) and any(_under(path, d) for d in self.library):
            return None
        return f"opening {path}"

    def _refuse(self, event: str, what: str) -> str | None:
        raised = sys._getframe(3)  # 0: _refuse, 1: _check, 2: __call__, 3: who raised it
        frames = event in _FRAMES or what.startswith("frame introspection")
        asker = self._asker(raised, frames)
        if asker is None and not what.startswith("reading held-out data"):
            return None  # torch, the harness or the standard library, for itself
        where = asker or self._first_candidate(raised) or raised
        line = (f"model.py tried {what} at {Path(where.f_code.co_filename).name}:"
                f"{where.f_lineno}; the trainer refuses it")
        self.refusals.append(line)
        return line

    def _asker(self, frame, frames_only: bool):
        """The candidate's frame that asked, or None when torch, the harness or the
        standard library asked for itself."""
        while frame is not None:
            name = frame.f_code.co_filename
            if not self._passes_through(name, frames_only):
                return frame if self._candidate(name) else None
            frame = frame.f_back
        return None

    def _first_candidate(self, frame):
        while frame is not None and not self._candidate(frame.f_code.co_filename):
            frame = frame.f_back
        return frame

    def _passes_through(self, name: str, frames_only: bool) -> bool:
        if name.startswith("<"):
            return True  # eval'd strings and frozen importlib: whoever called them asked
        if frames_only:
            return name.endswith(_FRAME_HELPERS) and self._in_stdlib(name)
        return self._in_stdlib(name)

    def _in_stdlib(self, name: str) -> bool:
        parts = Path(name).parts
        if "site-packages" in parts or "dist-packages" in parts:
            return False
        return any(name.startswith(d) for d in self._stdlib)

    def _candidate(self, name: str) -> bool:
        path = _code_path(name)
        if not _under(path, self.root):
            return False
        return not any(path == h or _under(path, h) for h in self.harness)


def install(root: Path, readable: list[Path], hidden: list[Path]) -> Audit:
    """Add the hook to this process for good (audit hooks cannot be removed)."""
    audit = Audit(root, readable, hidden)
    sys.addaudithook(audit)
    return audit


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths["stdlib"], paths["platstdlib"], os.path.dirname(os.__file__)}
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs)


def _library_dirs() -> set[str]:
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    dirs.update(p for p in sys.path if p and os.path.isdir(p))
    return dirs


def _writes(flags: object) -> bool:
    """Whether open's flags (the event's third argument) ask to change the file."""
    changing = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    return not isinstance(flags, int) or bool(flags & changing)


def _path(raw: object) -> Path | None:
    if isinstance(raw, int) or raw is None:
        return None  # a descriptor that is already open: its open was checked
    try:
        text = os.fsdecode(raw)
    except (TypeError, ValueError):
        return None
    # eval'd strings; the real path otherwise, so that a symlink leads nowhere new
    return None if text.startswith("<") else _real(text)


def _real(name: str) -> Path:
    return Path(os.path.realpath(name))


@functools.lru_cache(maxsize=4096)
def _code_path(name: str) -> Path:
    """A code object's file, resolved once: torch asks for frames thousands of times."""
    return _real(name)


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
