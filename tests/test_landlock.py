"""The Landlock floor, with real processes on the real kernel: hostile candidates under
Landlock alone (no bubblewrap, as on a machine without it) reach nothing outside their
worktree and temp dir; with neither, the same candidates succeed (so each test can fail).
Tests that need Landlock skip with the reason where the kernel has none."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitevo.config import Sandbox
from gitevo.execution import floor, landlock, sandbox
from gitevo.execution.evaluate import evaluate
from gitevo.execution.job import Job
from tests.test_sandbox import _Server

needs_landlock = pytest.mark.skipif(floor.kernel_abi() < 1,
                                    reason="this kernel has no Landlock (Linux 5.13+, "
                                           "enabled in the LSM list)")


def _job(workdir: Path, code: str, *, landlock_on: bool = True, **settings) -> Job:
    command = f"python -c {shlex.quote(code)} {{metrics}}"
    # cache_writable False: a [fitness] prepare step filled the dataset cache, as the
    # ExquisiteNetV2 template's does, so candidates only read it
    return Job(ident="g001-000", workdir=workdir, gene_files=("model.py",), command=command,
               check=None, timeout=30, fidelity="smoke", variables={},
               objectives=("accuracy",), cache_writable=False,
               sandbox=Sandbox(isolation=settings.pop("isolation", "unshare"),
                               landlock=landlock_on, **settings))


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A repository-shaped tree (the worktree under .git, as gitevo exports it), a home
    with a credential, a sibling's worktree, and a dataset cache with a held-out part."""
    root = tmp_path / "repo"
    work = root / ".git" / "gitevo" / "worktrees" / "g001-000"
    work.mkdir(parents=True)
    (work / "model.py").write_text("VALUE = 1\n")
    (root / ".git" / "config").write_text("[core]\n")
    sibling = root / ".git" / "gitevo" / "worktrees" / "g001-001"
    sibling.mkdir()
    (sibling / "model.py").write_text("VALUE = 2\n")
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("secret = hunter2\n")
    cache = home / ".cache" / "gitevo"  # where a harness keeps its data (sandbox.cache_dirs)
    (cache / "heldout").mkdir(parents=True)
    (cache / "heldout" / "labels.json").write_text("[1, 2, 3]\n")
    (cache / "public").mkdir()
    (cache / "public" / "train.json").write_text("[0]\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return root


def _workdir(repo: Path) -> Path:
    return repo / ".git" / "gitevo" / "worktrees" / "g001-000"


# Each attack scores 1 when it got through, 0 when the system refused it.
def _attempt(body: str) -> str:
    return ("import json, os, sys\nscore = 1\ntry:\n"
            + "".join(f"    {line}\n" for line in body.strip().splitlines())
            + "except OSError:\n    score = 0\n"
            "json.dump({'accuracy': score}, open(sys.argv[1], 'w'))\n")


def attacks(repo: Path, port: int) -> dict[str, str]:
    cache = Path(os.environ["HOME"]) / ".cache" / "gitevo"
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    return {
        "writes into .git": f"open({str(repo / '.git' / 'config')!r}, 'a').write('x')",
        "writes into another worktree": "open({!r}, 'w').write('VALUE = 9')".format(
            str(repo / ".git" / "gitevo" / "worktrees" / "g001-001" / "model.py")),
        "writes into the Python environment":
            f"open(os.path.join({site_packages!r}, 'sitecustomize_gitevo_test.py'), 'w')"
            ".write('')",
        "writes into the dataset cache":
            f"open({str(cache / 'public' / 'train.json')!r}, 'w').write('[9]')",
        "reads a credential": "open(os.path.expanduser('~/.aws/credentials')).read()",
        "reads a held-out file": f"open({str(cache / 'heldout' / 'labels.json')!r}).read()",
        "signals the gitevo process": f"os.kill({os.getpid()}, 0)",
        "connects to a loopback port":
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)",
    }


