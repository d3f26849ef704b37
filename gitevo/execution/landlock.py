"""Landlock (Linux 5.13+): a process confines itself, and all it starts, to named paths.

No root, no namespaces, no helper binary: three system calls make a ruleset, add a rule
per path (or TCP port), and bind the calling thread to it for good, across fork and
exec. What the running kernel offers is read at run time (its ABI version) and only that
is asked for: ABI 1 filesystem rights, 2 moving files between folders (refer), 3
truncation, 4 TCP bind and connect, 5 device ioctls, 6 scoping signals and abstract unix
sockets to the domain. The PyPI binding (landlock 1.0.0.dev5) stops at filesystem rights,
hence this module.

Stand-alone on purpose: the launcher's server (forkserver.py, which imports nothing of
gitevo) loads it by path and binds a short-lived thread (the command spawned from it
inherits the domain) or a forked child to a policy; inside bubblewrap a bare Python runs
`main` where landlock.pl, its Perl twin, cannot.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys

# paths, as lists or tuples: no collections.abc, whose import every command under
# bubblewrap would pay for (see main)
Paths = list[str] | tuple[str, ...]

# the same numbers on every architecture: the calls came after the syscall tables merged
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

# every filesystem right each ABI knows (a right the ruleset does not handle is allowed)
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
              5: (1 << 16) - 1}
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # all a file can take
READ = EXECUTE | READ_FILE | READ_DIR
# writing a file that exists, and nothing else: a device node, a /proc entry
WRITE_EXISTING = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV
WRITE = (1 << 16) - 1  # masked to what the ABI handles


class LandlockError(OSError):
    """The kernel refused a step; the message says which."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_LIBC: list[ctypes.CDLL] = []  # loaded once: the launcher loads it before it forks


def _libc() -> ctypes.CDLL:
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _call(libc: ctypes.CDLL, number: int, *args: object) -> int:
    result = libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise LandlockError(err, f"landlock syscall {number}: {os.strerror(err)}")
    return result


def abi() -> int:
    """The kernel's Landlock ABI version; 0 where it has none (too old, or disabled)."""
    try:
        return _call(_libc(), _CREATE_RULESET, None, ctypes.c_size_t(0),
                     ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (LandlockError, OSError, AttributeError):
        return 0


def restrict(read: Paths, write: Paths, *, existing: Paths = (),
             deny_tcp: bool = False, scope: bool = False, version: int | None = None) -> int:
    """Confine this process (and everything it starts later) for good: reads beneath
    `read`, full access beneath `write`, reads and writes of the files that already
    exist beneath `existing` (devices, /proc entries); TCP bind and connect refused with
    `deny_tcp`, signals and abstract unix sockets kept inside with `scope`, where the ABI
    has them. A path that does not exist is skipped. Returns the ABI used; raises
    LandlockError where the kernel has none or refuses a step."""
    version = abi() if version is None else version
    fd = ruleset(read, write, existing=existing, deny_tcp=deny_tcp, scope=scope,
                 version=version)
    try:
        enforce(fd)
    finally:
        os.close(fd)
    return version


def ruleset(read: Paths, write: Paths, *, existing: Paths = (),
            deny_tcp: bool = False, scope: bool = False, version: int = 0) -> int:
    """The ruleset of `restrict`, as a file descriptor, not yet enforced: a launcher builds
    it before it forks, so that its child only has to enforce it (see `enforce`)."""
    handled, net, scoped, size = _handled(version, deny_tcp, scope)
    attr = _RulesetAttr(handled, net, scoped)
    libc = _libc()
    fd = _call(libc, _CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
               ctypes.c_uint32(0))
    try:
        for rights, path in _rules(read, write, existing, handled):
            _allow(libc, fd, path, rights)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _handled(version: int, deny_tcp: bool, scope: bool) -> tuple[int, int, int, int]:
    """The ruleset's handled filesystem rights, network rights and scopes for the kernel's
    ABI `version`, and the size of the struct that says them."""
    if version < 1:
        raise LandlockError(0, "this kernel has no Landlock")
    net = NET_BIND_TCP | NET_CONNECT_TCP if deny_tcp and version >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if scope and version >= 6 else 0
    size = 8 if version < 4 else 16 if version < 6 else 24
    return _FS_BY_ABI.get(version, _FS_BY_ABI[5]), net, scoped, size


def _rules(read: Paths, write: Paths, existing: Paths, handled: int) -> list[tuple[int, str]]:
    return [(rights & handled, path)
            for paths, rights in ((read, READ), (existing, WRITE_EXISTING), (write, WRITE))
            for path in paths]


def enforce(fd: int) -> None:
    """Bind this thread, and all it starts from now on, to the ruleset `fd` for good."""
    libc = _libc()
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # the kernel requires it unprivileged
    _call(libc, _RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0))


