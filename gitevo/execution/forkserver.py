"""The launcher's server: a Python that starts the sandboxed commands (one thread, and for
a moment a second one that a command under the Landlock floor is spawned from).

Run as a script (`python -E -P forkserver.py`), so it needs nothing of gitevo and holds
none of gitevo's secrets: gitevo starts it with a scrubbed environment, and a child
that reads /proc/self/environ finds that one.

Requests arrive on stdin, one JSON object per line; replies go to stdout, one per line:
    {"id": 1, "pid": 4242}          the child exists (or {"id": 1, "error": "..."})
    {"id": 1, "status": 0}          it ended: its exit code, or -N for signal N
Every child joins its pids cgroup, starts a session, sets its rlimits (soft = hard, as
bash's `ulimit` does) and sends its output to the log before anything of the command
runs. `argv` is spawned (vfork and exec: no copy of this process's pages) as a bash
whose first lines do all that: a `bash -c COMMAND` takes them in front of COMMAND,
anything else (a bwrap line) is exec'd by them. With `modules` instead, or `netns` (a
user and network namespace of its own, as `unshare -rn` makes), the child is a fork of
this server that does it all itself in Python, then imports those files (an import
check that costs a fork rather than a new interpreter) or execs. When stdin closes
(gitevo ended, even by SIGKILL), or the server gets SIGTERM or SIGHUP, every child's
process group is killed and the server exits.
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import gc
import importlib.util  # loaded once here, not in every import-check child
import json
import os
import resource
import selectors
import shlex
import shutil
import signal
import sys
import traceback


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches gitevo, which closes stdin
    global _LANDLOCK, _NETNS
    _LANDLOCK, _NETNS = _load("landlock"), _load("netns")
    _LANDLOCK.abi()  # loads libc here, once, rather than in every child
    _NETNS.load()
    gc.freeze()  # what is loaded by now stays out of collections, in children too
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select below
    children: dict[int, dict] = {}  # pid -> its request
    for number in (signal.SIGTERM, signal.SIGHUP):  # killed politely: take the commands too
        signal.signal(number, lambda *_: (_kill_all(children), os._exit(0)))
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fd == wake_r:
                _drain(wake_r)
                continue
            data = os.read(0, 1 << 16)
            if not data:
                _kill_all(children)
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                _spawn(json.loads(line), children)
        _reap(children)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _send(message: dict) -> None:
    os.write(1, json.dumps(message).encode() + b"\n")


def _spawn(request: dict, children: dict[int, dict]) -> None:
    policy, netns, argv = request.get("landlock"), request.get("netns"), request.get("argv")
    ruleset = None
    try:
        if argv and not netns:
            pid = _spawn_floored(request) if policy else _spawn_argv(request)
        else:
            # the child sets itself up in Python between fork and exec: it enters its
            # namespaces, or it is an import check. Its ruleset is built here, once per
            # policy (an evaluation's commands share one): the child only enforces it
            ruleset = _kept_ruleset(policy) if policy else None
            pid = os.fork()
    except OSError as exc:
        _send({"id": request["id"], "error": f"cannot start {_what(request)}: {exc}"})
        return
    if pid == 0:
        gc.disable()  # a collection here would write to every page the parent shares
        request["ruleset"] = ruleset
        if argv:
            _exec_confined(request)  # does not return
        _child(request)  # does not return
    children[pid] = {"id": request["id"], "cgroup": request.get("cgroup")}
    _send({"id": request["id"], "pid": pid})


def _what(request: dict) -> str:
    if request.get("argv"):
        return f"{request['argv'][0]} (or open its log {request['log']})"
    return "the import check"


# flag and unit of each rlimit for bash's ulimit (bash counts -v and -f in KiB)
_ULIMIT = {"RLIMIT_CPU": ("-t", 1), "RLIMIT_AS": ("-v", 1024), "RLIMIT_FSIZE": ("-f", 1024),
           "RLIMIT_NPROC": ("-u", 1)}
# what bash acts on before its first line: a file to source (BASH_ENV), a prompt that
# xtrace expands (PS4), POSIX mode, where ulimit -f counts 512-byte blocks; exported
# once the confinement lines have run. Shell options from the environment (xtrace
# expanding PS4 before the first line) are not passed on at all
_DEFERRED = ("BASH_ENV", "PS4", "POSIXLY_CORRECT")
_DROPPED = ("SHELLOPTS", "BASHOPTS")
# reset in the child: an ignored signal stays ignored across exec, and Python ignores
# SIGPIPE and SIGXFSZ, this server SIGINT (the ones it handles, exec resets by itself)
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT)


def _spawn_floored(request: dict) -> int:
    """Spawn `argv` as _spawn_argv does, from a short-lived thread that binds itself to the
    floor first: the child inherits the thread's Landlock domain, so this server need not
    fork, and one ruleset, kept per policy, serves every command of an evaluation. Under
    the floor bash could not write the cgroup's file, so it waits at its first line
    while this server puts it in the cgroup."""
    ruleset = _kept_ruleset(request["landlock"])
    go = os.pipe() if request.get("cgroup") else None
    found: dict = {}
    done = _thread.allocate_lock()  # a bare thread: threading's costs twice the time
    done.acquire()

    def start() -> None:
        try:
            _LANDLOCK.enforce(ruleset)
            found["pid"] = _spawn_argv(request, go[0] if go else None)
        except BaseException as exc:  # noqa: BLE001 - raised again below, in this thread
            found["error"] = exc
        finally:
            done.release()

    _thread.start_new_thread(start, ())
    done.acquire()  # the thread ends bound; this one never is
    if go:
        os.close(go[0])
    if "error" in found:
        if go:
            os.close(go[1])
        error = found["error"]
        raise error if isinstance(error, OSError) else OSError(f"{type(error).__name__}: {error}")
    if go:
        try:
            with open(request["cgroup"], "w") as procs:
                procs.write(str(found["pid"]))
            os.write(go[1], b"go\n")
        except OSError:
            pass  # bash reads no "go", says it cannot join, and exits 125
        finally:
            os.close(go[1])
    return found["pid"]


_RULESETS: dict[tuple, int] = {}  # policy -> its ruleset
_KEPT = 8  # an evaluation's commands share one; a few evaluations run at once


def _kept_ruleset(policy: dict) -> int:
    key = (policy["abi"], policy["deny_tcp"], policy["scope"], *policy["read"], "",
           *policy["write"], "", *policy["existing"])
    if key not in _RULESETS:
        if len(_RULESETS) >= _KEPT:
            os.close(_RULESETS.pop(next(iter(_RULESETS))))
        _RULESETS[key] = _ruleset(policy)
    return _RULESETS[key]


def _spawn_argv(request: dict, go: int | None = None) -> int:
    """Spawn `argv` confined: its own session, the log as stdout and stderr, no stdin;
    with `go`, bash waits to read "go" on fd 3 before its cgroup counts as joined."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    env = _command_env(request)
    later = {k: env.pop(k) for k in _DEFERRED if k in env}
    argv = _confined_argv(request, later, waits=go is not None)
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, request["log"], flags, 0o600),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    if go is not None:
        actions.append((os.POSIX_SPAWN_DUP2, go, 3))
    return os.posix_spawn(argv[0], argv, env, setsid=True, setsigmask=(),
                          setsigdef=_DEFAULT_SIGNALS, file_actions=actions)


