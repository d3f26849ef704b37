"""Run one command confined: the code it runs was written by an LLM and is not trusted.

What confines it, strongest tool first (`gitevo doctor` says which are active here):
- an environment reduced to an allowlist, so API keys and cloud credentials stay out;
- a private temp dir, and its own process group, killed whole on timeout;
- resource limits (address space, CPU time, file size; processes through a pids cgroup
  when one is writable, else RLIMIT_NPROC, which does not bind root);
- bubblewrap when it works: no network, a read-only filesystem except the worktree, the
  temp dir and the dataset cache, a PID namespace that dies with it; else a user and a
  network namespace that the launcher's child makes itself (what `unshare -rn` makes),
  for the network alone; else nothing more;
- under all of them, the Landlock floor (gitevo.execution.floor) where the kernel has
  Landlock: the paths a candidate may read and write, enforced by the kernel on every
  process it starts (inside bubblewrap, a second layer).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gitevo.config import ConfigError, Sandbox
from gitevo.execution import cgroups, floor, landlock, launcher

TAIL_CHARS = 2000
STOP_POLL = 0.1  # seconds between looks at a `stop` event while a command runs
GB = 1024 ** 3
DEFAULT = Sandbox()
# the floor's program inside bubblewrap: Perl where it works (a fifth of the start), else
# a Python that imports the module (its cached bytecode; run as a script, it would be
# compiled again for every command)
LANDLOCK_PERL = Path(landlock.__file__).with_suffix(".pl")


def _standalone(call: str) -> str:
    """A `python -c` program that imports one of the stand-alone modules beside
    landlock.py (nothing else of gitevo) and runs `call`."""
    return (f"import sys; sys.path.insert(0, {str(Path(landlock.__file__).parent)!r}); "
            f"import {call.split('.')[0]}; {call}")


LANDLOCK_PROGRAM = _standalone("landlock.main(sys.argv[1:])")
# tries what the launcher's children do for isolation = "unshare"
NETNS_PROBE = _standalone("netns.enter()")

# Passed through to the evaluated code; everything else (API keys, cloud credentials,
# tokens) stays out. Names that look secret are refused even when a config lists them.
ENV_ALLOW = ("PATH", "HOME", "LANG", "LANGUAGE", "TERM", "TZ", "USER", "LOGNAME", "SHELL",
             "VIRTUAL_ENV", "CONDA_PREFIX", "CUDA_VISIBLE_DEVICES", "CUDA_HOME",
             "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_HOME",
             "XDG_CACHE_HOME", "LD_LIBRARY_PATH", "PYTHONHASHSEED", "CI")
ENV_ALLOW_PREFIXES = ("LC_", "GITEVO_PUBLIC_")
SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|SESSION", re.I)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# device nodes a GPU job needs inside bubblewrap's otherwise minimal /dev
GPU_DEVICES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/kfd")


class SandboxUnavailable(ConfigError):
    """gitevo.toml asks for an isolation tool that does not work on this machine."""


@dataclass
class Outcome:
    returncode: int
    timed_out: bool
    tail: str
    hits: list[str] = field(default_factory=list)  # limits the sandbox saw being reached
    cancelled: bool = False  # gitevo stopped it (see run_confined's `stop`)

    @property
    def last_line(self) -> str:
        lines = [line for line in self.tail.splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(no output)"

    def reason(self) -> str:
        """Why it ended, beyond the exit status: a signal's meaning, limits reached."""
        parts = list(self.hits)
        sig = _signal_of(self.returncode)
        if sig is not None and not self.timed_out:  # a timeout's SIGKILL was ours
            parts.insert(0, _SIGNAL_MEANING.get(sig, signal.Signals(sig).name))
        return f" ({'; '.join(parts)})" if parts else ""


_SIGNAL_MEANING = {signal.SIGKILL: "SIGKILL: killed, e.g. out of memory",
                   signal.SIGXCPU: "SIGXCPU: CPU time limit reached",
                   signal.SIGXFSZ: "SIGXFSZ: file size limit reached",
                   signal.SIGSEGV: "SIGSEGV: segmentation fault"}


def _signal_of(returncode: int) -> int | None:
    # Popen reports a signal as -N; bash and bwrap pass a child's signal on as 128 + N
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    return number if number in signal.valid_signals() and number > 0 else None


# ---- environment ----------------------------------------------------------------------------

