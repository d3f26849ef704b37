"""Whole generations on the toy template: git data model, selection, resumption, reproducibility."""

from __future__ import annotations

import json
import re
import signal
import tempfile
import time
from pathlib import Path

import pytest

from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from tests.conftest import cli, git, gitevo_process


def _individual_refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname:lstrip=4) %(objectname)",
              "refs/heads/gitevo/main/")
    pairs = dict(line.split() for line in out.splitlines())
    return {k: v for k, v in pairs.items() if re.fullmatch(r"g\d{3}-\d{3}", k)}


def _notes(repo: Path) -> dict[str, dict]:
    out = git(repo, "notes", "--ref", "gitevo/main", "list")
    notes = {}
    for line in out.splitlines():
        _blob, commit = line.split()
        notes[commit] = json.loads(git(repo, "notes", "--ref", "gitevo/main", "show", commit))
    return notes


@pytest.fixture
def evolved(toy_run) -> Path:
    """The shared 3-generation toy run, for the read-only checks below."""
    return toy_run


def test_every_individual_is_a_branch_with_trailers_and_a_note(evolved):
    refs = _individual_refs(evolved)
    notes = _notes(evolved)
    assert len(refs) == 1 + 3 * 8 - _rejected(evolved)
    for ident, commit in refs.items():
        assert commit in notes, f"{ident} has no fitness note"
        assert notes[commit]["status"] in ("ok", "invalid", "timeout", "crashed")
        if ident == "g000-000":
            continue
        message = git(evolved, "log", "-1", "--format=%B", commit)
        for trailer in ("Gitevo-Run: main", f"Gitevo-Id: {ident}", "Gitevo-Generation: ",
                        "Gitevo-Operator: ", "Gitevo-Block: model.py::", "Gitevo-Prompt: ",
                        "Gitevo-Model: "):
            assert trailer in message, f"{ident} lacks {trailer!r}"
        # an individual changes only its gene file
        first_parent = git(evolved, "rev-parse", f"{commit}^1").strip()
        changed = git(evolved, "diff", "--name-only", first_parent, commit).split()
        assert changed == ["model.py"]


def test_crossovers_are_merge_commits_with_both_parents(evolved):
    store = Store(evolved)
    everyone = load_all(store, "main")
    crossovers = [i for i in everyone.values() if i.operator == "crossover"]
    mutations = [i for i in everyone.values() if i.operator == "mutation"]
    assert crossovers and mutations
    for ind in crossovers:
        parents = store.parents(ind.commit)
        assert parents == [everyone[p].commit for p in ind.parents] and len(parents) == 2
        assert ind.subject.startswith("crossover(model.py::")
    for ind in mutations:
        assert store.parents(ind.commit) == [everyone[ind.parents[0]].commit]


def test_ledger_has_one_commit_per_generation_and_selection_is_elitist(evolved):
    store = Store(evolved)
    gens = ledger.history(store, "main")
    assert [g.generation for g in gens] == [0, 1, 2, 3]
    assert git(evolved, "rev-list", "--count", "gitevo/main/ledger").strip() == "4"
    assert git(evolved, "rev-list", "--max-parents=0", "gitevo/main/ledger").strip() == \
        git(evolved, "rev-list", "--reverse", "gitevo/main/ledger").split()[0]
    everyone = load_all(store, "main")
    for before, after in zip(gens, gens[1:], strict=False):
        assert len(after.population) <= 8 and len(after.offspring) == 8
        for member in after.population:  # invalid individuals never survive
            assert everyone[member.id].status == "ok"
        # elitism: the best accuracy never drops between generations
        assert after.stats["best"]["accuracy"] >= before.stats["best"]["accuracy"]
        assert after.stats["hypervolume"] >= before.stats["hypervolume"] - 1e-12
        assert after.hall_of_fame and "valid_rate" in after.stats
    best = store.resolve("refs/heads/gitevo/main/best")
    assert best in {m.commit for m in gens[-1].hall_of_fame}


def test_repository_is_consistent(evolved):
    git(evolved, "fsck", "--strict")
    assert not list((evolved / ".git" / "gitevo" / "worktrees").glob("main/*"))
    assert not (evolved / ".git" / "gitevo" / "lock").exists()
    assert git(evolved, "status", "--porcelain") == ""


def test_status_and_log_read_refs_and_notes(evolved):
    out = cli("-C", str(evolved), "status")
    assert "generation 3" in out and "population" in out and "best: g" in out
    assert "accuracy" in out and "mutation" in out
    champion = re.search(r"best: (g\d{3}-\d{3})", out).group(1)
    lineage = cli("-C", str(evolved), "log", champion)
    assert champion in lineage and "g000-000" in lineage
    assert re.search(r"accuracy=[\d.]+ \([+-]", lineage)  # deltas per step
    assert cli("-C", str(evolved), "log") == lineage  # default: the champion


def test_log_of_unknown_individual_is_one_line_error(evolved):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "gitevo", "-C", str(evolved), "log", "g999-999"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip() == \
        "gitevo: error: no individual 'g999-999' in run 'main'"


