"""Start sandboxed commands through one fork server (gitevo/execution/forkserver.py) per process.

Spawning from gitevo directly costs an extra shell per command to set the limits (a
preexec_fn can deadlock a process that runs threads, as gitevo does), and each import
check a whole new Python. The server forks instead: its children set their own limits,
and an import check outside bubblewrap is a fork that imports the gene files.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SERVER = Path(__file__).with_name("forkserver.py")


class LauncherError(RuntimeError):
    """The fork server could not start a child or went away."""


@dataclass
class Child:
    """One started command: its pid (a process group leader) and, once reaped, its status."""

    ident: int
    pid: int | None = None
    error: str | None = None
    returncode: int | None = None
    _started: threading.Event = field(default_factory=threading.Event)
    _ended: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code (-N for signal N); raises subprocess.TimeoutExpired."""
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
        if self.returncode is None:
            raise LauncherError(self.error or "the launcher went away")
        return self.returncode


class Launcher:
    """A client of one fork server; safe to share between threads."""

    def __init__(self, env: dict[str, str]):
        # -E -P, not -I: nothing of gitevo's environment or folder on its path, but the
        # user site-packages stay, as for the `python` of a fitness command
        self._proc = subprocess.Popen([sys.executable, "-E", "-P", str(SERVER)], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      cwd=tempfile.gettempdir())
        self._lock = threading.Lock()
        self._children: dict[int, Child] = {}
        self._next = 0
        self._alive = True
        self._reader = threading.Thread(target=self._read, name="gitevo-launcher", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        return self._alive

    def start(self, *, cwd: Path, env: dict[str, str], log: Path,
              limits: list[tuple[str, int]], cgroup: Path | None = None,
              argv: list[str] | None = None, modules: list[str] | None = None,
              landlock: dict | None = None, netns: bool = False) -> Child:
        """Start `argv`, or an import of `modules`, confined (under the Landlock policy
        `landlock` too, when given; in a network namespace of its own with `netns`);
        returns once it has a pid."""
        with self._lock:
            if not self._alive:
                raise LauncherError("the launcher went away")
            self._next += 1
            child = Child(self._next)
            self._children[child.ident] = child
            request = {"id": child.ident, "cwd": str(cwd), "env": env, "log": str(log),
                       "limits": limits, "cgroup": str(cgroup) if cgroup else None,
                       "argv": argv, "modules": modules, "landlock": landlock,
                       "netns": netns}
            try:
                self._proc.stdin.write(json.dumps(request).encode() + b"\n")
                self._proc.stdin.flush()
            except OSError as exc:
                self._alive = False
                raise LauncherError(f"the launcher went away: {exc}") from None
        child._started.wait()
        if child.pid is None:
            raise LauncherError(child.error or "the launcher went away")
        return child

    def close(self) -> None:
        with self._lock:
            # at once, not when the reader meets the end of the output: `shared` must not
            # hand out a launcher whose input is closed
            self._alive = False
            if self._proc.stdin and not self._proc.stdin.closed:
                self._proc.stdin.close()  # the server kills what is left, and exits
        self._proc.wait()

    def _read(self) -> None:
        try:
            for line in self._proc.stdout:
                self._handle(json.loads(line))
        finally:
            # however reading ended (the server exited, a broken reply), nobody may wait on
            # a child forever
            self._alive = False
            for child in list(self._children.values()):
                child.error = "the launcher exited while the command ran"
                child._started.set()
                child._ended.set()

    def _handle(self, message: dict) -> None:
        child = self._children.get(message["id"])
        if child is None:
            return
        if "status" in message:
            child.returncode = message["status"]
            self._children.pop(child.ident, None)
            child._ended.set()
        else:
            child.pid, child.error = message.get("pid"), message.get("error")
            if child.pid is None:
                self._children.pop(child.ident, None)
                child._ended.set()
            child._started.set()


_shared: Launcher | None = None
_shared_pid = 0  # the process that started it: a forked child needs its own
_shared_lock = threading.Lock()


def shared(env: Callable[[], dict[str, str]]) -> Launcher:
    """This process's launcher, started on first use (again if it died) with the
    environment `env()` returns (one with no secrets in it: children can read it back)."""
    global _shared, _shared_pid
    with _shared_lock:
        if _shared is None or not _shared.alive or _shared_pid != os.getpid():
            _shared, _shared_pid = Launcher(env()), os.getpid()
            atexit.register(_shared.close)
        return _shared
