"""The sandbox, attacked for real: each hostile candidate runs through evaluate() (or the CLI)
as a subprocess, and must end as invalid, timeout or crashed with a clear reason."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gitevo.config import ConfigError, Sandbox, parse
from gitevo.execution import cgroups, sandbox
from gitevo.execution.evaluate import evaluate
from gitevo.execution.job import Job
from tests.conftest import cli, git, stopped


def _job(workdir: Path, command: str, timeout: float = 20, **settings) -> Job:
    return Job(ident="g001-000", workdir=workdir, gene_files=("model.py",), command=command,
               check=None, timeout=timeout, fidelity="smoke", variables={},
               objectives=("accuracy",), sandbox=Sandbox(**settings))


def _python(code: str) -> str:
    """A fitness command running `code`, which may write {'accuracy': ...} to argv[1]."""
    return f"python -c {shlex.quote(code)} {{metrics}}"


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository-shaped tree; the worktree lives under .git like gitevo's exports."""
    root = tmp_path / "repo"
    (root / ".git" / "refs" / "heads").mkdir(parents=True)
    (root / "gitevo.toml").write_text("# the fitness code lives beside the worktree\n")
    work = root / ".git" / "gitevo" / "worktrees" / "g001-000"
    work.mkdir(parents=True)
    (work / "model.py").write_text("VALUE = 1\n")
    return root


@pytest.fixture
def workdir(repo) -> Path:
    return repo / ".git" / "gitevo" / "worktrees" / "g001-000"


def _need(isolation: str) -> None:
    """Skip, with the reason doctor gives, where this platform lacks the tool."""
    tool = sandbox.bwrap() if isolation == "bwrap" else sandbox.unshare()
    if not tool.works:
        pytest.skip(tool.detail)


def _heartbeat(path: Path) -> str:
    """Python for a grandchild that keeps writing the time into `path` until killed."""
    return (f"import os, time\nif os.fork() == 0:\n    os.setsid()\n    while True:\n"
            f"        open({str(path)!r}, 'w').write(str(time.time())); time.sleep(0.05)\n")


