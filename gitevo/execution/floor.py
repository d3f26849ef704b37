"""The Landlock floor: what a candidate's processes may read and write, as a policy that
the launcher binds each command to before it starts (gitevo.execution.landlock), or,
inside bubblewrap, the command's first program binds itself to.

An allowlist. Readable: the system (/usr, /lib*, /bin, /sbin, /etc, /opt, /proc, /sys),
the Python environment gitevo runs in, gitevo's own package, PYTHONPATH, the dataset
cache without its held-out part, and the existing paths that [fitness.vars] name (a
dataset) without the `hide` paths. Writable: the evaluation's worktree and private temp
dir, /dev/shm, the dataset cache only where the command may fill it. Everything else is
out of reach, the repository's .git (where the other individuals' worktrees live too),
home directories with their credentials, and the held-out data among them. A held-out
path inside a readable folder is carved out by allowing that folder's other entries one
by one.
"""

from __future__ import annotations

import functools
import os
import site
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gitevo.execution import landlock

SYSTEM = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt",
          "/proc", "/sys")
# files that exist and a process writes to: the null devices, terminals, GPUs
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
           "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
           "/dev/kfd", "/dev/dri", "/dev/nvidia-caps")
CARVE_DEPTH = 3  # how deep a readable folder is split to leave a hidden path out


@dataclass(frozen=True)
class Policy:
    abi: int
    read: list[str]
    write: list[str]
    existing: list[str]
    deny_tcp: bool
    scope: bool

    def as_request(self) -> dict:
        return {"abi": self.abi, "read": self.read, "write": self.write,
                "existing": self.existing, "deny_tcp": self.deny_tcp,
                "scope": self.scope}


@functools.cache
def kernel_abi() -> int:
    return landlock.abi()


def policy(*, workdir: Path, tmp: Path, env: dict[str, str], cache: list[Path],
           cache_writable: bool, hidden: list[Path], data: Iterable[Path],
           network: bool, masked: bool = False) -> Policy | None:
    """The floor for one candidate command; None where the kernel has no Landlock.
    `masked`: another layer (bubblewrap's read-only, empty mounts) already keeps the
    hidden paths out, so a writable cache is granted whole: carved, its top level would
    take no new file (a rule cannot grant a folder without what lies beneath it)."""
    version = kernel_abi()
    if version < 1:
        return None
    hidden_set = tuple(sorted({os.path.realpath(p) for p in hidden}))
    places = tuple(env.get(k, "") for k in ("PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX"))
    read = [*_static_reads(places, hidden_set), *_carved([str(p) for p in data], hidden_set)]
    write = [str(workdir), str(tmp), "/dev/shm"]
    for directory in cache:
        if cache_writable and masked:
            write.append(str(directory))
        else:
            (write if cache_writable else read).extend(_carved([str(directory)], hidden_set))
    return Policy(version, read, write, list(_devices()), deny_tcp=not network, scope=True)


# the same for every command of a run: worked out once, without the paths missing here
# (/lib32, a GPU's devices), which every ruleset would otherwise try to open in vain
@functools.cache
def _static_reads(places: tuple[str, str, str], hidden: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for p in _carved([*SYSTEM, *_python(places)], hidden) if os.path.exists(p))


@functools.cache
def _devices() -> tuple[str, ...]:
    found = (*DEVICES, *(str(p) for p in Path("/dev").glob("nvidia[0-9]*")))
    return tuple(p for p in found if os.path.exists(p))


def _python(places: tuple[str, str, str]) -> list[str]:
    """The interpreter, its libraries and environment, gitevo itself, PYTHONPATH (and the
    VIRTUAL_ENV and CONDA_PREFIX that `places` hold)."""
    pythonpath, *prefixes = places
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix,
             str(Path(sys.executable).resolve().parent), site.getusersitepackages(),
             str(Path(__file__).resolve().parents[1])}
    found.update(p for p in pythonpath.split(os.pathsep) if p)
    found.update(p for p in prefixes if p)
    return sorted(found)


def _carved(paths: list[str], hidden: tuple[str, ...]) -> list[str]:
    """`paths`, each split into its entries where a hidden path lies beneath it, so that
    no rule covers a hidden path (a Landlock rule grants everything beneath its folder)."""
    out: list[str] = []
    for path in paths:
        out += _carve(path, hidden, CARVE_DEPTH)
    return out


def _carve(path: str, hidden: tuple[str, ...], depth: int) -> list[str]:
    real = os.path.realpath(path)  # strings, not pathlib: this runs for every command
    if any(real == h or real.startswith(h + os.sep) for h in hidden):
        return []  # the path is hidden itself, or lies inside a hidden one
    if not any(h.startswith(real.rstrip(os.sep) + os.sep) for h in hidden):
        return [path]
    if depth == 0 or not os.path.isdir(real):
        return []  # too deep to split: leave it all out rather than show a hidden part
    out = []
    with os.scandir(real) as entries:
        for entry in entries:
            out += _carve(entry.path, hidden, depth - 1)
    return out