@pytest.mark.parametrize("isolation", ["bwrap", "unshare", "none"])
def test_every_attack_is_refused_under_bubblewrap_or_landlock_alone(repo, isolation):
    """bwrap: bubblewrap's namespaces and mounts; unshare and none: the Landlock floor
    (with a network namespace, and without one)."""
    tool = {"bwrap": sandbox.bwrap, "unshare": sandbox.unshare}.get(isolation)
    if tool is not None and not tool().works:
        pytest.skip(tool().detail)
    if isolation != "bwrap" and floor.kernel_abi() < 1:
        pytest.skip("this kernel has no Landlock (Linux 5.13+, enabled in the LSM list)")
    listener = _Server()
    site_file = Path(next(p for p in sys.path if p.endswith("site-packages")),
                     "sitecustomize_gitevo_test.py")
    for name, body in attacks(repo, listener.port).items():
        result = evaluate(_job(_workdir(repo), _attempt(body), isolation=isolation))
        assert result.ok and result.objectives == {"accuracy": 0.0}, (name, result.error)
    assert listener.accepted == 0 and not site_file.exists()
    assert (repo / ".git" / "config").read_text() == "[core]\n"


# A gene file that, when imported, notes every file it holds open in the private temp dir,
# where the fitness command after it counts those it did not open itself.
LISTS_ITS_FILES = """
import os
held = []
for fd in os.listdir("/proc/self/fd"):
    try:
        held.append(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
open(os.path.join(os.environ["TMPDIR"], "held.txt"), "w").write(chr(10).join(held))
VALUE = 1
"""
COUNTS_THEM = """
import json, os, sys
held = open(os.path.join(os.environ["TMPDIR"], "held.txt")).read().split(chr(10))
foreign = [t for t in held if t.startswith(("anon_inode:", "pipe:", "socket:"))]
json.dump({"accuracy": len(foreign)}, open(sys.argv[1], "w"))
"""


@needs_landlock
@pytest.mark.parametrize("isolation", ["unshare", "none"])
def test_a_gene_file_holds_none_of_the_launchers_files(repo, isolation):
    """The import check runs the gene file inside a fork of the launcher, which keeps a
    ruleset per evaluation for the commands that follow. The kernel lets a bound process
    add rules to any ruleset it holds, so a gene file that held another evaluation's
    could widen that evaluation's floor: none of the launcher's files is open there."""
    if isolation == "unshare" and not sandbox.unshare().works:
        pytest.skip(sandbox.unshare().detail)
    sibling = repo / ".git" / "gitevo" / "worktrees" / "g001-001"
    first = evaluate(_job(sibling, _attempt("pass"), isolation=isolation))
    assert first.ok, first.error  # the launcher keeps its ruleset now
    workdir = _workdir(repo)
    (workdir / "model.py").write_text(LISTS_ITS_FILES)
    job = dataclasses.replace(_job(workdir, "", isolation=isolation),
                              command=f"python -c {shlex.quote(COUNTS_THEM)} {{metrics}}")
    result = evaluate(job)
    assert result.ok and result.objectives == {"accuracy": 0.0}, result.error


def test_with_neither_layer_the_same_attacks_get_through(repo):
    """The control: no bubblewrap, no Landlock, the network allowed; every attack works,
    so the test above can fail."""
    listener = _Server()
    site_file = Path(next(p for p in sys.path if p.endswith("site-packages")),
                     "sitecustomize_gitevo_test.py")
    try:
        for name, body in attacks(repo, listener.port).items():
            result = evaluate(_job(_workdir(repo), _attempt(body), isolation="none",
                                   landlock_on=False, network="allow"))
            assert result.ok and result.objectives == {"accuracy": 1.0}, (name, result.error)
        assert listener.accepted == 1
    finally:
        site_file.unlink(missing_ok=True)