class _Server:
    """A TCP server on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.mark.parametrize("isolation", ["bwrap", "unshare"])
def test_network_is_unreachable(workdir, isolation):
    _need(isolation)
    server = _Server()
    code = (f"import json, socket, sys\nsocket.create_connection(('127.0.0.1', {server.port}), "
            "timeout=5)\njson.dump({'accuracy': 1}, open(sys.argv[1], 'w'))")
    result = evaluate(_job(workdir, _python(code), isolation=isolation))
    assert result.status == "crashed" and server.accepted == 0
    # refused by the network namespace, or first by Landlock's TCP rule (Permission denied)
    assert any(why in result.error for why in ("Connection refused", "unreachable",
                                               "Permission denied")), result.error
    # the same candidate with the network allowed reaches the server: the test can fail
    allowed = evaluate(_job(workdir, _python(code), isolation=isolation, network="allow"))
    assert allowed.ok and server.accepted == 1
    server.sock.close()


@pytest.mark.parametrize("isolation", ["bwrap", "unshare"])
def test_the_import_check_has_no_network_either(workdir, isolation):
    """The gene file's import check runs apart from the fitness command (a fork of the
    launcher under unshare, a new Python inside bubblewrap): isolated the same way."""
    _need(isolation)
    server = _Server()
    (workdir / "model.py").write_text(
        f"import socket\nsocket.create_connection(('127.0.0.1', {server.port}), timeout=5)\n")
    fitness = _python("import json, sys\njson.dump({'accuracy': 1}, open(sys.argv[1], 'w'))")
    result = evaluate(_job(workdir, fitness, isolation=isolation, landlock=False))
    assert not result.ok and server.accepted == 0
    assert any(why in result.error for why in ("Connection refused", "unreachable")), \
        result.error
    allowed = evaluate(_job(workdir, fitness, isolation=isolation, network="allow"))
    assert allowed.ok and server.accepted == 1, allowed.error
    server.sock.close()


@pytest.mark.parametrize("target", [".git/refs/heads/evil", "gitevo.toml", "outside.txt"])
def test_only_the_worktree_is_writable(repo, workdir, target):
    _need("bwrap")
    victim = repo / target
    before = victim.read_text() if victim.exists() else None
    code = f"open({str(victim)!r}, 'w').write('tampered')"
    result = evaluate(_job(workdir, _python(code)))
    # .git is not even there for the candidate (an empty, read-only tmpfs in its place)
    reason = "No such file or directory" if target.startswith(".git") else \
        "Read-only file system"
    assert result.status == "crashed" and reason in result.error, result.error
    assert (victim.read_text() if victim.exists() else None) == before
    # the worktree, the private temp dir and the dataset cache stay writable, and data
    # outside the repository that a [fitness.vars] key names stays readable (the
    # Landlock floor inside bubblewrap refuses what no key names)
    data = repo.parent / "data.bin"
    data.write_bytes(b"pixels")
    code = ("import json, os, sys, tempfile\nopen('out.txt', 'w').write('x')\n"
            "tempfile.NamedTemporaryFile().write(b'x')\n"
            "cache = os.path.expanduser('~/.cache/gitevo')\nos.makedirs(cache, exist_ok=True)\n"
            "open(os.path.join(cache, 'probe'), 'w').write('x')\n"
            f"json.dump({{'accuracy': len(open({str(data)!r}, 'rb').read())}}, "
            "open(sys.argv[1], 'w'))")
    result = evaluate(dataclasses.replace(_job(workdir, _python(code)),
                                          variables={"data": str(data)}))
    assert result.ok and result.objectives == {"accuracy": 6.0}, result.error


def test_credentials_and_the_git_directory_are_hidden(repo, workdir, tmp_path, monkeypatch):
    _need("bwrap")
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("aws_secret_access_key = hunter2\n")
    (home / ".netrc").write_text("machine example.com password hunter2\n")
    # dotfiles kept elsewhere and linked in, a directory and a file
    dotfiles = tmp_path / "dotfiles"
    (dotfiles / "ssh").mkdir(parents=True)
    (dotfiles / "ssh" / "id_rsa").write_text("hunter2\n")
    (dotfiles / "git-credentials").write_text("https://user:hunter2@example.com\n")
    (home / ".ssh").symlink_to(dotfiles / "ssh")
    (home / ".git-credentials").symlink_to(dotfiles / "git-credentials")
    (repo / ".git" / "config").write_text('[remote "origin"]\n'
                                          '  url = https://user:hunter2@example.com/r.git\n')
    monkeypatch.setenv("HOME", str(home))
    code = ("import json, os, sys\nfound = []\n"
            f"for top in ('~', '~/.ssh', {str(repo / '.git')!r}):\n"
            "    for folder, _, names in os.walk(os.path.expanduser(top)):\n"
            "        for name in names:\n"
            "            path = os.path.join(folder, name)\n"
            "            if 'hunter2' in open(path, errors='ignore').read():\n"
            "                found.append(path)\n"
            "json.dump({'accuracy': len(found)}, open(sys.argv[1], 'w'))\n"
            "print(found)")
    result = evaluate(_job(workdir, _python(code)))
    assert result.ok and result.objectives == {"accuracy": 0.0}, result.error
    # unconfined (neither bubblewrap nor Landlock), the same candidate finds all five: the
    # test can fail
    exposed = evaluate(_job(workdir, _python(code), isolation="none", landlock=False))
    assert exposed.objectives == {"accuracy": 5.0}, exposed.error


# "none": the fork server folds the limits into the command's own bash; "auto": a bash
# that sets them execs bubblewrap
@pytest.mark.parametrize("isolation", ["auto", "none"])
def test_a_file_over_the_size_limit_is_an_error(workdir, isolation):
    code = "open('big', 'wb').write(b'x' * 4_000_000)"
    result = evaluate(_job(workdir, _python(code), file_size=0.001, isolation=isolation))
    assert result.status == "crashed" and "File too large" in result.error
    assert (workdir / "big").stat().st_size <= 0.001 * sandbox.GB


def test_unbounded_allocation_is_a_memory_error(workdir):
    # capped at 2 GB, so that a broken limit fails the test rather than the machine
    code = "chunks = []\nfor _ in range(8):\n    chunks.append(bytearray(256 * 1024 ** 2))"
    start = time.monotonic()
    result = evaluate(_job(workdir, _python(code), memory=1))
    assert result.status == "crashed" and "MemoryError" in result.error
    assert time.monotonic() - start < 15


@pytest.mark.parametrize("isolation", ["auto", "none"])
def test_a_fork_bomb_is_bounded_and_the_run_goes_on(workdir, isolation):
    base, why = cgroups.pids_cgroup()
    if base is None and os.geteuid() == 0:
        pytest.skip(f"no process bound here: {why}, and RLIMIT_NPROC does not bind root")
    beat = workdir / "beat"
    # capped at 200, so that a broken bound fails the test rather than the machine
    code = ("import os, sys, time\nforks = 0\ntry:\n    while forks < 200:\n"
            "        if os.fork() == 0:\n            while True:\n"
            f"                open({str(beat)!r}, 'w').write(str(time.time())); "
            "time.sleep(0.05)\n        forks += 1\nexcept OSError as exc:\n"
            "    sys.exit(f'forks refused after {forks}: {exc}')")
    result = evaluate(_job(workdir, _python(code), processes=32, isolation=isolation))
    assert result.status == "crashed" and "forks refused after" in result.error
    forks = int(result.error.split("forks refused after ")[1].split(":")[0])
    assert forks < 32 and stopped(beat)
    if base is not None:
        assert "process limit 32 reached" in result.error
        for group in base.glob(f"gitevo-{os.getpid()}-*"):  # pooled again, and empty
            assert not (group / "cgroup.procs").read_text().split()
    again = evaluate(_job(workdir, _python(
        "import json, sys\njson.dump({'accuracy': 1}, open(sys.argv[1], 'w'))")))
    # the pooled group's earlier refusals are not blamed on the next command
    assert again.ok and not again.error


def test_pooled_cgroups_are_removed_when_gitevo_exits(tmp_path):
    base, why = cgroups.pids_cgroup()
    if base is None:
        pytest.skip(f"no pids cgroups here: {why}")
    code = ("import os, sys\nfrom pathlib import Path\nfrom gitevo.execution import sandbox\n"
            "from gitevo.config import Sandbox\n"
            "for _ in range(2):\n"
            "    out = sandbox.run_confined('true', workdir=Path(sys.argv[1]), "
            "tmp=Path(sys.argv[1]), timeout=30, env=sandbox.sandbox_env(Path(sys.argv[1])), "
            "settings=Sandbox(isolation='none'))\n"
            "    assert out.returncode == 0, out\n"
            "print(os.getpid(), len(list(Path(sys.argv[2]).glob(f'gitevo-{os.getpid()}-*'))))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(base)],
                         capture_output=True, text=True, check=True)
    pid, used = out.stdout.split()
    assert used == "1"  # two commands one after the other shared one group
    assert not list(base.glob(f"gitevo-{pid}-*"))  # and it went with the process


def test_an_infinite_loop_times_out_and_its_whole_group_dies(workdir):
    beat = workdir / "beat"
    code = _heartbeat(beat) + "while True:\n    pass\n"
    start = time.monotonic()
    result = evaluate(_job(workdir, _python(code), timeout=1.5))
    assert result.status == "timeout" and "exceeded 1.5s" in result.error
    assert time.monotonic() - start < 10
    assert stopped(beat)  # even the grandchild that left the process group with setsid


@pytest.mark.parametrize("isolation", ["auto", "none"])
def test_limits_are_set_in_the_child(workdir, isolation):
    code = ("import json, resource, sys\nget = resource.getrlimit\n"
            "json.dump({'accuracy': 0, 'as': get(resource.RLIMIT_AS), "
            "'cpu': get(resource.RLIMIT_CPU), 'fsize': get(resource.RLIMIT_FSIZE)}, "
            "open(sys.argv[1], 'w'))")
    result = evaluate(_job(workdir, _python(code), timeout=10, memory=3, file_size=2,
                           isolation=isolation))
    assert result.ok, result.error
    # soft = hard: the command cannot raise them
    assert result.metrics["as"] == [3 * sandbox.GB] * 2
    assert result.metrics["fsize"] == [2 * sandbox.GB] * 2
    assert result.metrics["cpu"] == [sandbox.cpu_limit(10)] * 2
    unlimited = evaluate(_job(workdir, _python(code), timeout=10, memory=0, file_size=0,
                              isolation=isolation))
    assert unlimited.metrics["as"] == unlimited.metrics["fsize"] == [-1, -1]  # RLIM_INFINITY


@pytest.mark.parametrize("isolation", ["auto", "none"])
def test_a_bash_env_file_runs_inside_the_limits(workdir, tmp_path, monkeypatch, isolation):
    # bash sources $BASH_ENV before its command: it must not run before the limits are set
    seen = workdir / "seen"  # the worktree: writable under bubblewrap too
    script = workdir / "bash_env.sh"  # where Landlock lets the command read it
    script.write_text(f"ulimit -H -v >> {seen}\n")
    monkeypatch.setenv("BASH_ENV", str(script))
    job = dataclasses.replace(_job(workdir, _python(
        "import json, sys\njson.dump({'accuracy': 1}, open(sys.argv[1], 'w'))"),
        memory=1, isolation=isolation), env_extra=("BASH_ENV",))
    result = evaluate(job)
    assert result.ok, result.error
    limit = str(sandbox.GB // 1024)
    assert seen.read_text().split()[0] == limit  # sourced once, by the command's bash


def test_shell_options_from_the_environment_run_nothing_before_the_limits(workdir,
                                                                         monkeypatch):
    # xtrace expands PS4 before each command, the first confinement line included
    seen = workdir / "seen"
    monkeypatch.setenv("SHELLOPTS", "xtrace")
    monkeypatch.setenv("PS4", f"$(ulimit -H -v >> {seen})+ ")
    job = dataclasses.replace(_job(workdir, "exit 3", memory=1, isolation="none"),
                              env_extra=("SHELLOPTS", "PS4"))
    result = evaluate(job)  # ends crashed, so that its log is in the error
    assert result.status == "crashed" and "exited 3" in result.error
    assert "ulimit" not in result.error  # no trace of the confinement lines: no xtrace
    # (bash also ignores an inherited PS4 when run as root)
    assert not seen.exists() or set(seen.read_text().split()) == {str(sandbox.GB // 1024)}


def test_an_exported_function_cannot_undo_the_limits(workdir, monkeypatch):
    monkeypatch.setenv("BASH_FUNC_ulimit%%", "() {  :; }")
    code = ("import json, resource, sys\n"
            "json.dump({'accuracy': 0, 'as': resource.getrlimit(resource.RLIMIT_AS)}, "
            "open(sys.argv[1], 'w'))")
    job = dataclasses.replace(_job(workdir, _python(code), memory=1, isolation="none"),
                              env_extra=("BASH_FUNC_ulimit%%",))
    result = evaluate(job)
    assert result.ok, result.error
    assert result.metrics["as"] == [sandbox.GB, sandbox.GB]


def test_tampering_with_git_ends_as_a_crashed_note(tmp_path):
    """End to end: a fitness command that writes a ref gets a note, not a new branch."""
    _need("bwrap")
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy", "--no-eval")
    toml = repo / "gitevo.toml"
    evil = repo / ".git" / "refs" / "heads" / "evil"
    command = f"python -c \"open('{evil}', 'w').write('0' * 40)\""
    toml.write_text(toml.read_text().replace(
        'command = "python fitness.py --metrics {metrics}"', f"command = {json.dumps(command)}"))
    git(repo, "commit", "-qam", "a fitness command that tampers")
    out = cli("-C", str(repo), "seed", expect=2)  # a seed that fails stops the command
    assert "crashed" in out
    note = json.loads(git(repo, "notes", "--ref", "gitevo/main", "show", "HEAD"))
    assert note["status"] == "crashed" and "No such file or directory" in note["error"]
    assert not evil.exists()


def test_doctor_reports_every_protection(toy):
    out = cli("-C", str(toy), "doctor")
    assert str(toy / "gitevo.toml") in out
    for name in ("environment allowlist", "private temp dir", "process-group kill",
                 "address space", "CPU time", "file size", "process bound",
                 "network isolation", "read-only repository", "hidden .git, credentials",
                 "PID namespace", "held-out data hidden"):
        line = next(line for line in out.splitlines() if line.strip().startswith(name))
        assert " active " in line or " INACTIVE " in line, line
    assert "bwrap" in out and "kernel" in out
    network = next(line for line in out.splitlines() if "network isolation" in line)
    if sandbox.bwrap().works or sandbox.unshare().works:
        assert " active " in network, network
    hidden = next(line for line in out.splitlines() if "hidden .git" in line)
    assert (" active " in hidden) == sandbox.bwrap().works, hidden
    heldout = next(line for line in out.splitlines() if "held-out data hidden" in line)
    assert (" active " in heldout) == sandbox.bwrap().works, heldout


def test_doctor_exits_2_on_a_broken_sandbox_section(toy):
    toml = toy / "gitevo.toml"
    toml.write_text(toml.read_text() + '\n[sandbox]\nnetwork = "sometimes"\n')
    out = cli("-C", str(toy), "doctor", expect=2)
    assert "sandbox.network: must be \"deny\" or \"allow\", got 'sometimes'" in out


@pytest.mark.parametrize(("text", "problem"), [
    ('memory = -1', "sandbox.memory: must be \"auto\" or GB >= 0"),
    ('isolation = "docker"', "sandbox.isolation: must be one of auto, bwrap, unshare, none"),
    ('processes = 2', "sandbox.processes: must be >= 8"),
    ('file_size = "big"', "sandbox.file_size: expected an integer or a number"),
    ('cpu = 3', "sandbox.cpu: unknown key"),
])
def test_sandbox_config_errors_name_the_key(text, problem):
    base = '[genes]\nfiles = ["m.py"]\n[fitness]\ncommand = "x"\n[objectives]\na = "max"\n'
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")) as info:
        parse(base + "[sandbox]\n" + text + "\n", "g.toml")
    assert str(info.value).startswith("g.toml: ") and "\n" not in str(info.value)
    config = parse(base + '[sandbox]\nnetwork = "allow"\nmemory = 2\n', "g.toml")
    assert config.sandbox == Sandbox(network="allow", memory=2.0)


def test_private_dirs_of_dead_processes_are_swept_and_live_ones_kept():
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    assert not Path(f"/proc/{dead_pid}").exists()
    base = Path(tempfile.gettempdir())
    dead = base / f"gitevo-{dead_pid}-g001-000-left"
    (dead / "log").mkdir(parents=True)
    other = base / f"gitevo-g001-000-{dead_pid}"  # not named after a pid: not ours to judge
    other.mkdir()
    try:
        with sandbox.private_dir("g001-001") as mine:
            assert Path(mine).name.startswith(f"gitevo-{os.getpid()}-g001-001-")
            assert sandbox.sweep_private_dirs() >= 1
            assert Path(mine).is_dir() and not dead.exists() and other.is_dir()
    finally:
        other.rmdir()
