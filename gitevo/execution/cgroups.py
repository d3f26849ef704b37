"""pids cgroups: the process bound that also holds for root (RLIMIT_NPROC does not).

Each sandboxed command runs in a cgroup of its own with `pids.max` set. Creating and
removing a cgroup costs two slow filesystem calls per command, so the groups are pooled
per process: a command takes a free one, and gives it back once every process left in
it is dead. The pool's groups are removed when gitevo exits, and `sweep` removes the
groups of a gitevo that died before it could.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@functools.cache
def pids_cgroup() -> tuple[Path | None, str]:
    """A cgroup directory where we may create children with pids.max, or None and why."""
    base = _pids_base()
    if base is None:
        return None, "no pids cgroup controller for this process"
    probe = base / f"gitevo-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        probe.mkdir()
    except OSError as exc:
        return None, f"{base} is not writable ({exc.strerror})"
    try:
        if not (probe / "pids.max").exists():
            return None, f"{base}: pids controller not enabled for children"
        (probe / "pids.max").write_text("64")
        return base, f"pids.max under {base}"
    except OSError as exc:
        return None, f"{base}: {exc.strerror}"
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def _pids_base() -> Path | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):  # cgroup v1
            return Path("/sys/fs/cgroup/pids") / path.lstrip("/")
    for line in lines:
        if line.startswith("0::"):  # cgroup v2, mounted alone or as "unified" beside v1
            for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                own = root / line[3:].lstrip("/")
                if "pids" in _read(root / "cgroup.controllers").split():
                    return own
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@dataclass
class Group:
    """One pooled cgroup: its directory, the limit written to it, and how many forks its
    limit had refused when it was last handed out (pids.events only ever counts up)."""

    path: Path
    limit: int
    refused: int = 0

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"


class Pool:
    """This process's free cgroups; safe to share between threads."""

    def __init__(self) -> None:
        self._free: list[Group] = []
        self._all: list[Group] = []
        self._lock = threading.Lock()
        self._owner = os.getpid()
        atexit.register(self.close)

    def take(self, limit: int) -> Group | None:
        """A cgroup with no process in it and `pids.max` = limit; None where there are no
        writable pids cgroups."""
        with self._lock:
            group = self._free.pop() if self._free else None
        try:
            if group is None:
                group = self._create(limit)
            elif group.limit != limit:
                (group.path / "pids.max").write_text(str(limit))
                group.limit = limit
        except OSError:
            return None
        return group

    def give_back(self, group: Group) -> list[str]:
        """Kill whatever is left in the group (even processes that left the command's
        process group), pool it again if nothing in it still counts, and say how many forks
        its limit refused."""
        empty = _kill_all(group.path)
        events = re.search(r"^max (\d+)", _read(group.path / "pids.events"), re.M)
        count = int(events.group(1)) if events else 0
        refused, group.refused = count - group.refused, count
        # a task not yet reaped (a zombie whose parent died) still counts against
        # pids.max: such a group would hand the next command fewer processes
        if empty and _read(group.path / "pids.current").strip() == "0":
            with self._lock:
                self._free.append(group)
        if refused > 0:
            return [f"process limit {group.limit} reached: {refused} forks refused"]
        return []

    def close(self) -> None:
        """Remove every group this process made (at exit; a forked child leaves them)."""
        if os.getpid() != self._owner:
            return
        with self._lock:
            groups, self._all, self._free = self._all, [], []
        for group in groups:
            remove(group.path)

    def _create(self, limit: int) -> Group | None:
        base, _ = pids_cgroup()
        if base is None:
            return None
        path = base / f"gitevo-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        try:
            (path / "pids.max").write_text(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            raise
        group = Group(path, limit)
        with self._lock:
            self._all.append(group)
        return group


def _kill_all(path: Path, patience: float = 5.0) -> bool:
    """SIGKILL every process in the cgroup until none is left; False if some outlived
    `patience` seconds (then the group is not used again)."""
    deadline = time.monotonic() + patience
    while True:
        pids = _read(path / "cgroup.procs").split()
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.02)


def remove(path: Path) -> None:
    """Kill what is in a cgroup and remove it."""
    _kill_all(path)
    for _ in range(50):  # the kernel frees the group a moment after its last task
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def owner_gone(name: str) -> bool:
    """Whether `name`, of the form gitevo-<pid>-..., belongs to a process of this machine
    that no longer runs (a name without a pid belongs to nobody we can judge)."""
    owner = name.split("-")[1] if name.count("-") >= 2 else ""
    return owner.isdigit() and not Path(f"/proc/{owner}").exists()


def sweep() -> None:
    """Remove the cgroups of gitevo processes that died before they could."""
    base, _ = pids_cgroup()
    for group in base.glob("gitevo-*-*") if base is not None else ():
        if owner_gone(group.name):
            remove(group)


_pool: Pool | None = None
_pool_lock = threading.Lock()


def pool() -> Pool:
    """This process's pool (a forked child gets a new one)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._owner != os.getpid():
            _pool = Pool()
        return _pool