@needs_landlock
def test_inside_bubblewrap_the_floor_is_a_second_layer(repo):
    """bubblewrap shows the whole filesystem read-only; the floor stacked inside it still
    keeps what is outside its allowlist (here a file of the repository beside .git) out
    of reach, in the import check (a gene file that reads it when imported) as in the
    fitness command. Without the floor, bubblewrap alone lets both read it."""
    if not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    (repo / "notes.txt").write_text("the repository's own file\n")
    reads = f"open({str(repo / 'notes.txt')!r}).read()"
    workdir = _workdir(repo)
    for stacked in (True, False):
        (workdir / "model.py").write_text(f"{reads}\nVALUE = 1\n")
        job = _job(workdir, _attempt(reads), isolation="bwrap", landlock_on=stacked)
        checked = evaluate(job)
        if stacked:
            assert checked.status == "invalid" and "Permission denied" in checked.error, \
                checked
            assert "the Landlock floor refuses paths outside the worktree" in checked.error
        else:
            assert checked.ok, checked.error
        (workdir / "model.py").write_text("VALUE = 1\n")
        result = evaluate(job)
        assert result.ok and result.objectives == {"accuracy": 0.0 if stacked else 1.0}, \
            (stacked, result.error)
        assert result.isolation["landlock"] == (floor.kernel_abi() if stacked else 0)


