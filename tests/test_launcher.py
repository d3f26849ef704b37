"""The fork server that starts every sandboxed command: import checks by fork, exit codes,
timeouts, secrets, and what happens when gitevo or the server itself is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gitevo.config import Sandbox
from gitevo.execution import launcher, sandbox
from tests.conftest import heartbeat, stopped, wait_for

UNCONFINED = Sandbox(isolation="none")  # the fork path: no namespace tool in between


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    return work, tmp


def _import(dirs, modules, timeout=20.0, settings=UNCONFINED) -> sandbox.Outcome:
    work, tmp = dirs
    return sandbox.import_confined(modules, workdir=work, tmp=tmp, timeout=timeout,
                                   env=sandbox.sandbox_env(tmp), settings=settings)


def _run(dirs, command, timeout=20.0, settings=UNCONFINED) -> sandbox.Outcome:
    work, tmp = dirs
    return sandbox.run_confined(command, workdir=work, tmp=tmp, timeout=timeout,
                                env=sandbox.sandbox_env(tmp), settings=settings)


@pytest.mark.parametrize("isolation", ["none", "auto"])
def test_import_check_passes_and_fails_with_the_last_line(dirs, isolation):
    work, _ = dirs
    (work / "helper.py").write_text("SCALE = 3\n")
    (work / "model.py").write_text("from helper import SCALE\nVALUE = SCALE * 2\n")
    (work / "broken.py").write_text("import helper\nraise ValueError('no weights for ' + "
                                    "str(helper.SCALE))\n")
    settings = Sandbox(isolation=isolation)
    assert _import(dirs, ["model.py"], settings=settings).returncode == 0
    failed = _import(dirs, ["model.py", "broken.py"], settings=settings)
    assert failed.returncode == 1 and failed.last_line == "ValueError: no weights for 3"


def test_a_gene_file_named_like_a_loaded_module_is_the_one_imported(dirs):
    work, _ = dirs
    (work / "json.py").write_text("MARK = 'gene'\n")
    (work / "model.py").write_text("import json\nassert json.MARK == 'gene', json\n")
    assert _import(dirs, ["json.py", "model.py"]).returncode == 0


def test_an_import_that_never_ends_is_killed_at_the_timeout(dirs):
    work, _ = dirs
    (work / "model.py").write_text("while True:\n    pass\n")
    started = time.monotonic()
    outcome = _import(dirs, ["model.py"], timeout=1.0)
    assert outcome.timed_out and outcome.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_sys_exit_at_import_is_the_exit_code(dirs):
    work, _ = dirs
    (work / "model.py").write_text("import sys\nprint('leaving')\nsys.exit(3)\n")
    outcome = _import(dirs, ["model.py"])
    assert outcome.returncode == 3 and outcome.last_line == "leaving"


def test_the_import_check_sees_the_jobs_environment_and_no_secret(dirs, monkeypatch):
    work, _ = dirs
    monkeypatch.setenv("SOME_API_KEY", "sk-launcher-secret")
    # a fresh server, started while the key is set: it must not inherit it either
    launcher.shared(lambda: sandbox.sandbox_env(dirs[1])).close()
    (work / "model.py").write_text(textwrap.dedent(f"""
        import os
        initial = open('/proc/self/environ', 'rb').read()
        assert b'sk-launcher-secret' not in initial, 'secret in /proc/self/environ'
        assert 'SOME_API_KEY' not in os.environ, 'secret in os.environ'
        assert os.environ['GITEVO_JOB'], 'not the job environment'
        assert os.environ['TMPDIR'] == {str(dirs[1])!r}
        """))
    outcome = _import(dirs, ["model.py"])
    assert outcome.returncode == 0, outcome.tail


def test_limits_hold_in_a_forked_import(dirs):
    work, _ = dirs
    (work / "model.py").write_text(textwrap.dedent("""
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        assert soft == hard == int(0.001 * 1024 ** 3), (soft, hard)
        open('big.bin', 'wb').write(b'x' * 2 * 1024 ** 2)
        """))
    outcome = _import(dirs, ["model.py"], settings=Sandbox(isolation="none", file_size=0.001))
    assert outcome.returncode != 0
    assert "File too large" in outcome.tail or "SIGXFSZ" in outcome.reason()


def test_a_missing_command_exits_127_with_bashs_reason(dirs):
    outcome = _run(dirs, "no-such-tool --flag")
    assert outcome.returncode == 127 and "no-such-tool: command not found" in outcome.tail


def test_a_dead_launcher_is_replaced_on_the_next_run(dirs):
    assert _run(dirs, "exit 4").returncode == 4
    server = launcher.shared(lambda: sandbox.sandbox_env(dirs[1]))
    server._proc.kill()
    server._proc.wait()
    deadline = time.monotonic() + 5
    while server.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not server.alive
    assert _run(dirs, "echo back; exit 5").returncode == 5
    assert launcher.shared(lambda: sandbox.sandbox_env(dirs[1])) is not server


@pytest.mark.parametrize("group", [False, True], ids=["sigkill-gitevo", "sigterm-its-group"])
def test_commands_die_when_gitevo_is_killed(dirs, tmp_path, group):
    """SIGKILL gives gitevo no time to clean up; the launcher sees its stdin close. A
    SIGTERM to the whole process group (a terminal closed, a service stopped) reaches the
    launcher too, which then kills its commands (they run in sessions of their own)."""
    work, tmp = dirs
    beat = work / "beat"  # in the worktree, where Landlock lets the command write
    script = textwrap.dedent(f"""
        from pathlib import Path
        from gitevo.execution import sandbox
        from gitevo.config import Sandbox
        tmp = Path({str(tmp)!r})
        sandbox.run_confined({heartbeat(beat)!r},
                             workdir=Path({str(work)!r}), tmp=tmp, timeout=120,
                             env=sandbox.sandbox_env(tmp), settings=Sandbox(isolation="none"))
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        wait_for(beat)
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.5)  # the launcher reads its stdin's end, then kills
        assert stopped(beat, 0.5), "the command outlived gitevo"
    finally:
        proc.kill()


def test_a_launcher_killed_mid_command_ends_it_with_a_reason(dirs, tmp_path):
    beat = dirs[0] / "beat"  # in the worktree, where Landlock lets the command write
    server = launcher.shared(lambda: sandbox.sandbox_env(dirs[1]))
    result: list[sandbox.Outcome] = []
    thread = threading.Thread(
        target=lambda: result.append(_run(dirs, heartbeat(beat), timeout=60)))
    thread.start()
    wait_for(beat)
    server._proc.kill()
    thread.join(20)
    assert result and not result[0].timed_out
    assert "launcher was killed" in result[0].reason()
    assert stopped(beat), "the command outlived its launcher"


def test_a_closed_launcher_is_not_handed_out_again(dirs):
    # close() returns once the server has exited, maybe before the reader thread has seen
    # its output end: the launcher must count as gone already, or shared() reuses it and
    # the next command meets "write to closed file"
    def make() -> dict[str, str]:
        return sandbox.sandbox_env(dirs[1])

    for _ in range(20):
        first = launcher.shared(make)
        first.close()
        assert not first.alive
        assert launcher.shared(make) is not first
    (dirs[0] / "ok.py").write_text("VALUE = 1\n")
    assert _import(dirs, ["ok.py"]).returncode == 0
