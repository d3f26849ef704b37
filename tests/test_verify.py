"""`gitevo verify`: re-measuring individuals of real runs and holding them to their notes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from gitevo.store.gitstore import Store
from tests.conftest import cli, copy_repo, git, gitevo_process


def _note(repo: Path, ident: str) -> dict:
    return json.loads(git(repo, "notes", "--ref", "gitevo/main", "show",
                          f"gitevo/main/{ident}"))


def _set_note(repo: Path, ident: str, note: dict) -> None:
    """Rewrite a note the way a person (or a forger) would: plain git, no gitevo."""
    git(repo, "notes", "--ref", "gitevo/main", "add", "-f", "-m", json.dumps(note),
        f"gitevo/main/{ident}")


def _leftovers(repo: Path) -> list[Path]:
    home = repo / ".git" / "gitevo" / "verify"
    return list(home.rglob("*")) if home.exists() else []


def test_honest_individual_passes_and_each_verify_adds_an_entry(toy_run, tmp_path):
    repo = copy_repo(toy_run, tmp_path / "toy")
    # keys this gitevo does not know (a newer version's) must survive the rewrite
    original = {**_note(repo, "g002-003"), "from_the_future": {"kept": True}}
    _set_note(repo, "g002-003", original)
    out = cli("-C", str(repo), "verify", "g002-003")
    assert "PASSED g002-003 at fidelity default" in out
    assert "accuracy" in out and "l1" in out and "+0" in out
    cli("-C", str(repo), "verify", "gitevo/main/g002-003")  # a revision works as well
    note = _note(repo, "g002-003")
    first, second = note.pop("verifications")
    assert note == original  # the evaluation selection used is untouched
    for entry in (first, second):
        assert entry["passed"] is True and entry["compared_with"] == "default"
        assert entry["status"] == "ok" and entry["objectives"] == original["objectives"]
        assert entry["tolerance"] == {"accuracy": 0.02, "l1": 0.02}
        assert entry["when"].endswith("+00:00") and entry["host"]
    assert second["when"] >= first["when"]
    assert not _leftovers(repo)
    git(repo, "fsck", "--strict")


def test_inflated_note_fails_and_names_the_objective(toy_run, tmp_path):
    repo = copy_repo(toy_run, tmp_path / "toy")
    note = _note(repo, "g003-001")
    honest = note["objectives"]["accuracy"]
    note["objectives"]["accuracy"] = honest + 0.05
    _set_note(repo, "g003-001", note)
    out = cli("-C", str(repo), "verify", "g003-001", expect=1)
    assert "FAILED g003-001" in out and "accuracy fell from" in out and "WORSE" in out
    assert "l1 " not in out.splitlines()[-1]  # only the objective that dropped is named
    entry = _note(repo, "g003-001")["verifications"][-1]
    assert entry["passed"] is False and entry["objectives"]["accuracy"] == honest
    # a tolerance wide enough for the lie passes; per objective beats the bare number
    out = cli("-C", str(repo), "verify", "g003-001", "--tolerance", "accuracy=0.06",
              "--tolerance", "0")
    assert "PASSED" in out


def test_another_fidelity_is_recorded_then_compared_with(toy_run, tmp_path):
    repo = copy_repo(toy_run, tmp_path / "toy")
    out = cli("-C", str(repo), "verify", "best", "--fidelity", "paper")
    assert "RECORDED" in out and "nothing to compare with" in out
    first = _note(repo, _best_id(repo))["verifications"][-1]
    assert first["fidelity"] == "paper" and first["compared_with"] is None
    assert first["passed"] is None
    out = cli("-C", str(repo), "verify", "best", "--fidelity", "paper")
    assert "PASSED" in out  # the first measurement at paper is now the reference there
    assert _note(repo, _best_id(repo))["verifications"][-1]["compared_with"] == "paper"


def _best_id(repo: Path) -> str:
    best = git(repo, "rev-parse", "gitevo/main/best").strip()
    for line in git(repo, "for-each-ref", "--format=%(objectname) %(refname:lstrip=4)",
                    "refs/heads/gitevo/main/").splitlines():
        commit, ident = line.split()
        if commit == best and ident.startswith("g"):
            return ident
    raise AssertionError("best is no individual")


def test_bad_input_is_one_line_and_exit_2(toy_run, tmp_path):
    repo = copy_repo(toy_run, tmp_path / "toy")
    cases = {("g001-000", "--tolerance", "speed=1"): "no objective 'speed'",
             ("g001-000", "--tolerance", "lots"): "'lots' is not a number",
             ("g001-000", "--tolerance", "-1"): "must be a finite number >= 0",
             ("g042-000",): "no individual 'g042-000'",
             ("gitevo/main/ledger",): "is not an individual of run 'main'",
             ("no-such-rev",): "not an individual id, `best`, or a revision"}
    for args, message in cases.items():
        out = cli("-C", str(repo), "verify", *args, expect=2)
        assert message in out and len(out.strip().splitlines()) == 1, out
    assert "verifications" not in _note(repo, "g001-000")


def test_verify_needs_no_lock_and_cleans_up_after_ctrl_c(toy_run, tmp_path):
    repo = copy_repo(toy_run, tmp_path / "toy")
    with Store(repo).lock():  # as if a generation were running
        assert "PASSED" in cli("-C", str(repo), "verify", "g001-001")
    config = repo / "gitevo.toml"
    config.write_text(config.read_text().replace('command = "python fitness.py',
                                                 'command = "sleep 60; python fitness.py'))
    proc = gitevo_process("verify", "g001-001", cwd=repo)
    fitness_pid = _wait_for_fitness(repo / ".git" / "gitevo" / "verify" / "main")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert not _leftovers(repo)
    try:
        os.kill(fitness_pid, 0)
        raise AssertionError("the fitness process outlived verify")
    except ProcessLookupError:
        pass
    assert len(_note(repo, "g001-001")["verifications"]) == 1  # the interrupted one wrote none


def _wait_for_fitness(home: Path) -> int:
    """The pid of the fitness command (not the quick check) once verify has started it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid_file in home.glob("*/running/*"):
            try:
                pid = int(pid_file.read_text().split()[0])
                if b"sleep 60" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except (OSError, ValueError, IndexError):
                continue
        time.sleep(0.05)
    raise AssertionError("verify never started the fitness command")


def test_exquisitenetv2_champion_reproduces_exactly(exquisite_run, tmp_path):
    repo = copy_repo(exquisite_run, tmp_path / "enet")
    out = cli("-C", str(repo), "verify", "best")
    assert "PASSED" in out and "at fidelity smoke" in out
    best = _best_id(repo)
    note = _note(repo, best)
    entry = note["verifications"][-1]
    # same commit, same harness seed, same thread share: the same numbers
    assert entry["objectives"] == note["objectives"]
    assert entry["metrics"]["test_accuracy"] == note["metrics"]["test_accuracy"]
    assert not _leftovers(repo)
