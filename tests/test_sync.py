"""`gitevo promote` and `gitevo sync`: real clones exchanging a run through a bare remote."""

from __future__ import annotations

import json
from pathlib import Path

from gitevo.store import ledger
from gitevo.store.gitstore import Store
from tests.conftest import cli, copy_repo, git

NAMESPACES = ("refs/heads/gitevo/", "refs/notes/gitevo/")


def _refs(repo: Path, *prefixes: str) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", *prefixes)
    return dict(line.split() for line in out.splitlines())


def _bare(path: Path) -> Path:
    git(path.parent, "init", "-q", "--bare", "-b", "main", path.name)
    return path


def _note(repo: Path, ident: str) -> dict:
    return json.loads(git(repo, "notes", "--ref", "gitevo/main", "show",
                          f"gitevo/main/{ident}"))


def _generation(repo: Path) -> int:
    stats = json.loads(git(repo, "show", "gitevo/main/ledger:stats.json"))
    return stats["generation"]


def _assert_clean(repo: Path) -> None:
    """Consistent, and no scratch refs or notes merge state left behind."""
    git(repo, "fsck", "--strict")
    assert _refs(repo, "refs/gitevo-sync/", "refs/notes/gitevo-sync/") == {}
    assert not list((repo / ".git").glob("NOTES_MERGE_*"))
    assert not (repo / ".git" / "refs" / "gitevo-sync").exists()
    assert not (repo / ".git" / "refs" / "notes" / "gitevo-sync").exists()


def test_promote_moves_best_and_push_lands_it(toy_run, tmp_path):
    repo = copy_repo(toy_run, tmp_path / "toy")
    best = git(repo, "rev-parse", "gitevo/main/best").strip()
    others = [i for i in ("g001-000", "g001-001", "g002-002", "g003-004")
              if _note(repo, i)["status"] == "ok"
              and git(repo, "rev-parse", f"gitevo/main/{i}").strip() != best]
    first, second = others[:2]
    out = cli("-C", str(repo), "promote", first)
    commit = git(repo, "rev-parse", f"gitevo/main/{first}").strip()
    assert f"is {first} ({commit[:10]}) (was {best[:10]})" in out
    assert git(repo, "rev-parse", "gitevo/main/best").strip() == commit

    remote = _bare(tmp_path / "remote.git")
    out = cli("-C", str(repo), "promote", first, "--push", str(remote))
    assert "pushed refs/heads/gitevo/main/best" in out
    local = _refs(repo, "refs/heads/gitevo/main/best", "refs/notes/gitevo/")
    assert _refs(remote) == local  # best and both notes refs, nothing else
    # champions need not descend from each other: the next push moves best sideways
    cli("-C", str(repo), "promote", second, "--push", str(remote))
    assert git(remote, "rev-parse", "refs/heads/gitevo/main/best").strip() == \
        git(repo, "rev-parse", f"gitevo/main/{second}").strip()
    # the remote gains a note this clone lacks: the push is refused whole, best included
    notes = git(repo, "rev-parse", "refs/notes/gitevo/main").strip()
    git(repo, "notes", "--ref", "gitevo/main", "append", "-m", "elsewhere", "gitevo/main/g001-000")
    git(repo, "push", "-q", str(remote), "refs/notes/gitevo/main")
    git(repo, "update-ref", "refs/notes/gitevo/main", notes)
    out = cli("-C", str(repo), "promote", first, "--push", str(remote), expect=2)
    assert "refused the push: refs/notes/gitevo/main (" in out and "gitevo sync" in out
    assert git(remote, "rev-parse", "refs/heads/gitevo/main/best").strip() != commit
    assert "no individual 'g042-000'" in cli("-C", str(repo), "promote", "g042-000", expect=2)
    assert "next generation moves best again" in " ".join(cli("promote", "--help").split())
    git(repo, "fsck", "--strict")