def sandbox_env(tmp: Path, extra: tuple[str, ...] = (),
                threads: int | None = None) -> dict[str, str]:
    """The evaluated code's environment: an allowlist, with no secrets in it.

    `threads` caps the math libraries' thread pools unless the user already did: N
    evaluations side by side, each spinning up one thread per core, run several
    times slower than the same N one after another.
    """
    # names first, values only for those that pass: decoding every value of a large
    # environment cost more than the rest of this function, four times per offspring
    env = {k: os.environ[k] for k in list(os.environ)
           if (k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES) or k in extra)
           and not SECRET.search(k)}
    if threads is not None:
        for name in THREAD_VARS:
            env.setdefault(name, str(threads))
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.update(TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    return env


HELDOUT = "heldout"


def cache_dirs(env: dict[str, str]) -> list[Path]:
    """Where a harness keeps decoded datasets between evaluations (the templates' rule):
    these stay writable under bubblewrap so the first evaluation can fill the cache, unless
    a [fitness] prepare step filled it first (then candidates only read it)."""
    dirs = [Path(env["GITEVO_CACHE_DIR"])] if env.get("GITEVO_CACHE_DIR") else []
    if env.get("XDG_CACHE_HOME"):
        dirs.append(Path(env["XDG_CACHE_HOME"]) / "gitevo")
    elif env.get("HOME"):
        dirs.append(Path(env["HOME"]) / ".cache" / "gitevo")
    return dirs


def heldout_dirs(env: dict[str, str]) -> list[Path]:
    """<cache>/heldout of every cache dir: the data that decides scores (held-out images and
    their labels). Only the trusted commands, prepare and score, see it; under bubblewrap
    every other command finds it empty."""
    return [directory / HELDOUT for directory in cache_dirs(env)]


# ---- resource limits ------------------------------------------------------------------------

@functools.cache
def gpu_visible() -> bool:
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/kfd"))


def memory_limit(settings: Sandbox) -> int | None:
    """Bytes of address space per process, or None for no limit.

    Auto: three quarters of RAM, but no limit where a GPU is visible, because CUDA and
    ROCm map address ranges far larger than RAM and fail to start under RLIMIT_AS.
    """
    if settings.memory is not None:
        return int(settings.memory * GB) or None
    if gpu_visible():
        return None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.75)
    return None