def _confined_argv(request: dict, later: dict[str, str], waits: bool = False) -> list[str]:
    """bash, whose first lines confine it: the cgroup (a failure ends it with 125, as a
    fork that cannot join does), the limits (each where the hard limit in place allows,
    as setrlimit here did), the folder; then the command. `later` are the variables
    bash would act on before all of them (see _DEFERRED): exported after them instead,
    and a BASH_ENV file sourced there."""
    lines = []
    if request.get("cgroup"):
        procs = shlex.quote(request["cgroup"])
        join = '{ read -r go <&3 && [ "$go" = go ]; }' if waits else f"echo $$ > {procs}"
        lines.append(f"{join} || {{ echo gitevo-sandbox: cannot join {procs} >&2; exit 125; }}")
    if waits:
        lines.append("exec 3<&-")  # the command does not inherit the server's pipe
    for name, value in request["limits"]:
        flag, unit = _ULIMIT[name]
        _, hard = resource.getrlimit(getattr(resource, name))
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        lines.append(f"ulimit -HS {flag} {max(1, value // unit)} 2>/dev/null")
    lines.append(f"cd -- {shlex.quote(request['cwd'])} || exit 127")
    lines += [f"export {name}={shlex.quote(value)}" for name, value in later.items()]
    argv = request["argv"]
    if len(argv) == 3 and os.path.basename(argv[0]) == "bash" and argv[1] == "-c":
        if "BASH_ENV" in later:  # an exec'd bash (bwrap's) sources it itself
            lines.append('if [ -r "$BASH_ENV" ]; then . "$BASH_ENV"; fi')
        return [argv[0], "-c", "\n".join(lines) + "\n" + argv[2]]
    return [_bash(), "-c", "\n".join([*lines, 'exec "$@"']), "gitevo-sandbox", *argv]


@functools.cache  # this server's PATH does not change
def _bash() -> str:
    return shutil.which("bash") or "/bin/bash"