def test_two_clones_continue_one_run_through_a_bare_remote(toy_run, tmp_path):
    a = copy_repo(toy_run, tmp_path / "a")
    remote = _bare(tmp_path / "remote.git")
    git(a, "push", "-q", str(remote), "main")  # the code and gitevo.toml, for cloning
    out = cli("-C", str(a), "sync", str(remote))
    assert "fetched 0 individual(s), pushed 25" in out
    assert _refs(remote, *NAMESPACES) == _refs(a, *NAMESPACES)

    git(tmp_path, "clone", "-q", str(remote), "b")
    b = tmp_path / "b"
    out = cli("-C", str(b), "sync", "origin")
    assert "fetched 25 individual(s), pushed 0" in out and "a fresh clone" in out
    assert git(b, "config", "notes.displayRef").strip() == "refs/notes/gitevo/main"
    assert "gitevo-hook" in (b / ".git" / "hooks" / "pre-commit").read_text()
    assert "accuracy" in git(b, "log", "-1", "gitevo/main/best")  # the note shows inline

    # both clones check the same individual, each recording its verification
    for repo in (a, b):
        assert "PASSED" in cli("-C", str(repo), "verify", "g002-001")
    cli("-C", str(b), "generation")
    out = cli("-C", str(b), "sync", "origin")
    assert "pushed 8" in out and "merged" not in out
    out = cli("-C", str(a), "sync", str(remote))
    assert "fetched 8 individual(s)" in out and "ledger fast-forwarded to generation 4" in out
    assert _generation(a) == 4
    mine, theirs = (v for v in _note(a, "g002-001")["verifications"])
    assert mine["passed"] and theirs["passed"]  # the merged note holds both
    assert "pushed refs/notes/gitevo/main" in out  # and the remote gets the merge

    cli("-C", str(a), "generation")
    cli("-C", str(a), "sync", str(remote))
    out = cli("-C", str(b), "sync", "origin")
    # children of generation 5 (duplicates of existing code are refused, never branched)
    made = sum(1 for r in ledger.read(Store(a), "main").offspring if r.get("commit"))
    assert f"fetched {made} individual(s), pushed 0" in out and "fresh clone" not in out
    assert _generation(b) == 5
    assert _refs(a, *NAMESPACES) == _refs(b, *NAMESPACES) == _refs(remote, *NAMESPACES)
    assert len(_note(b, "g002-001")["verifications"]) == 2
    for repo in (a, b):
        _assert_clean(repo)
    git(remote, "fsck", "--strict")


def test_a_divergent_individual_is_refused_with_nothing_changed(toy_run, tmp_path):
    a = copy_repo(toy_run, tmp_path / "a")
    remote = _bare(tmp_path / "remote.git")
    git(a, "push", "-q", str(remote), "main")
    cli("-C", str(a), "sync", str(remote))
    git(tmp_path, "clone", "-q", str(remote), "b")
    b = tmp_path / "b"
    cli("-C", str(b), "sync", "origin")
    # both clones evolve generation 4 on their own; B with another seed, so its
    # children differ from A's under the same ids
    config = b / "gitevo.toml"
    config.write_text(config.read_text().replace("seed = 0", "seed = 7"))
    cli("-C", str(a), "generation")
    cli("-C", str(b), "generation")
    cli("-C", str(a), "sync", str(remote))
    before_b, before_remote = _refs(b), _refs(remote)
    out = cli("-C", str(b), "sync", "origin", expect=2)
    assert len(out.strip().splitlines()) == 1
    assert "g004-000" in out and "--run NAME" in out and "nothing was changed" in out
    assert _refs(b) == before_b and _refs(remote) == before_remote
    _assert_clean(b)

    out = cli("-C", str(b), "sync", str(tmp_path / "nowhere"), expect=2)
    assert "cannot fetch from" in out and len(out.strip().splitlines()) == 1
    _assert_clean(b)