def cpu_limit(timeout: float) -> int:
    """CPU seconds per process: the wall-clock timeout is what ends a run; this backstop
    ends a process that outlives a gitevo killed before it could stop it. Every core may
    be busy for the whole timeout, so the bound is timeout x cores, with a margin."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return math.ceil(timeout * (cores or 1) * 1.25) + 60


def _user_tasks() -> int:
    """Tasks (threads) this user runs now: RLIMIT_NPROC counts them along with ours."""
    uid, count = str(os.getuid()), 0
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            text = status.read_text()
            if re.search(rf"^Uid:\s+{uid}\s", text, re.M):
                match = re.search(r"^Threads:\s+(\d+)", text, re.M)
                count += int(match.group(1)) if match else 1
    return count


# ---- namespaces: bubblewrap or unshare -------------------------------------------------------

@dataclass(frozen=True)
class Tool:
    works: bool
    detail: str  # the version when it works, else why not


def _try(argv: list[str], name: str | None = None) -> Tool:
    """Whether `argv` runs and succeeds here; `name` says what it tries (the program's
    own name, and its version, when not given)."""
    if name is None and shutil.which(argv[0]) is None:
        return Tool(False, f"{argv[0]} is not installed")
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Tool(False, f"{name or argv[0]} failed to run: {exc}")
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return Tool(False, f"{name or argv[0]} does not work here: {why}")
    return Tool(True, name or _version(argv[0]))


def _version(name: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([name, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout.strip().splitlines() or [name])[0]
    return name


@functools.cache
def bwrap() -> Tool:
    """Whether bubblewrap works here, tried with every option a real run uses (container
    runtimes often forbid the namespaces it needs); cached for the process."""
    with tempfile.TemporaryDirectory(prefix="gitevo-probe-") as tmp:
        return _try(_bwrap_argv(Path(tmp), [Path(tmp)], network=False) + ["true"])


@functools.cache
def unshare() -> Tool:
    """Whether a process may make itself a user and a network namespace here (as `unshare
    -rn` does; the launcher's children do it themselves, gitevo.execution.netns);
    tried the way they do it, cached."""
    return _try([sys.executable, "-I", "-S", "-c", NETNS_PROBE],
                "unprivileged user namespaces")


def mode(settings: Sandbox) -> tuple[str, str]:
    """The isolation a run gets ("bwrap", "unshare" or "none") and why that one."""
    if settings.isolation == "none":
        return "none", 'isolation = "none" in gitevo.toml'
    if settings.isolation in ("auto", "bwrap"):
        tool = bwrap()
        if tool.works:
            return "bwrap", tool.detail
        if settings.isolation == "bwrap":
            raise SandboxUnavailable(f'sandbox.isolation: "bwrap" asked for, but {tool.detail}')
    tool = unshare()
    if tool.works:
        return "unshare", f"{tool.detail}; a network namespace only"
    if settings.isolation == "unshare":
        raise SandboxUnavailable(f'sandbox.isolation: "unshare" asked for, but {tool.detail}')
    return "none", f"{bwrap().detail}; {tool.detail}"


# Where credentials live in a home directory: hidden from candidates under bubblewrap
# (an empty directory, or an empty file, in their place), since the rest of the
# filesystem stays readable for the interpreter, the libraries and the data.
CREDENTIALS = (".ssh", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".netrc",
               ".git-credentials", ".config/gh", ".config/git/credentials", ".pypirc",
               ".anthropic", ".config/anthropic", ".config/openai", ".huggingface",
               ".cache/huggingface/token", ".config/hub", ".gnupg", ".password-store")


def _hidden(workdir: Path, home: str | None) -> tuple[list[str], list[str]]:
    """bwrap options that hide credential files and the repository's .git (its config
    may hold tokens in remote URLs; its objects hold every other individual's code):
    empty tmpfs mounts (made read-only once the worktree is bound inside .git's) and
    /dev/null over single files. Returns (mounts, remounts)."""
    mounts: list[str] = []
    empty: list[str] = []
    git_dir = next((Path(*workdir.parts[:i + 1]) for i, part in enumerate(workdir.parts)
                    if part == ".git"), None)
    if git_dir is not None and git_dir.is_dir():
        empty.append(str(git_dir))
    for name in CREDENTIALS if home else ():
        # a linked dotfile (~/.ssh -> ~/dotfiles/ssh) is hidden where it really is: bwrap
        # cannot mount over the link itself, and the link then leads to the empty target
        path = (Path(home) / name).resolve()
        if path.is_dir():
            empty.append(str(path))
        elif path.exists():
            mounts += ["--dev-bind", "/dev/null", str(path)]  # reads as empty
    for path in empty:
        mounts += ["--tmpfs", path]
    return mounts, [arg for path in empty for arg in ("--remount-ro", path)]


def _bwrap_argv(workdir: Path, writable: list[Path], network: bool,
                hidden: tuple[list[str], list[str]] = ([], []),
                masked: list[Path] = ()) -> list[str]:
    """bwrap's options; `masked` folders become empty and read-only, masked files read as
    empty (after the writable binds, or a writable cache would cover them again)."""
    argv = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
    if not network:
        argv.append("--unshare-net")
    if os.geteuid() == 0:  # root keeps its capabilities in bwrap, and could remount rw
        argv += ["--cap-drop", "ALL"]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    gpus = [p for p in GPU_DEVICES if os.path.exists(p)]
    gpus += [str(p) for p in Path("/dev").glob("nvidia[0-9]*")]
    gpus += [p for p in ("/dev/dri", "/dev/nvidia-caps") if os.path.isdir(p)]
    for path in gpus:
        argv += ["--dev-bind", path, path]
    mounts, remounts = hidden
    argv += mounts
    for path in writable:
        argv += ["--bind", str(path), str(path)]
    for path in masked:
        if path.is_dir():
            argv += ["--tmpfs", str(path)]
            remounts = [*remounts, "--remount-ro", str(path)]
        else:
            argv += ["--ro-bind", "/dev/null", str(path)]
    return argv + remounts + ["--chdir", str(workdir)]


@dataclass(frozen=True)
class Isolation:
    """How a command is isolated beyond the launcher's own confinement: the line it runs
    behind (bwrap's), or a network namespace that the launcher's child enters itself."""

    prefix: list[str] = field(default_factory=list)
    netns: bool = False

    @property
    def bwrap(self) -> bool:
        return self.prefix[:1] == ["bwrap"]


def _isolation(settings: Sandbox, workdir: Path, tmp: Path, env: dict[str, str],
               cache_writable: bool = True, trusted: bool = False,
               hide: tuple[Path, ...] = ()) -> Isolation:
    kind, _ = mode(settings)
    network = settings.network == "allow"
    if kind == "bwrap":
        writable = [workdir, tmp]
        for directory in cache_dirs(env) if cache_writable else ():
            with contextlib.suppress(OSError):
                directory.mkdir(parents=True, exist_ok=True)
                writable.append(directory)
        # masked even where nothing is held out yet: with a writable cache, a candidate
        # could otherwise plant the "held-out" data that a later scorer trusts
        masked = [] if trusted else [*_existing(heldout_dirs(env)),
                                     *(p for p in hide if os.path.lexists(p))]
        return Isolation(_bwrap_argv(workdir, writable, network,
                                     _hidden(workdir, env.get("HOME")), masked))
    return Isolation(netns=kind == "unshare" and not network)


def _existing(paths: list[Path]) -> list[Path]:
    """`paths` made where they are missing (bwrap can only mask a path that exists in the
    read-only root), leaving out those that cannot be."""
    made = []
    for path in paths:
        with contextlib.suppress(OSError):
            path.mkdir(parents=True, exist_ok=True)
            made.append(path)
    return made


def bwrap_active(settings: Sandbox) -> bool:
    """Whether commands run inside bubblewrap here (a PID namespace and a read-only root
    of their own, beyond what the Landlock floor gives)."""
    try:
        return mode(settings)[0] == "bwrap"
    except SandboxUnavailable:
        return False


def heldout_hidden(settings: Sandbox) -> bool:
    """Whether the candidates' commands cannot read the held-out cache on this machine:
    bubblewrap shows it empty, the Landlock floor leaves it out of reach."""
    try:
        kind = mode(settings)[0]
    except SandboxUnavailable:
        return False
    return kind == "bwrap" or (settings.landlock and floor.kernel_abi() >= 1)


# ---- the run --------------------------------------------------------------------------------

def run_confined(command: str, *, workdir: Path, tmp: Path, timeout: float, env: dict[str, str],
                 settings: Sandbox = DEFAULT, pid_dir: Path | None = None,
                 name: str = "run", cache_writable: bool = True,
                 trusted: bool = False, hide: tuple[Path, ...] = (),
                 stop: threading.Event | None = None, data: tuple[Path, ...] = ()) -> Outcome:
    """Run `command` (bash) in `workdir`, confined; kill all it started when it ends,
    after `timeout` seconds, or once `stop` is set (then its Outcome says cancelled). A
    file in `pid_dir` lets `kill_orphans` stop it if we die.
    With `cache_writable` false, the dataset cache is read-only under bubblewrap; the
    held-out cache and the `hide` paths are empty for it unless it is `trusted` (prepare
    and score). Outside bubblewrap, an untrusted command runs under the Landlock floor
    (gitevo.execution.floor), which lets it read the `data` paths."""
    isolation = _isolation(settings, workdir, tmp, env, cache_writable, trusted, hide)
    policy = None if trusted else _floor(settings, isolation, workdir, tmp, env,
                                         cache_writable, hide, data)
    prefix, policy = _stacked(isolation, policy)
    return _run([*prefix, "bash", "-c", command], None, workdir, tmp, timeout, env, settings,
                pid_dir, name, stop, policy, isolation.netns)


def import_confined(modules: list[str], *, workdir: Path, tmp: Path, timeout: float,
                    env: dict[str, str], settings: Sandbox = DEFAULT,
                    pid_dir: Path | None = None, name: str = "run",
                    cache_writable: bool = True, hide: tuple[Path, ...] = (),
                    data: tuple[Path, ...] = ()) -> Outcome:
    """Import the gene files `modules` (paths in `workdir`), confined like run_confined:
    a fork of the launcher does it, except inside bubblewrap: a new Python there."""
    isolation = _isolation(settings, workdir, tmp, env, cache_writable, hide=hide)
    policy = _floor(settings, isolation, workdir, tmp, env, cache_writable, hide, data)
    if isolation.bwrap:
        prefix, _ = _stacked(isolation, policy)
        argv = [*prefix, sys.executable, "-P", str(launcher.SERVER), "import", *modules]
        return _run(argv, None, workdir, tmp, timeout, env, settings, pid_dir, name)
    return _run(None, modules, workdir, tmp, timeout, env, settings, pid_dir, name,
                policy=policy, netns=isolation.netns)


def _floor(settings: Sandbox, isolation: Isolation, workdir: Path, tmp: Path,
           env: dict[str, str], cache_writable: bool, hide: tuple[Path, ...],
           data: tuple[Path, ...]) -> dict | None:
    """The Landlock policy of an untrusted command run with `isolation`; None where
    Landlock is off or the kernel lacks it."""
    if not settings.landlock:
        return None
    return _evaluation_floor(workdir, tmp, tuple(sorted(env.items())), cache_writable, hide,
                             data, settings.network == "allow", isolation.bwrap)


@functools.lru_cache(maxsize=32)
def _evaluation_floor(workdir: Path, tmp: Path, env: tuple[tuple[str, str], ...],
                      cache_writable: bool, hide: tuple[Path, ...], data: tuple[Path, ...],
                      network: bool, masked: bool) -> dict | None:
    """The policy, worked out once per evaluation (its commands share their private temp
    dir `tmp`, which no other evaluation has): the listings it carves cannot change in
    between, since no rule grants a candidate a carved folder itself."""
    values = dict(env)
    found = floor.policy(workdir=workdir, tmp=tmp, env=values, cache=cache_dirs(values),
                         cache_writable=cache_writable,
                         hidden=[*heldout_dirs(values), *hide], data=data,
                         network=network, masked=masked)
    return found.as_request() if found else None


def _stacked(isolation: Isolation, policy: dict | None) -> tuple[list[str], dict | None]:
    """Where the floor is applied: under bubblewrap by a program that bwrap starts (bwrap
    could not set up its mounts under Landlock), a second layer inside the namespaces;
    elsewhere by the launcher's child before it execs. The prefix to run the command
    behind, and the policy left for the launcher."""
    if policy is None or not isolation.bwrap:
        return isolation.prefix, policy
    return [*isolation.prefix, *_confiner(policy)], None


def _confiner(policy: dict) -> list[str]:
    """The program that bwrap starts to bind itself to `policy`, then exec the command."""
    if floor_program().works:
        return [_perl(), str(LANDLOCK_PERL), *landlock.perl_options(policy)]
    return [sys.executable, "-I", "-S", "-c", LANDLOCK_PROGRAM, *landlock.options(policy)]


@functools.cache
def floor_program() -> Tool:
    """Whether Perl applies the floor inside bubblewrap here (else a Python does, ten
    milliseconds slower per command): tried inside bubblewrap, on a policy that lets it
    read the system alone; cached."""
    perl = _perl()
    if perl is None:
        return Tool(False, "perl is not installed")
    policy = {"abi": floor.kernel_abi(), "read": list(floor.SYSTEM), "write": [],
              "existing": [], "deny_tcp": True, "scope": True}
    with tempfile.TemporaryDirectory(prefix="gitevo-probe-") as tmp:
        return _try([*_bwrap_argv(Path(tmp), [Path(tmp)], network=False), perl,
                     str(LANDLOCK_PERL), *landlock.perl_options(policy), "true"],
                    " ".join(["perl", *re.findall(r"v\d+\.\d+\.\d+", _version(perl))[:1]]))


@functools.cache  # found once: every command inside bubblewrap starts it
def _perl() -> str | None:
    return shutil.which("perl")


def _run(argv: list[str] | None, modules: list[str] | None, workdir: Path, tmp: Path,
         timeout: float, env: dict[str, str], settings: Sandbox, pid_dir: Path | None,
         name: str, stop: threading.Event | None = None, policy: dict | None = None,
         netns: bool = False) -> Outcome:
    token = uuid.uuid4().hex
    env = {**env, "GITEVO_JOB": token}
    log = tmp / f"log-{uuid.uuid4().hex[:8]}.txt"
    if argv is not None:  # found once, not by an execve per PATH entry in every child
        argv = [_which(argv[0], env.get("PATH", "")), *argv[1:]]
    server = launcher.shared(_server_env)
    groups = cgroups.pool()
    group = groups.take(settings.processes)  # from here on it goes back, whatever happens
    try:
        child = server.start(cwd=workdir, env=env, log=log, limits=_rlimits(settings, timeout),
                             cgroup=group.procs if group else None, argv=argv,
                             modules=modules, landlock=policy, netns=netns)
    except launcher.LauncherError as exc:
        if group is not None:
            groups.give_back(group)
        return Outcome(127, False, f"gitevo could not start the command: {exc}")
    pid_file = None
    timed_out = lost = cancelled = False
    try:
        pid_file = _record_pid(pid_dir, f"{name}.{child.pid}", f"{child.pid} {token}\n")
        cancelled = not _wait(child, timeout, stop)
    except subprocess.TimeoutExpired:
        timed_out = True
    except launcher.LauncherError:
        lost = True  # its exit status went with the launcher; the group dies below
    finally:
        kill_group(child.pid)
        returncode = -signal.SIGKILL if lost else _final_status(child)
        hits = groups.give_back(group) if group is not None else []
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    if lost:
        hits.insert(0, "gitevo's launcher was killed while the command ran")
    if cancelled:
        hits.insert(0, "stopped by gitevo: its result was no longer needed")
    return Outcome(returncode, timed_out, _tail(log), hits, cancelled)


def _wait(child: launcher.Child, timeout: float, stop: threading.Event | None) -> bool:
    """Wait for `child` to end (True) or for `stop` (False); TimeoutExpired past
    `timeout` seconds."""
    if stop is None:
        child.wait(timeout)
        return True
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(f"pid {child.pid}", timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(min(left, STOP_POLL))
            return True
    return False


def _server_env() -> dict[str, str]:
    """The launcher's own environment: an allowlist too, since its forks inherit it."""
    return sandbox_env(Path(tempfile.gettempdir()))


@functools.lru_cache(maxsize=64)
def _which(name: str, path: str) -> str:
    return shutil.which(name, path=path) or name


def _final_status(child: launcher.Child) -> int:
    try:
        return child.wait()
    except launcher.LauncherError:
        return -signal.SIGKILL  # the launcher died while we killed the command


def _rlimits(settings: Sandbox, timeout: float) -> list[tuple[str, int]]:
    """The rlimits each command starts under (soft = hard, as bash's `ulimit` sets them)."""
    limits = [("RLIMIT_CPU", cpu_limit(timeout))]
    memory = memory_limit(settings)
    if memory:
        limits.append(("RLIMIT_AS", memory))
    if settings.file_size:
        limits.append(("RLIMIT_FSIZE", max(1024, int(settings.file_size * GB))))
    if os.geteuid() != 0:  # RLIMIT_NPROC counts all of the user's tasks and never binds root
        limits.append(("RLIMIT_NPROC", settings.processes + _user_tasks()))
    return limits


def _record_pid(pid_dir: Path | None, name: str, text: str) -> Path | None:
    if pid_dir is None:
        return None
    pid_dir.mkdir(parents=True, exist_ok=True)
    (pid_dir / name).write_text(text)
    return pid_dir / name


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def private_dir(label: str) -> tempfile.TemporaryDirectory:
    """A temp dir of this process (an evaluation's, say), named after its pid: removed as
    usual when the block ends, and by `sweep_private_dirs` once this process died without
    removing it (SIGKILL, a lost machine)."""
    return tempfile.TemporaryDirectory(prefix=f"gitevo-{os.getpid()}-{label}-")


def sweep_private_dirs() -> int:
    """Remove the private temp dirs of gitevo processes of this machine that are gone;
    returns how many."""
    removed = 0
    for path in Path(tempfile.gettempdir()).glob("gitevo-*-*"):
        if cgroups.owner_gone(path.name) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def kill_orphans(pid_dir: Path) -> int:
    """Stop sandboxed processes left running by a gitevo that was killed, and remove its
    private temp dirs; returns how many processes it stopped."""
    sweep_private_dirs()
    killed = 0
    for path in pid_dir.glob("*.*") if pid_dir.is_dir() else ():
        try:
            pid, token = path.read_text().split()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except (OSError, ValueError):
            environ = b""
            pid, token = "0", "-"
        # the token proves the pid still belongs to our job, not to a recycled pid
        if f"GITEVO_JOB={token}".encode() in environ.split(b"\0"):
            kill_group(int(pid))
            killed += 1
        path.unlink(missing_ok=True)
    cgroups.sweep()
    return killed


def _tail(log: Path) -> str:
    data = log.read_bytes()
    return data[-TAIL_CHARS:].decode("utf-8", errors="replace")
