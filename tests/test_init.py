"""`gitevo init` on templates and existing repositories, its errors, and the pre-commit hook."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gitevo.store.gitstore import Store
from tests.conftest import cli, committed_repo, git

FITNESS = """
import json, sys
sys.path.insert(0, ".")
import model
json.dump({"score": model.VALUE * 2.0}, open(sys.argv[1], "w"))
"""


@pytest.fixture
def plain_repo(tmp_path) -> Path:
    return committed_repo(tmp_path / "plain", {
        "model.py": "VALUE = 3\n\n\ndef f(x):\n    return x + 1\n", "score.py": FITNESS})


def _refs(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)").split()


def test_template_init_records_and_evaluates_the_seed(toy):
    store = Store(toy)
    seed = store.resolve("refs/heads/gitevo/main/g000-000")
    assert seed == store.head_commit()
    note = json.loads(git(toy, "notes", "--ref", "gitevo/main", "show", seed))
    assert note["status"] == "ok" and set(note["objectives"]) == {"accuracy", "l1"}
    assert store.resolve("refs/heads/gitevo/main/best") == seed
    stats = json.loads(git(toy, "show", "gitevo/main/ledger:stats.json"))
    assert stats["generation"] == 0 and stats["reference"][0] == 0.0
    assert git(toy, "config", "notes.displayRef").strip() == "refs/notes/gitevo/main"
    assert '"status": "ok"' in git(toy, "log", "-1", "gitevo/main/g000-000")
    hook = toy / ".git" / "hooks" / "pre-commit"
    assert os.access(hook, os.X_OK) and "gitevo-hook" in hook.read_text()
    assert git(toy, "status", "--porcelain") == ""


def test_init_in_an_existing_repository(plain_repo):
    cli("init", str(plain_repo), "--files", "model.py", "--fitness",
        "python score.py {metrics}", "--objective", "score:max")
    store = Store(plain_repo)
    head = store.head_commit()
    assert store.read_file(head, "gitevo.toml").count('files = ["model.py"]') == 1
    assert store.resolve("refs/heads/gitevo/main/g000-000") == head
    assert len(store.parents(head)) == 1  # gitevo.toml is one ordinary commit on main
    note = json.loads(store.read_note("refs/notes/gitevo/main", head))
    assert note["objectives"] == {"score": 6.0}
    assert git(plain_repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("problem", ["dirty", "empty", "detached", "missing-gene"])
def test_init_refuses_bad_repositories_and_writes_nothing(tmp_path, plain_repo, problem):
    args = ["--files", "model.py", "--fitness", "python score.py {metrics}",
            "--objective", "score:max"]
    repo = plain_repo
    if problem == "dirty":
        (repo / "model.py").write_text("VALUE = 4\n")
        needle = "uncommitted changes in model.py"
    elif problem == "empty":
        repo = tmp_path / "empty"
        repo.mkdir()
        git(repo, "init", "-q")
        needle = "has no commits yet"
    elif problem == "detached":
        git(repo, "checkout", "-q", "--detach")
        needle = "HEAD is detached"
    else:
        args[1] = "nothere.py"
        needle = "nothere.py: gene file is not committed"
    before = _refs(repo)
    out = _run_cli(["init", str(repo), *args])
    assert out.returncode == 2 and needle in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert _refs(repo) == before and not (repo / "gitevo.toml").exists()


def test_template_errors(tmp_path):
    out = _run_cli(["init", str(tmp_path / "x"), "--template", "nope"])
    assert out.returncode == 2 and "unknown template 'nope' (available: " in out.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    out = _run_cli(["init", str(tmp_path / "full"), "--template", "toy"])
    assert out.returncode == 2 and "is not empty" in out.stderr


def test_template_vars_and_fidelity_are_written(tmp_path):
    repo = tmp_path / "t"
    cli("init", str(repo), "--template", "toy", "--no-eval", "--fidelity", "quick",
        "--var", "data=/some where")
    text = (repo / "gitevo.toml").read_text()
    assert 'fidelity = "quick"' in text and 'data = "/some where"' in text


def test_llm_settings_from_flags_are_validated_before_anything_is_written(tmp_path, plain_repo):
    repo = tmp_path / "t"
    cli("init", str(repo), "--template", "toy", "--no-eval", "--llm", "provider=openai",
        "--llm", "model=qwen2.5-coder", "--llm", "base_url=http://127.0.0.1:8000/v1")
    from gitevo import config as cfg
    llm = cfg.load(repo / "gitevo.toml").llm
    assert (llm.provider, llm.model, llm.base_url) == ("openai", "qwen2.5-coder",
                                                       "http://127.0.0.1:8000/v1")
    # a provider without its model: one line naming the key, and no directory left behind
    out = _run_cli(["init", str(tmp_path / "u"), "--template", "toy", "--llm",
                    "provider=anthropic"])
    assert out.returncode == 2 and "llm.model: required for provider anthropic" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "u").exists()
    out = _run_cli(["init", str(tmp_path / "v"), "--template", "toy", "--llm", "concurrency=4"])
    assert out.returncode == 2 and "--llm concurrency: not settable" in out.stderr
    before = _refs(plain_repo)
    out = _run_cli(["-C", str(plain_repo), "init", "--files", "model.py", "--fitness",
                    "python score.py {metrics}", "--objective", "score:max",
                    "--llm", "provider=command"])
    assert out.returncode == 2 and "llm.command: required for provider command" in out.stderr
    assert _refs(plain_repo) == before and not (plain_repo / "gitevo.toml").exists()


def test_pre_commit_hook_holds_human_edits_to_the_same_bar(toy):
    (toy / "model.py").write_text((toy / "model.py").read_text() + "\ndef broken(:\n")
    git(toy, "add", "model.py")
    refused = subprocess.run(["git", "commit", "-m", "human edit"], cwd=toy,
                             capture_output=True, text=True)
    assert refused.returncode != 0
    assert "gitevo pre-commit: model.py:" in refused.stderr and "syntax error" in refused.stderr
    # an edit that imports but fails the harness's check is refused too
    (toy / "model.py").write_text("def predict(x):\n    return undefined_name\n")
    git(toy, "add", "model.py")
    refused = subprocess.run(["git", "commit", "-m", "human edit"], cwd=toy,
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "NameError" in refused.stderr
    (toy / "model.py").write_text("def predict(x):\n    return 1.3 * x\n")
    git(toy, "add", "model.py")
    git(toy, "commit", "-qm", "a valid human edit")
    (toy / "notes.txt").write_text("unrelated\n")
    git(toy, "add", "notes.txt")
    git(toy, "commit", "-qm", "no gene file: no check")


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", "gitevo", *args], capture_output=True,
                          text=True)


def test_a_failing_seed_is_recorded_and_can_be_replaced(plain_repo):
    (plain_repo / "model.py").write_text("VALUE = 1 / 0\n\n\ndef f(x):\n    return x + 1\n")
    git(plain_repo, "commit", "-qam", "broken")
    out = _run_cli(["init", str(plain_repo), "--files", "model.py", "--fitness",
                    "python score.py {metrics}", "--objective", "score:max"])
    assert out.returncode == 2
    assert "seed g000-000" in out.stderr and "is invalid: import failed" in out.stderr
    assert "ZeroDivisionError" in out.stderr and "gitevo seed" in out.stderr
    store = Store(plain_repo)
    broken = store.resolve("refs/heads/gitevo/main/g000-000")
    assert json.loads(store.read_note("refs/notes/gitevo/main", broken))["status"] == "invalid"
    assert store.resolve("refs/heads/gitevo/main/ledger") is None
    (plain_repo / "model.py").write_text("VALUE = 5\n\n\ndef f(x):\n    return x + 1\n")
    git(plain_repo, "commit", "-qam", "fixed")
    cli("-C", str(plain_repo), "seed")
    fixed = store.resolve("refs/heads/gitevo/main/g000-000")
    assert fixed == store.head_commit() != broken
    assert json.loads(git(plain_repo, "show", "gitevo/main/ledger:population.json"))[0][
        "objectives"] == {"score": 10.0}
    out = _run_cli(["-C", str(plain_repo), "seed"])
    assert out.returncode == 2 and "already has a seed and a ledger" in out.stderr


def test_no_eval_records_the_seed_branch_and_the_first_generation_evaluates_it(tmp_path):
    repo = tmp_path / "t"
    out = cli("init", str(repo), "--template", "toy", "--no-eval")
    store = Store(repo)
    seed = store.head_commit()
    assert f"seed {seed[:10]} recorded as gitevo/main/g000-000" in out
    assert "not evaluated yet: `gitevo seed` evaluates it" in out
    # git shows the run from the start: the seed's branch, no note, no ledger yet
    assert store.resolve("refs/heads/gitevo/main/g000-000") == seed
    assert not git(repo, "notes", "--ref", "gitevo/main", "list").strip()
    assert "refs/heads/gitevo/main/ledger" not in _refs(repo)
    status = cli("-C", str(repo), "status")
    assert f"seed g000-000 ({seed[:10]}) is recorded but not evaluated yet" in status
    assert "`gitevo seed` evaluates it" in status
    out = cli("-C", str(repo), "run", "--generations", "2", "--n", "2")
    assert f"seed g000-000 ({seed[:10]}) is recorded but not evaluated yet: evaluating it " \
           "first" in out
    note = json.loads(git(repo, "notes", "--ref", "gitevo/main", "show", seed))
    assert note["status"] == "ok"
    assert json.loads(git(repo, "show", "gitevo/main/ledger:stats.json"))["generation"] == 2
    assert "generation 2" in cli("-C", str(repo), "status")


def test_a_run_without_a_seed_names_the_command_that_records_one(tmp_path):
    repo = tmp_path / "t"
    cli("init", str(repo), "--template", "toy", "--no-eval")
    before = _refs(repo)
    for args in (("run", "--generations", "1"), ("generation",), ("status",)):
        out = _run_cli(["-C", str(repo), "--run", "other", *args])
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert lines[0] == (f"gitevo: error: {repo}: run 'other' has no seed yet (`gitevo "
                            "seed` records HEAD as its seed and evaluates it)")
    assert _refs(repo) == before


def test_init_refuses_a_second_seed_for_the_same_run(tmp_path, plain_repo):
    git(plain_repo, "branch", "gitevo/main/g000-000")  # a run's seed already here
    git(plain_repo, "commit", "-q", "--allow-empty", "-m", "later")
    out = _run_cli(["init", str(plain_repo), "--files", "model.py", "--fitness",
                    "python score.py {metrics}", "--objective", "score:max", "--no-eval"])
    assert out.returncode == 2 and "run 'main' already has a seed" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert git(plain_repo, "log", "-1", "--format=%s").strip() == "later"  # nothing committed
    assert not (plain_repo / "gitevo.toml").exists()