def _allow(libc: ctypes.CDLL, fd_ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # nothing there: nothing to allow
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):  # the fd's, not the path's: no walk
            rights &= FILE_RIGHTS
        rule = _PathBeneath(rights, fd)
        _call(libc, _ADD_RULE, ctypes.c_int(fd_ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
              ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)


# ---- as a command: the floor inside bubblewrap, where no perl works -------------------------
# bwrap cannot set up its mounts under Landlock (a confined process may not change the
# mount topology), so inside it the floor is applied by the first program bwrap starts:
# landlock.pl, or where no perl works, a Python that imports this module and calls `main`
# with
#   --abi N [--deny-tcp] [--scope] --read P.. --write P.. --existing P.. -- COMMAND ARGS..
# (gitevo.execution.sandbox.LANDLOCK_PROGRAM): it confines itself, then becomes COMMAND.
# No json, no argparse: their imports would double the cost of a Python start paid by
# every command.

_SECTIONS = ("--read", "--write", "--existing")


def options(policy: dict) -> list[str]:
    """The command-line form of a floor policy (gitevo.execution.floor), up to `--`."""
    out = ["--abi", str(policy["abi"])]
    out += ["--deny-tcp"] * bool(policy["deny_tcp"]) + ["--scope"] * bool(policy["scope"])
    for section, paths in (("--read", policy["read"]), ("--write", policy["write"]),
                           ("--existing", policy["existing"])):
        out += [section, *paths]
    return [*out, "--"]


def perl_options(policy: dict) -> list[str]:
    """The arguments of landlock.pl (the floor inside bubblewrap, in Perl) for a floor
    policy, up to `--`: every number it needs, worked out here."""
    handled, net, scoped, size = _handled(policy["abi"], policy["deny_tcp"], policy["scope"])
    out = [str(n) for n in (handled, net, scoped, size, os.O_PATH | os.O_CLOEXEC, FILE_RIGHTS)]
    for rights, path in _rules(policy["read"], policy["write"], policy["existing"], handled):
        out += [str(rights), path]
    return [*out, "--"]


def _parse(args: list[str]) -> tuple[dict, list[str]]:
    if "--" not in args:
        raise ValueError("no `--` before the command")
    split = args.index("--")
    found: dict = {"abi": 0, "deny_tcp": False, "scope": False,
                   **{name: [] for name in _SECTIONS}}
    section = None
    items = iter(args[:split])
    for item in items:
        if item == "--abi":
            found["abi"] = int(next(items, "0"))
        elif item in ("--deny-tcp", "--scope"):
            found[item[2:].replace("-", "_")] = True
        elif item in _SECTIONS:
            section = item
        elif section is not None and item.startswith("/"):
            found[section].append(item)
        else:
            raise ValueError(f"unexpected argument {item!r}")
    return found, args[split + 1:]


def main(args: list[str]) -> None:
    """Confine this process by the policy in `args` (the form of `options`), then exec the
    command after `--`; exit 125, as the launcher's children do, where it cannot confine
    itself, 127 where the command cannot start."""
    try:
        policy, command = _parse(args)
        restrict(policy["--read"], policy["--write"], existing=policy["--existing"],
                 deny_tcp=policy["deny_tcp"], scope=policy["scope"], version=policy["abi"])
    except (ValueError, OSError) as exc:
        print(f"gitevo-sandbox: cannot apply Landlock: {exc}", file=sys.stderr)
        sys.exit(125)
    if not command:
        print("gitevo-sandbox: no command after `--`", file=sys.stderr)
        sys.exit(127)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"gitevo-sandbox: cannot start {command[0]}: {exc}", file=sys.stderr)
        sys.exit(127)
