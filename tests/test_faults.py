"""Crash recovery under SIGKILL, through bench/faults.py (the bench runs 50 trials; this
runs a few, spread over a whole generation, offline and with the scripted LLM)."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import git, load_bench

faults = load_bench("faults")


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
