"""Crash recovery under SIGKILL, through bench/faults.py (the bench runs 50 trials; this
runs a few, spread over a whole generation, offline, with the scripted LLM and under
a cascade)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git, load_bench

faults = load_bench("faults")
BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.slow
def test_killed_generations_recover_to_the_uninterrupted_result(tmp_path):
    lines: list[str] = []
    done = faults.run(6, seed=7, where=tmp_path, log=lines.append)
    assert len(done) == 6
    assert not [t for t in done if t.problems], "\n".join(lines)
    assert len({t.moment for t in done}) >= 3, faults.report(done)  # spread, not one spot


def test_the_checks_see_what_a_crash_could_break(tmp_path):
    template = faults.make_template(tmp_path, "offline")
    ref, _ = faults.reference(template, tmp_path)
    assert faults.check(ref, ref) == []
    broken = faults.copy(ref, tmp_path / "broken")
    victim = sorted(faults.branches(broken))[0]
    commit = faults.branches(broken)[victim]
    git(broken, "notes", "--ref", "gitevo/main", "remove", commit)
    (broken / ".git" / "gitevo" / "worktrees" / "main" / victim).mkdir(parents=True)
    git(broken, "update-ref", "-d", f"refs/heads/gitevo/main/{sorted(faults.branches(broken))[-1]}")
    problems = faults.check(broken, ref)
    assert any(f"{victim}: no fitness note" in p for p in problems), problems
    assert any("exported trees left" in p for p in problems), problems
    assert any(p.startswith("branches ") for p in problems), problems
    shutil.rmtree(broken)


def test_the_checks_see_a_rung_run_twice_or_a_promotion_changed(tmp_path):
    template = faults.make_template(tmp_path, "cascade")
    ref, _ = faults.reference(template, tmp_path)
    assert faults.check(ref, ref) == []
    outcomes = faults.outcomes(ref)
    assert {final for _, _, final in outcomes.values()} >= {"screened", "ok"}
    broken = faults.copy(ref, tmp_path / "broken")
    victim, commit = sorted(faults.branches(broken).items())[0]
    # the screen noted again, with another result: as if the rung had run twice
    git(broken, "notes", "--ref", "gitevo/main-rung1", "add", "-f", "-m",
        '{"status": "ok", "objectives": {"accuracy": 0.01, "l1": 1.0}}', commit)
    problems = faults.check(broken, ref)
    assert any(p.startswith("screening notes written more than once") for p in problems)
    assert "screening results or promotions differ from the uninterrupted run's" in problems


def test_the_checks_see_a_promotion_changed_or_against_its_rule(tmp_path):
    template = faults.make_template(tmp_path, "asha")
    ref, _ = faults.reference(template, tmp_path)
    records = faults.notes(ref, faults.PROMOTED)
    assert records and faults.check(ref, ref, decided=records) == []
    broken = faults.copy(ref, tmp_path / "broken")
    ids = {c: i for i, c in faults.branches(broken).items()}
    victim = sorted(c for c in records if c in ids)[0]
    # as if the rerun had forgotten a decision and trained the child anyway
    git(broken, "notes", "--ref", "gitevo/main-rung1-promoted", "remove", victim)
    changed = {victim: {**records[victim], "among": []}}
    problems = faults.check(broken, ref, decided=changed)
    assert f"the promotion of {victim[:10]} recorded before the kill changed" in problems
    assert any(p.startswith(f"{ids[victim]} was not promoted, yet") for p in problems)
    assert any(p.startswith("the ledger's rung figures") for p in problems), problems


def test_a_lock_left_after_the_ledger_commit_is_a_problem_only_while_its_holder_lives(tmp_path):
    template = faults.make_template(tmp_path, "offline")
    ref, _ = faults.reference(template, tmp_path)
    lock = ref / ".git" / "gitevo" / "lock"
    child = subprocess.Popen(["true"])
    child.wait()
    lock.write_text(f"{child.pid} somewhere\n")
    assert faults.check(ref, ref, rerun=False) == []  # a dead holder's lock is stale
    assert faults.check(ref, ref) == ["the lock is still there"]  # after a rerun, any lock is
    lock.write_text(f"{os.getpid()} here\n")
    assert faults.check(ref, ref, rerun=False) == ["the lock is still there"]


@pytest.mark.slow
def test_the_bench_runs_as_a_script(tmp_path):
    # the README's figure comes from this command line, not from the functions imported
    out = subprocess.run([sys.executable, str(BENCH / "faults.py"), "--trials", "2"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TMPDIR": str(tmp_path)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 trials, 0 with a broken invariant" in out.stdout


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_a_bench_script_defines_everything_before_its_main_guard_runs(script):
    # run as a script, a module stops at its main guard's call: a function defined below
    # the guard does not exist yet when the bench calls it (a NameError, late in a run)
    body = ast.parse((BENCH / script).read_text()).body
    guards = [i for i, node in enumerate(body) if isinstance(node, ast.If)
              and "__main__" in ast.unparse(node.test)]
    assert guards and guards[-1] == len(body) - 1, f"bench/{script}: code after the main guard"
