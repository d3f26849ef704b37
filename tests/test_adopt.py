"""`gitevo adopt REV`: a person's commit taken into a toy run, evaluated and recorded as an
individual that the next selection takes in; every refusal is one line and writes
nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from tests.conftest import cli, git


def gitevo(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gitevo", "-C", str(repo), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def run(tmp_path) -> Path:
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy")
    cli("-C", str(repo), "generation", "--n", "4", "-q")
    return repo


def branch_with(repo: Path, name: str, trend: str, *, extra: dict[str, str] | None = None,
                verify: bool = True) -> str:
    """A person's branch off the champion with `trend`'s body replaced (committed past
    gitevo's pre-commit check when not `verify`)."""
    git(repo, "switch", "-q", "-c", name, "gitevo/main/best")
    source = (repo / "model.py").read_text()
    source = re.sub(r"def trend\(x\):\n(?:    .*\n)+", f"def trend(x):\n    {trend}\n",
                    source, count=1)
    (repo / "model.py").write_text(source)
    for path, text in (extra or {}).items():
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"{name}: a person's idea",
        *([] if verify else ["--no-verify"]))
    commit = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "switch", "-q", "main")
    return commit


def state(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def test_an_honest_commit_is_evaluated_and_enters_the_next_selection(run):
    commit = branch_with(run, "idea", "return 0.45 * x")
    out = gitevo(run, "adopt", "idea")
    assert out.returncode == 0, out.stderr
    assert re.match(r"adopted idea as g002-h000: ok accuracy=", out.stdout), out.stdout
    store = Store(run)
    ind = load_all(store, "main")["g002-h000"]
    assert ind.operator == "human" and ind.block == "model.py::trend"
    best = git(run, "rev-parse", "gitevo/main/best").strip()
    champion = next(i.id for i in load_all(store, "main").values() if i.commit == best)
    assert ind.parents == [champion] and store.parents(ind.commit) == [commit]
    assert store.trailers(ind.commit)["Gitevo-Adopted"] == commit
    assert ind.evaluation.ok and ind.evaluation.objectives["accuracy"] > 0
    cli("-C", str(run), "generation", "--n", "4", "-q")
    rows = ledger.read(store, "main").offspring
    human = [r for r in rows if r["id"] == "g002-h000"]
    assert human and human[0]["operator"] == "human" and human[0]["status"] == "ok"
    assert len(rows) == 5  # the four planned children and the adopted one


def test_an_invalid_commit_is_recorded_invalid_and_selected_never(run):
    # the pre-commit hook refuses it; a person may commit it past the hook all the same
    branch_with(run, "broken", "return undefined_name * x", verify=False)
    out = gitevo(run, "adopt", "broken")
    assert out.returncode == 0, out.stderr
    assert "as g002-h000: invalid" in out.stdout
    note = json.loads(git(run, "notes", "--ref", "gitevo/main", "show", "gitevo/main/g002-h000"))
    assert note["status"] == "invalid" and "undefined_name" in note["error"]
    cli("-C", str(run), "generation", "--n", "2", "-q")
    gen = ledger.read(Store(run), "main")
    assert "g002-h000" not in {m.id for m in gen.population}
    assert [r["status"] for r in gen.offspring if r["id"] == "g002-h000"] == ["invalid"]


@pytest.mark.parametrize("case, needle", [
    ("missing", "nope: no such revision"),
    ("outside", "changes files outside the genes: notes.txt"),
    ("twice", "already adopted as g002-h000"),
    ("individual", "is individual g001-000 of run 'main' already"),
    ("unrelated", "descends from no individual of run 'main'"),
])
def test_a_commit_that_cannot_be_adopted_is_one_line_and_writes_nothing(run, case, needle):
    rev = {"missing": "nope", "individual": "gitevo/main/g001-000"}.get(case, case)
    if case == "outside":
        branch_with(run, "outside", "return 0.4 * x", extra={"notes.txt": "an aside\n"})
    if case == "twice":
        branch_with(run, "twice", "return 0.41 * x")
        assert gitevo(run, "adopt", "twice").returncode == 0
    if case == "unrelated":
        git(run, "switch", "-q", "--orphan", "unrelated")
        (run / "model.py").write_text("def trend(x):\n    return x\n")
        git(run, "add", "model.py")
        git(run, "commit", "-qm", "a fresh start", "--no-verify")
        git(run, "switch", "-qf", "main")
    before = state(run)
    out = gitevo(run, "adopt", rev)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("gitevo: error: ") and needle in lines[0], lines[0]
    assert state(run) == before  # no ref, no note, no ledger change


def test_adopt_is_refused_while_a_generation_runs(run):
    branch_with(run, "idea", "return 0.45 * x")
    before = state(run)
    with Store(run).lock():  # what a running generation holds
        out = gitevo(run, "adopt", "idea")
    assert out.returncode == 2 and "locked by pid" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert state(run) == before
