"""Shared fixtures: real git repositories in temp dirs, driven through the real CLI."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from gitevo.cli import main

# A suite started in the background by a non-interactive shell (`.ci/run &`) inherits
# SIGINT ignored, and so would every gitevo it starts: the Ctrl-C tests would see a
# gitevo that cannot be interrupted. A Python handler here becomes the default again in
# each exec'd child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent


RESPONDER = Path(__file__).with_name("responder.py")


def _isolate_git(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "gitevo-test")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "test@example.invalid")


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch, tmp_path_factory):
    """Tests must not depend on (or write to) the developer's git config."""
    _isolate_git(monkeypatch, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def _session_identity(tmp_path_factory) -> Iterator[None]:
    """The same isolation for session fixtures, which are built before per-test ones."""
    with pytest.MonkeyPatch.context() as patch:
        _isolate_git(patch, tmp_path_factory.mktemp("session-home"))
        yield


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory, _session_identity) -> Path:
    """A 3-generation toy run (offline operators, 8 offspring each). Shared: tests that
    write to it must work on `copy_repo(toy_run, ...)`."""
    repo = tmp_path_factory.mktemp("toy-run") / "toy"
    cli("init", str(repo), "--template", "toy")
    cli("-C", str(repo), "run", "--generations", "3", "--n", "8")
    return repo


@pytest.fixture(scope="session")
def exquisite_run(tmp_path_factory, _session_identity) -> Path:
    """Two guided generations of 6 on ExquisiteNetV2 at smoke fidelity: real PyTorch
    training per individual, the `command` provider answering through the scripted
    responder (a few sloppy answers among them). Shared and read-only, like `toy_run`."""
    pytest.importorskip("torch")
    repo = tmp_path_factory.mktemp("exquisite-run") / "enet"
    command = f"GITEVO_RESPONDER_SLOPPY=5 {sys.executable} {RESPONDER}"
    cli("init", str(repo), "--template", "exquisitenetv2", "--fidelity", "smoke",
        "--llm", "provider=command", "--llm", f"command={command}")
    # two evaluations at once: most of a smoke evaluation is single-threaded start-up;
    # every child trained in full, so the run holds many of each kind (the template's
    # cascade has a run of its own in test_guided_exquisitenetv2.py)
    text = (repo / "gitevo.toml").read_text().replace("workers = 1", "workers = 2")
    (repo / "gitevo.toml").write_text(without_cascade(text))
    git(repo, "commit", "-qam", "evaluate two at a time, every child in full")
    cli("-C", str(repo), "run", "--generations", "2", "--n", "6")
    return repo


TEMPLATE_CASCADE = '[fitness.cascade]\nrungs = [{ vars = { budget = "screen" }, promote = 0.25 }]\n'


def without_cascade(toml_text: str) -> str:
    """The ExquisiteNetV2 template's gitevo.toml without its cascade."""
    assert TEMPLATE_CASCADE in toml_text
    return toml_text.replace(TEMPLATE_CASCADE, "")


def copy_repo(repo: Path, dest: Path) -> Path:
    """A private copy of a shared run's repository (refs, notes, state and all)."""
    shutil.copytree(repo, dest, symlinks=True)
    return dest


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def committed_repo(repo: Path, files: dict[str, str]) -> Path:
    """A new repository at `repo` whose one commit holds `files` (name -> text)."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    return repo


def cli(*args: str, expect: int = 0) -> str:
    """Invoke the gitevo CLI in process; assert its exit code; return its output."""
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == expect, f"exit {result.exit_code}: {result.output}"
    return result.output


def gitevo_process(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    """The CLI as a real subprocess (for kill -9 and lock tests)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "gitevo", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture
def toy(tmp_path) -> Path:
    """A toy-template repository with its seed evaluated (generation 0)."""
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy")
    return repo


def load_bench(name: str):
    """bench/<name>.py as a module: tests that run a benchmark's own pipeline import it."""
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def heartbeat(path: Path) -> str:
    """A shell loop that keeps writing the time into `path` until it is killed."""
    return f"while :; do date +%s%N > {path}; sleep 0.05; done"


def wait_for(path: Path, timeout: float = 20.0) -> None:
    """Until `path` exists (a command has started beating into it)."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), f"{path} never appeared: the command never started"


def stopped(path: Path, wait: float = 0.3) -> bool:
    """Whether whatever beats into `path` has stopped."""
    before = path.read_text()
    time.sleep(wait)
    return path.read_text() == before
