"""`gitevo doctor`: which sandbox protections hold on this machine.

Each answer comes from a probe that runs through the same sandbox as an evaluation and
reports what it meets (its limits, its network, whether the repository takes a write),
because what a platform allows is only known by trying.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gitevo import __version__
from gitevo.config import Sandbox
from gitevo.execution import cgroups, floor, sandbox

# run inside the sandbox from a worktree where gitevo puts them, under a fake
# <scratch>/repo/.git whose config holds a fake token; $GITEVO_PUBLIC_REPO is <scratch>/repo
PROBE = r"""
echo "as=$(ulimit -v)"; echo "cpu=$(ulimit -t)"; echo "fsize=$(ulimit -f)"
echo "nproc=$(ulimit -u)"; echo "cgroup=$(grep -c ':/.*gitevo-' /proc/self/cgroup)"
echo "ifaces=$(tail -n +3 /proc/net/dev | grep -vc ' lo:')"
echo "pidns=$(readlink /proc/self/ns/pid)"; echo "tmp=$TMPDIR"
if touch "$GITEVO_PUBLIC_REPO/probe" 2>/dev/null; then echo repo=writable
else echo repo=readonly; fi
if grep -qs token "$GITEVO_PUBLIC_REPO/.git/config"; then echo git=visible; else echo git=hidden; fi
if grep -qs answers "$GITEVO_CACHE_DIR/heldout/labels"; then echo heldout=visible
else echo heldout=hidden; fi
if grep -qs plain "$GITEVO_PUBLIC_REPO/../elsewhere"; then echo floor=open; else echo floor=held; fi
"""
WORKTREE = "repo/.git/gitevo/worktrees/main/probe"


@dataclass(frozen=True)
class Row:
    name: str
    active: bool
    detail: str


def check(settings: Sandbox, timeout: float) -> list[Row]:
    """One row per protection, from a probe run in the sandbox `settings` describe."""
    try:
        kind, why = sandbox.mode(settings)
    except sandbox.SandboxUnavailable as exc:
        kind, why = "none", str(exc)
        settings = dataclasses.replace(settings, isolation="none")
    seen = _probe(settings, timeout)
    return [_env_row(), Row("private temp dir", seen.get("tmp", "").endswith("/tmp"),
                            "TMPDIR per evaluation, removed after it"),
            Row("process-group kill", True, "SIGKILL to the whole group at the timeout"),
            _memory_row(settings, seen),
            _limit_row("CPU time", seen.get("cpu"), 1, "s per process",
                       f"the timeout, {timeout:g}s, x cores"),
            _limit_row("file size", seen.get("fsize"), 1024 ** 2, " GB per file",
                       "sandbox.file_size"),
            _process_row(seen), _network_row(settings, kind, why, seen),
            _landlock_row(settings, kind, seen),
            Row("read-only repository", seen.get("repo") == "readonly",
                "only the worktree, temp dir and dataset cache are writable" if
                seen.get("repo") == "readonly" else f"needs bubblewrap or Landlock ({why})"),
            Row("hidden .git, credentials", seen.get("git") == "hidden",
                "the repository's .git and ~/.ssh, ~/.aws, ~/.netrc ... out of reach" if
                seen.get("git") == "hidden" else f"needs bubblewrap or Landlock ({why})"),
            _pidns_row(seen, why),
            Row("held-out data hidden", seen.get("heldout") == "hidden",
                "<cache>/heldout is out of reach; only prepare and [fitness] score see it" if
                seen.get("heldout") == "hidden" else f"needs bubblewrap or Landlock ({why}): "
                "a trainer could read what a [fitness] score scores with, so those scores "
                "are not protected")]


def _landlock_row(settings: Sandbox, kind: str, seen: dict[str, str]) -> Row:
    """Active when the probe could not read a plain file that bubblewrap shows and only
    the floor refuses (one outside the worktree, the system and the data)."""
    version = floor.kernel_abi()
    if not settings.landlock:
        return Row("Landlock floor", False, "sandbox.landlock = false")
    if version < 1:
        return Row("Landlock floor", False, "this kernel has no Landlock (Linux 5.13+ with "
                   "landlock in the LSM list)")
    if seen.get("floor") != "held":
        return Row("Landlock floor", False, f"kernel ABI {version}, yet the probe read a file "
                   "outside its allowlist")
    extra = ", TCP bind/connect refused" if version >= 4 and settings.network == "deny" else ""
    scoped = ", signals and abstract sockets scoped" if version >= 6 else ""
    where = f" (inside bubblewrap, a second layer, bound by {_floor_program()})" \
        if kind == "bwrap" else ""
    return Row("Landlock floor", True, f"ABI {version}{where}: reads only the system, the "
               f"Python environment, the worktree and the data; writes only the worktree and "
               f"temp dir{extra}{scoped}")


def _floor_program() -> str:
    program = sandbox.floor_program()
    return program.detail if program.works else f"python: {program.detail}"


def _probe(settings: Sandbox, timeout: float) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="gitevo-doctor-") as scratch:
        root = Path(scratch)
        for part in (WORKTREE, "tmp", "cache/heldout"):
            (root / part).mkdir(parents=True)
        (root / "repo/.git/config").write_text("[remote]\n  url = https://x:token@example\n")
        (root / "cache/heldout/labels").write_text("the answers\n")
        (root / "elsewhere").write_text("plain\n")
        env = sandbox.sandbox_env(root / "tmp") | {"GITEVO_PUBLIC_REPO": str(root / "repo"),
                                                   "GITEVO_CACHE_DIR": str(root / "cache")}
        # the configured timeout, because the CPU limit is derived from it
        outcome = sandbox.run_confined(PROBE, workdir=root / WORKTREE, tmp=root / "tmp",
                                       timeout=timeout, env=env, settings=settings)
        return dict(line.split("=", 1) for line in outcome.tail.splitlines() if "=" in line)


def _env_row() -> Row:
    passed = sandbox.sandbox_env(Path(tempfile.gettempdir()))
    secret = sorted(k for k in os.environ if sandbox.SECRET.search(k))
    detail = f"{len(passed)} variables pass, from an allowlist; {len(os.environ)} set here"
    if secret:
        detail += f"; held back: {', '.join(secret[:4])}{' ...' if len(secret) > 4 else ''}"
    return Row("environment allowlist", not any(k in passed for k in secret), detail)


def _limit_row(name: str, value: str | None, scale: int, unit: str, source: str) -> Row:
    if value and value.isdigit():
        return Row(name, True, f"{int(value) / scale:g}{unit} (from {source})")
    return Row(name, False, f"{value or 'unknown'} ({source} is 0, or setting it failed)")


def _memory_row(settings: Sandbox, seen: dict[str, str]) -> Row:
    value = seen.get("as", "")
    if value.isdigit():
        return Row("address space", True, f"{int(value) / 1024 ** 2:.1f} GB per process")
    if settings.memory == 0:
        return Row("address space", False, "sandbox.memory = 0")
    if settings.memory is None and sandbox.gpu_visible():
        return Row("address space", False, "off by default where a GPU is visible (CUDA maps "
                   "more address space than RAM); set sandbox.memory to force one")
    return Row("address space", False, f"{value or 'unknown'}: setting RLIMIT_AS failed")


def _process_row(seen: dict[str, str]) -> Row:
    _, why = cgroups.pids_cgroup()
    if seen.get("cgroup", "0") != "0":
        return Row("process bound", True, f"cgroup {why} (threads count too)")
    if os.geteuid() != 0 and seen.get("nproc", "").isdigit():
        return Row("process bound", True, f"RLIMIT_NPROC {seen['nproc']}, counted over all "
                   "of this user's processes")
    return Row("process bound", False, f"no writable pids cgroup ({why}), and RLIMIT_NPROC "
               "does not bind root" if os.geteuid() == 0 else f"no writable pids cgroup ({why})")


def _network_row(settings: Sandbox, kind: str, why: str, seen: dict[str, str]) -> Row:
    if settings.network == "allow":
        return Row("network isolation", False, 'sandbox.network = "allow"')
    host = _interfaces()
    if seen.get("ifaces") == "0" and host:
        return Row("network isolation", True, f"new network namespace by {kind} ({why})")
    if seen.get("ifaces") == "0":
        return Row("network isolation", kind != "none", f"{kind}: {why} (the host has only "
                   "loopback either way)")
    if settings.landlock and floor.kernel_abi() >= 4:
        return Row("network isolation", True, "TCP bind and connect refused by Landlock "
                   f"(UDP is not covered; a network namespace would be: {why})")
    return Row("network isolation", False, f"not available: {why}")


def _pidns_row(seen: dict[str, str], why: str) -> Row:
    own = os.readlink("/proc/self/ns/pid") if os.path.exists("/proc/self/ns/pid") else ""
    if seen.get("pidns") and seen["pidns"] != own:
        return Row("PID namespace", True, "everything started dies with the sandbox")
    return Row("PID namespace", False, f"needs bubblewrap ({why})")


def _interfaces() -> int:
    try:
        lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    except OSError:
        return 0
    return sum(1 for line in lines if not line.strip().startswith("lo:"))


def versions() -> list[tuple[str, str]]:
    _, why = cgroups.pids_cgroup()
    return [("gitevo", __version__), ("python", platform.python_version()),
            ("kernel", f"{platform.system()} {platform.release()}"),
            ("bwrap", sandbox.bwrap().detail), ("unshare", sandbox.unshare().detail),
            ("pids cgroup", why), ("user", f"uid {os.geteuid()}")]


def render(rows: list[Row], tools: list[tuple[str, str]], source: str) -> list[str]:
    width = max(len(r.name) for r in rows)
    lines = [f"sandbox protections on this machine ({source})", ""]
    lines += [f"  {r.name:<{width}}  {'active  ' if r.active else 'INACTIVE'}  {r.detail}"
              for r in rows]
    lines += ["", "tools:"] + [f"  {name:<{width}}  {value}" for name, value in tools]
    return lines
