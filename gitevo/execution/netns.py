"""A network of its own for an unprivileged process: what `unshare -rn` makes, made by the
process itself (a forked child of the launcher's server, right before it execs the
command or imports the gene files).

An unprivileged process may create a network namespace only inside a user namespace it
owns, so a user namespace comes first, with this user mapped to root in it (as `unshare
-r` maps it); the new network namespace holds a loopback device alone, and it is down.
Done in the child rather than by the `unshare` program, the child writes its own uid_map
before it binds itself to the Landlock floor, which then never has to grant /proc/self,
and the server keeps one ruleset per evaluation instead of building one per command.

Stand-alone, as landlock.py: the server (forkserver.py) loads it by path, and the probe
runs it in a bare Python (`python -I -S`), which must find nothing else of gitevo.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000

_LIBC: list[ctypes.CDLL] = []  # loaded once, by the server before it forks


def load() -> None:
    """Load libc now, so that a forked child does not."""
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))


def enter() -> None:
    """Move this process into a new user namespace, where it is root, and a new, empty
    network namespace; raises OSError (what the kernel refused) where it cannot."""
    load()
    uid, gid = os.geteuid(), os.getegid()  # read before: inside, they are unmapped
    if _LIBC[0].unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare of a user and a network namespace: {os.strerror(err)}")
    # an unprivileged process may map only its own ids, and gids only once setgroups is off
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"),
                       ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)