@needs_landlock
def test_without_perl_a_python_binds_the_floor_inside_bubblewrap(tmp_path):
    """Perl binds the floor inside bubblewrap where it works (the tests above); on a
    machine without perl, a Python does. Such a machine, made by a PATH that holds every
    program here but perl: `gitevo doctor`'s probe, run inside bubblewrap, is refused a
    file that only the floor keeps out."""
    if not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    programs = tmp_path / "bin"
    programs.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in os.scandir(folder) if os.path.isdir(folder) else ():
            if not entry.name.startswith("perl") and not (programs / entry.name).exists():
                (programs / entry.name).symlink_to(entry.path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{programs}"}
    out = subprocess.run([sys.executable, "-m", "gitevo", "doctor"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    row = next(line for line in out.stdout.splitlines() if "Landlock floor" in line)
    assert " active " in row and "bound by python: perl is not installed" in row, out.stdout


@needs_landlock
def test_an_honest_candidate_reads_its_data_and_writes_its_tree(repo, tmp_path):
    data = tmp_path / "dataset"
    data.mkdir()
    (data / "x.json").write_text("[0.25]\n")
    code = ("import json, os, sys\n"
            f"value = json.load(open({str(data / 'x.json')!r}))[0]\n"
            "cached = json.load(open(os.path.expanduser('~/.cache/gitevo/public/train.json')))"
            "\n"
            "open('out.txt', 'w').write('kept')\n"
            "open(os.path.join(os.environ['TMPDIR'], 'scratch'), 'w').write('x')\n"
            "json.dump({'accuracy': value + cached[0]}, open(sys.argv[1], 'w'))\n")
    job = dataclasses.replace(_job(_workdir(repo), code, isolation="none"),
                              variables={"data": str(data)})
    result = evaluate(job)
    assert result.ok and result.objectives == {"accuracy": 0.25}, result.error
    assert (_workdir(repo) / "out.txt").read_text() == "kept"


@needs_landlock
def test_the_perl_program_says_why_it_cannot_bind(tmp_path):
    """landlock.pl ends as the launcher's children do, with a reason: 125 when the kernel
    refuses the ruleset (here one that handles nothing), 127 without a command."""
    if not sandbox.floor_program().works:
        pytest.skip(sandbox.floor_program().detail)
    perl = [shutil.which("perl"), str(sandbox.LANDLOCK_PERL)]
    empty = ["0", "0", "0", "8", str(os.O_PATH), str(landlock.FILE_RIGHTS)]
    refused = subprocess.run([*perl, *empty, "--", "true"], capture_output=True, text=True)
    assert refused.returncode == 125, refused
    assert "cannot apply Landlock: landlock_create_ruleset" in refused.stderr
    policy = {"abi": floor.kernel_abi(), "read": ["/usr"], "write": [str(tmp_path)],
              "existing": [], "deny_tcp": True, "scope": True}
    alone = subprocess.run([*perl, *landlock.perl_options(policy)], capture_output=True,
                           text=True)
    assert alone.returncode == 127 and "no command after `--`" in alone.stderr, alone


@needs_landlock
def test_the_module_binds_a_forked_child_and_what_it_execs(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    pid = os.fork()
    if pid == 0:  # the child: bound, then it runs a shell that tries both places
        code = 1
        try:
            landlock.restrict(["/usr", "/lib", "/lib64", "/bin", "/etc"], [str(allowed)])
            os.execv("/bin/sh", ["sh", "-c", f"echo ok > {allowed}/a && "
                                             f"! echo no > {tmp_path}/b 2>/dev/null"])
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (allowed / "a").read_text() == "ok\n" and not (tmp_path / "b").exists()


def test_the_floor_asks_for_what_the_kernel_has(tmp_path):
    """The policy carries the ABI the kernel reports; where it reports none, there is no
    policy and restricting is an error, never a silent success."""
    version = landlock.abi()
    found = floor.policy(workdir=tmp_path, tmp=tmp_path, env={}, cache=[],
                         cache_writable=False, hidden=[], data=[], network=False)
    if version < 1:
        assert found is None
        with pytest.raises(landlock.LandlockError):
            landlock.restrict([], [])
        return
    assert found.abi == version and found.deny_tcp and str(tmp_path) in found.write
    assert "/usr" in found.read
    # no /proc entry is writable: under isolation = "unshare" the launcher's child writes
    # its uid_map before it binds itself to the floor
    assert not any(path.startswith("/proc") for path in found.write + found.existing)


def test_a_run_says_what_is_not_protected_and_require_refuses_it(tmp_path):
    from tests.conftest import cli, git
    from tests.test_bad_input import run_gitevo

    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy")
    toml = repo / "gitevo.toml"
    base = toml.read_text()
    toml.write_text(base + '\n[sandbox]\nisolation = "none"\nlandlock = false\n')
    git(repo, "commit", "-qam", "no isolation at all")
    out = run_gitevo(repo, "generation", "--n", "2", "-q")
    warnings = [line for line in out.stderr.splitlines() if "warning" in line]
    assert out.returncode == 0 and len(warnings) == 1, out.stderr
    assert "not fully isolated" in warnings[0] and "install bubblewrap" in warnings[0]
    child = git(repo, "notes", "--ref", "gitevo/main", "show", "gitevo/main/g001-000")
    assert json.loads(child)["isolation"] == {"isolation": "none", "landlock": 0,
                                              "network": "open", "filesystem": False}
    toml.write_text(toml.read_text().replace("landlock = false\n",
                                             'landlock = false\nrequire = ["filesystem"]\n'))
    git(repo, "commit", "-qam", "require a protected filesystem")
    before = git(repo, "for-each-ref")
    refused = run_gitevo(repo, "generation", "--n", "2", "-q")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "sandbox.require: filesystem protection is not available" in refused.stderr
    assert git(repo, "for-each-ref") == before  # nothing written
    if floor.kernel_abi() >= 1:  # the floor on: nothing to warn about, and the note says so
        toml.write_text(base + '\n[sandbox]\nisolation = "none"\nrequire = ["filesystem"]\n')
        git(repo, "commit", "-qam", "the Landlock floor")
        quiet = run_gitevo(repo, "generation", "--n", "2", "-q")
        assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr
        note = json.loads(git(repo, "notes", "--ref", "gitevo/main", "show",
                              "gitevo/main/g002-000"))
        assert note["isolation"]["filesystem"] is True and note["isolation"]["landlock"] >= 1


@needs_landlock
def test_a_refused_path_says_it_was_the_floor(repo, tmp_path):
    elsewhere = tmp_path / "unnamed-data"
    elsewhere.mkdir()
    (elsewhere / "x.json").write_text("[1]\n")
    code = f"import json, sys\njson.load(open({str(elsewhere / 'x.json')!r}))\n"
    result = evaluate(_job(_workdir(repo), code, isolation="none"))
    assert result.status == "crashed" and "Permission denied" in result.error
    assert "the Landlock floor refuses paths outside the worktree" in result.error