def test_same_seed_same_run(tmp_path, evolved):
    other = tmp_path / "again"
    cli("init", str(other), "--template", "toy")
    cli("-C", str(other), "run", "--generations", "3", "--n", "8")
    a, b = Store(evolved), Store(other)
    refs_a, refs_b = _individual_refs(evolved), _individual_refs(other)
    assert refs_a.keys() == refs_b.keys()
    for ident in refs_a:
        assert a.tree_id(refs_a[ident]) == b.tree_id(refs_b[ident]), ident
    pops = [[m.id for m in g.population] for g in ledger.history(a, "main")]
    assert pops == [[m.id for m in g.population] for g in ledger.history(b, "main")]


def _rejected(repo: Path) -> int:
    return sum(g.stats.get("statuses", {}).get("rejected", 0)
               for g in ledger.history(Store(repo), "main"))


def test_kill_9_mid_generation_then_rerun_finishes_without_redoing(tmp_path):
    victim, reference = tmp_path / "victim", tmp_path / "reference"
    for repo in (victim, reference):
        cli("init", str(repo), "--template", "toy")
        text = (repo / "gitevo.toml").read_text().replace(
            'command = "python fitness.py', 'command = "sleep 0.3; python fitness.py')
        (repo / "gitevo.toml").write_text(text)
    cli("-C", str(reference), "generation", "--n", "8")
    proc = gitevo_process("generation", "--n", "8", cwd=victim)
    notes_before = 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until some, not all, offspring are evaluated
        count = len(git(victim, "notes", "--ref", "gitevo/main", "list").splitlines())
        if count >= notes_before + 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {c: n for c, n in _notes(victim).items()}
    assert 1 < len(done) < 9, "the kill should land mid-evaluation"
    assert (victim / ".git" / "gitevo" / "lock").exists()  # left behind by the dead process
    cli("-C", str(victim), "generation", "--n", "8")
    after = _notes(victim)
    for commit, note in done.items():  # finished work was kept, not redone
        assert after[commit]["seconds"] == note["seconds"]
    git(victim, "fsck", "--strict")
    assert not list((victim / ".git" / "gitevo" / "worktrees" / "main").iterdir())
    # the dead process's evaluation temp dirs went with the rerun's recovery
    assert not list(Path(tempfile.gettempdir()).glob(f"gitevo-{proc.pid}-*"))
    a, b = ledger.read(Store(victim), "main"), ledger.read(Store(reference), "main")
    assert a.generation == b.generation == 1
    assert [m.id for m in a.population] == [m.id for m in b.population]
    assert [m.objectives for m in a.population] == [m.objectives for m in b.population]


def test_second_process_is_refused_while_one_runs(tmp_path):
    repo = tmp_path / "busy"
    cli("init", str(repo), "--template", "toy")
    text = (repo / "gitevo.toml").read_text().replace(
        'command = "python fitness.py', 'command = "sleep 1; python fitness.py')
    (repo / "gitevo.toml").write_text(text)
    first = gitevo_process("generation", "--n", "2", cwd=repo)
    lock = repo / ".git" / "gitevo" / "lock"
    while not lock.exists():
        time.sleep(0.02)
    second = gitevo_process("generation", "--n", "2", cwd=repo)
    _out, err = second.communicate(timeout=30)
    assert second.returncode == 2 and f"locked by pid {first.pid}" in err
    first.communicate(timeout=60)
    assert first.returncode == 0


def test_run_target_is_a_total_so_rerunning_resumes(evolved):
    out = cli("-C", str(evolved), "run", "--generations", "3", "--n", "8")
    assert "already has 3 generation(s)" in out
    assert ledger.read(Store(evolved), "main").generation == 3


def test_children_that_change_only_function_bodies_are_not_import_checked(tmp_path):
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy", "--no-eval")
    log = tmp_path / "imports.log"
    # each import of the gene file says who imported it: the fork server for an import
    # check, fitness.py for the check and the evaluation
    model = repo / "model.py"
    model.write_text(f"import sys\nopen({str(log)!r}, 'a').write(sys.argv[0] + '\\n')\n"
                     + model.read_text())
    (repo / "gitevo.toml").write_text((repo / "gitevo.toml").read_text()
                                      + '\n[sandbox]\nisolation = "none"\nlandlock = false\n')
    git(repo, "commit", "-qam", "log each import of the genes")
    cli("-C", str(repo), "seed")
    before = log.read_text().splitlines()
    assert [x for x in before if x.endswith("forkserver.py")]  # the seed was import-checked
    cli("-C", str(repo), "generation", "--n", "6")
    new = log.read_text().splitlines()[len(before):]
    gen = ledger.read(Store(repo), "main")
    # the offline operators change constants and calls inside function bodies: importing
    # a child runs what importing its parent ran, so only the harness imported them
    assert sum(r["status"] == "ok" for r in gen.offspring) >= 4
    assert new and all(x.endswith("fitness.py") for x in new)