def _reap(children: dict[int, dict]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        child = children.pop(pid, None)
        if child is not None:
            _send({"id": child["id"], "status": os.waitstatus_to_exitcode(status)})


def _kill_all(children: dict[int, dict]) -> None:
    """gitevo is gone: kill each command's process group, and what left it for a
    session of its own but is still counted in the command's cgroup."""
    for pid, child in children.items():
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        if child["cgroup"]:
            with contextlib.suppress(OSError), open(child["cgroup"]) as procs:
                for member in procs.read().split():
                    with contextlib.suppress(OSError, ValueError):
                        os.kill(int(member), signal.SIGKILL)


# ---- in the child -------------------------------------------------------------------------

_MAX_FD = os.sysconf("SC_OPEN_MAX")


def _command_env(request: dict) -> dict[str, str]:
    """The command's environment without what bash would act on before its first line:
    exported functions (one named `ulimit` or `cd` would undo the confinement; gitevo's
    allowlist passes them only when [fitness] env names them) and shell options."""
    return {k: v for k, v in request["env"].items()
            if not k.startswith("BASH_FUNC_") and k not in _DROPPED}


def _exec_confined(request: dict) -> None:
    """The forked child of a command (one that enters a network namespace of its own):
    confined here, then exec'd; never returns."""
    def execute() -> int:
        for number in _DEFAULT_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        os.execve(request["argv"][0], request["argv"], _command_env(request))
        return 127  # not reached: execve returns only by raising

    _run_child(request, execute)


def _child(request: dict) -> None:
    """The child of an import check: confined here, then it imports the gene files."""
    _run_child(request, lambda: _import(request["modules"], request["env"]))


def _run_child(request: dict, work) -> None:
    """Confine this forked child, then `work()`; exit with its status (125: it could not
    be confined, 127: it failed to start), never returning to the server's loop."""
    code = 127
    try:
        _confine(request)
        code = work()
    except SystemExit as exc:
        code = 125 if exc.code == 125 else 127
    except BaseException:  # noqa: BLE001 - whatever it was goes to the log
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a broken stream: nothing left to save
                stream.flush()
        os._exit(code)


def _confine(request: dict) -> None:
    signal.set_wakeup_fd(-1)  # its pipe is closed below, with everything of the server's
    for number in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    os.setsid()  # its own process group, which gitevo kills whole
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    if request.get("cgroup"):
        try:
            with open(request["cgroup"], "w") as procs:
                procs.write(str(os.getpid()))
        except OSError as exc:
            print(f"gitevo-sandbox: cannot join {request['cgroup']}: {exc}", file=sys.stderr)
            raise SystemExit(125) from None
    for name, value in request["limits"]:
        number = getattr(resource, name)
        _, hard = resource.getrlimit(number)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)  # a lower limit already in place stays
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(number, (value, value))
    os.chdir(request["cwd"])
    if request.get("netns"):
        _enter_netns()
    if request.get("ruleset") is not None:
        _enforce(request["ruleset"])
    # nothing of the server's stays open (its pipes, its kept rulesets, this child's own):
    # an import check runs the gene file in this very process, and with a ruleset in hand
    # it could add rules to it, widening the floor of the commands it binds next
    os.closerange(3, _MAX_FD)


def _ruleset(policy: dict) -> int:
    return _LANDLOCK.ruleset(policy["read"], policy["write"], existing=policy["existing"],
                             deny_tcp=policy["deny_tcp"], scope=policy["scope"],
                             version=policy["abi"])


def _enter_netns() -> None:
    """A user namespace and an empty network namespace for this child (before the floor,
    which would refuse it its /proc entries); 125 where the kernel refuses them."""
    try:
        _NETNS.enter()
    except OSError as exc:
        print(f"gitevo-sandbox: cannot isolate the network: {exc}", file=sys.stderr)
        raise SystemExit(125) from None


def _enforce(ruleset: int) -> None:
    """Bind this child, and all it will start, to the ruleset; a child that cannot be bound
    ends here (125) rather than run with less than gitevo said it would have."""
    try:
        _LANDLOCK.enforce(ruleset)
    except OSError as exc:
        print(f"gitevo-sandbox: cannot apply Landlock: {exc}", file=sys.stderr)
        raise SystemExit(125) from None


def _load(name: str):
    """One of gitevo's stand-alone modules beside this file (run as a script, with -P: no
    sys.path entry finds them)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"gitevo_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# loaded by the server (the `import` script needs neither: inside bubblewrap, the floor's
# program has bound it already)
_LANDLOCK = None  # landlock.py
_NETNS = None  # netns.py


def _import(modules: list[str], env: dict[str, str] | None = None) -> int:
    """Load each gene file by path, as the harness would; 0, or 1 with the traceback."""
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    sys.dont_write_bytecode = True
    # where the fitness command's `python` would look: the tree, then PYTHONPATH
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *extra, *sys.path]
    for path in modules:
        name = path[:-3].replace("/", ".")
        sys.modules.pop(name.split(".")[0], None)  # a gene file named like a loaded module
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - the check's answer is the traceback
            traceback.print_exc()
            return 1
    return 0


if __name__ == "__main__":
    # `forkserver.py import FILE...`: the same import check in a fresh Python, for a run
    # inside bubblewrap, where a fork of the server cannot go
    if sys.argv[1:2] == ["import"]:
        sys.exit(_import(sys.argv[2:]))
    main()
