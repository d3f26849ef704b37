"""The proposals' own process (gitevo/pipeline/proposer.py): losing it loses no answer already
kept, and it never outlives the gitevo that started it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.conftest import git, gitevo_process
from tests.llm_servers import LLMServer, answered, slow
from tests.test_llm_faults import (
    KEY_ENV,
    children_with_notes,
    guided_toy,
    offspring,
    respond,
    served_by,
)


def proposer_of(parent: int, timeout: float = 20.0) -> int:
    """The pid of the proposals' process that `parent` started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"gitevo.pipeline.proposer" in cmdline:
                return int(entry.name)
        time.sleep(0.02)
    raise AssertionError(f"gitevo (pid {parent}) started no proposals' process")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def committed(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(objectname)",
               "refs/heads/gitevo/main/g001-*").split()


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_lost_proposals_process_stops_the_generation_and_the_rerun_resumes(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with LLMServer(default=slow(0.4, answered()), responder=respond) as server:
        repo = guided_toy(tmp_path, "openai", server)
        run = gitevo_process("generation", "--n", "6", cwd=repo)
        proposer = proposer_of(run.pid)
        wait_until(lambda: len(committed(repo)) >= 2)
        os.kill(proposer, signal.SIGKILL)
        _, err = run.communicate(timeout=60)
        kept = committed(repo)
        asked = len(server.requests)
    assert run.returncode != 0
    assert "proposals' process exited unexpectedly" in err and "rerun" in err, err
    assert "Traceback" not in err
    # what it had kept before it died is whole: every branch has its conversation
    assert 2 <= len(kept) < 6
    for commit in kept:
        assert git(repo, "notes", "--ref", "gitevo/main-llm", "show", commit)
    with LLMServer(default=answered(), responder=respond) as server:
        served_by(repo, server)
        rerun = gitevo_process("generation", cwd=repo)
        _, err = rerun.communicate(timeout=120)
        again = len(server.first_turns())
    assert rerun.returncode == 0, err
    assert len(offspring(repo)) == 6 and children_with_notes(repo) == 6
    assert asked >= len(kept) and again == 6 - len(kept)  # kept children are not asked again


def test_the_proposals_process_ends_with_gitevo(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with LLMServer(default=slow(5.0, answered()), responder=respond) as server:
        repo = guided_toy(tmp_path, "openai", server)
        run = gitevo_process("generation", "--n", "4", cwd=repo)
        proposer = proposer_of(run.pid)
        wait_until(lambda: server.requests)  # a call is in flight
        run.kill()
        run.wait(timeout=30)  # not its pipes: the proposer holds its stderr till it ends
        # gitevo is gone while its proposer waits on the LLM: the proposer follows at once
        wait_until(lambda: not alive(proposer), timeout=3)
        run.communicate(timeout=30)
