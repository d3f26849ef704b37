"""The git layer against real repositories: objects, ref transactions, notes, ledger, lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pygit2
import pytest

from gitevo.store.gitstore import GitError, LockedError, Store, init_repository
from tests.conftest import git


@pytest.fixture
def store(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "model.py").write_text("def f():\n    return 1\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "data.txt").write_text("keep\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    return Store(repo)


def test_not_a_repository(tmp_path):
    with pytest.raises(GitError, match="not inside a git repository"):
        Store(tmp_path)


def test_commit_replaces_one_file_and_keeps_the_rest(store):
    head = store.head_commit()
    tree = store.tree_with(head, {"model.py": "def f():\n    return 2\n",
                                  "sub/data.txt": "changed\n"})
    child = store.commit(tree, [head], "change\n\nGitevo-Id: g001-000\n")
    assert store.read_file(child, "model.py") == "def f():\n    return 2\n"
    assert store.read_file(child, "sub/data.txt") == "changed\n"
    assert store.parents(child) == [head]
    assert store.trailers(child) == {"Gitevo-Id": "g001-000"}
    assert store.resolve("HEAD") == head  # writing objects moves no ref
    git(store.root, "cat-file", "-e", child)


def test_merge_commit_has_two_parents(store):
    head = store.head_commit()
    a = store.commit(store.tree_with(head, {"model.py": "a\n"}), [head], "a")
    b = store.commit(store.tree_with(head, {"model.py": "b\n"}), [head], "b")
    merge = store.commit(store.tree_with(a, {"model.py": "ab\n"}), [a, b], "merge")
    assert git(store.root, "rev-list", "--parents", "-n1", merge).split() == [merge, a, b]


def test_update_refs_is_all_or_nothing(store):
    head = store.head_commit()
    store.update_refs([("refs/heads/gitevo/main/g000-000", head, None)], "seed")
    other = store.commit(store.tree_with(head, {"model.py": "x\n"}), [head], "x")
    with pytest.raises(GitError, match="expected absent"):
        store.update_refs([("refs/heads/gitevo/main/g001-000", other, None),
                           ("refs/heads/gitevo/main/g000-000", other, None)], "bad")
    assert store.resolve_ref("refs/heads/gitevo/main/g001-000") is None
    store.update_refs([("refs/heads/gitevo/main/g001-000", other, None),
                       ("refs/heads/gitevo/main/g000-000", other, head)], "good")
    assert store.refs_under("refs/heads/gitevo/main/") == {
        "refs/heads/gitevo/main/g000-000": other, "refs/heads/gitevo/main/g001-000": other}


def test_notes_batch_is_one_commit_and_git_reads_it(store):
    head = store.head_commit()
    other = store.commit(store.tree_with(head, {"model.py": "x\n"}), [head], "x")
    store.write_notes("refs/notes/gitevo/main", {head: '{"status": "ok"}\n',
                                                 other: '{"status": "crashed"}\n'}, "batch")
    assert git(store.root, "rev-list", "--count", "refs/notes/gitevo/main").strip() == "1"
    assert git(store.root, "notes", "--ref", "gitevo/main", "show", other) == \
        '{"status": "crashed"}\n'
    store.write_notes("refs/notes/gitevo/main", {head: '{"status": "timeout"}\n'}, "again")
    assert store.read_notes("refs/notes/gitevo/main") == {
        head: '{"status": "timeout"}\n', other: '{"status": "crashed"}\n'}
    git(store.root, "fsck", "--strict")


def test_notes_and_branches_move_in_one_transaction(store):
    head = store.head_commit()
    child = store.commit(store.tree_with(head, {"model.py": "x\n"}), [head], "x")
    notes, branch = "refs/notes/gitevo/main-llm", "refs/heads/gitevo/main/g001-000"
    store.write_notes(notes, {child: "first\n"}, "one", with_refs=[(branch, child, None)])
    assert store.resolve_ref(branch) == child
    assert store.read_note(notes, child) == "first\n"
    before = store.resolve_ref(notes)
    started = time.monotonic()
    # the branch exists: the whole write fails, the notes ref stays, and nothing is retried
    with pytest.raises(GitError, match="expected absent"):
        store.write_notes(notes, {child: "second\n"}, "two", with_refs=[(branch, head, None)])
    assert time.monotonic() - started < 0.5
    assert store.resolve_ref(notes) == before and store.resolve_ref(branch) == child
    assert store.read_note(notes, child) == "first\n"
    # with no note to write, the refs still move (and the notes ref stays)
    other = "refs/heads/gitevo/main/g001-009"
    store.write_notes(notes, {}, "none", with_refs=[(other, head, None)])
    assert store.resolve_ref(other) == head and store.resolve_ref(notes) == before


def test_notes_with_branches_wait_out_a_held_notes_ref_lock(store):
    head = store.head_commit()
    child = store.commit(store.tree_with(head, {"model.py": "y\n"}), [head], "y")
    notes, branch = "refs/notes/gitevo/main-llm", "refs/heads/gitevo/main/g001-001"
    store.write_notes(notes, {head: "seed\n"}, "first")
    lock = Path(store.repo.path) / (notes + ".lock")
    lock.write_text("")  # another writer (a verify, a gc) holds the notes ref a moment
    threading.Timer(0.1, lock.unlink).start()
    store.write_notes(notes, {child: "child\n"}, "second", with_refs=[(branch, child, None)])
    assert store.resolve_ref(branch) == child and store.read_note(notes, child) == "child\n"


def test_notes_in_a_fanned_out_tree_still_update(store):
    """git stores notes as ab/cdef... once there are many; writing must respect that."""
    head = store.head_commit()
    other = store.commit(store.tree_with(head, {"model.py": "x\n"}), [head], "x")
    repo = store.repo
    inner = repo.TreeBuilder()
    inner.insert(head[2:], repo.create_blob(b"old\n"), pygit2.enums.FileMode.BLOB)
    outer = repo.TreeBuilder()
    outer.insert(head[:2], inner.write(), pygit2.enums.FileMode.TREE)
    notes = store.commit(str(outer.write()), [], "fanned out")
    store.update_refs([("refs/notes/gitevo/main", notes, None)], "setup")
    assert git(store.root, "notes", "--ref", "gitevo/main", "show", head) == "old\n"
    store.write_notes("refs/notes/gitevo/main", {head: "new\n", other: "other\n"}, "update")
    assert git(store.root, "notes", "--ref", "gitevo/main", "show", head) == "new\n"
    assert store.read_notes("refs/notes/gitevo/main") == {head: "new\n", other: "other\n"}


def test_notes_fan_out_so_a_write_does_not_rewrite_every_note(store):
    head = store.head_commit()
    tree = store.tree_id(head)
    children = [store.commit(tree, [head], f"child {i}") for i in range(300)]
    ref = "refs/notes/gitevo/main"
    for i in range(0, 300, 10):
        store.write_notes(ref, {c: f"{c}\n" for c in children[i:i + 10]}, f"notes {i}")
    root = store.repo[store.resolve_ref(ref)].peel(pygit2.Tree)
    # one subtree per leading byte, each holding the few notes that start with it
    assert len(root) <= 256 and all(e.filemode == pygit2.enums.FileMode.TREE for e in root)
    assert max(len(store.repo[e.id]) for e in root) < 20
    listed = git(store.root, "notes", "--ref", "gitevo/main", "list").split()
    assert len(listed) == 600 and set(listed[1::2]) == set(children)
    assert git(store.root, "notes", "--ref", "gitevo/main", "show", children[123]) == \
        f"{children[123]}\n"
    assert store.read_note(ref, children[7]) == f"{children[7]}\n"
    assert len(store.read_notes(ref)) == 300
    git(store.root, "fsck", "--strict")


def test_new_notes_stay_flat_beside_flat_notes_of_the_same_prefix(store):
    """After a `git notes merge` the notes are flat again; libgit2 finds a flat note only
    while no subtree shares its first two characters."""
    head = store.head_commit()
    tree = store.tree_id(head)
    children = [store.commit(tree, [head], f"child {i}") for i in range(80)]
    ref = "refs/notes/gitevo/main"
    flat = store.repo.TreeBuilder()  # as git writes a small notes tree
    for c in children[:40]:
        flat.insert(c, store.repo.create_blob(f"flat {c}\n".encode()),
                    pygit2.enums.FileMode.BLOB)
    store.update_refs([(ref, store.commit(str(flat.write()), [], "flat"), None)], "setup")
    store.write_notes(ref, {c: f"new {c}\n" for c in children[40:]}, "more")
    assert all(store.read_note(ref, c) for c in children)
    assert len(store.read_notes(ref)) == 80
    root = store.repo[store.resolve_ref(ref)].peel(pygit2.Tree)
    subtrees = {e.name for e in root if e.filemode == pygit2.enums.FileMode.TREE}
    assert subtrees and not any(e.name[:2] in subtrees for e in root
                                if e.filemode != pygit2.enums.FileMode.TREE)
    git(store.root, "fsck", "--strict")


def test_export_tree_writes_files_and_modes(store, tmp_path):
    (store.root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(store.root / "run.sh", 0o755)
    git(store.root, "add", "run.sh")
    git(store.root, "commit", "-qm", "script")
    dest = tmp_path / "out"
    store.export_tree(store.head_commit(), dest)
    assert (dest / "sub" / "data.txt").read_text() == "keep\n"
    assert os.access(dest / "run.sh", os.X_OK) and not (dest / ".git").exists()


def test_ledger_chain_and_flat_tree(store):
    first = store.commit(store.flat_tree({"stats.json": "{}\n"}), [], "gen 0")
    second = store.commit(store.flat_tree({"stats.json": "{\"g\": 1}\n"}), [first], "gen 1")
    assert list(store.first_parent_chain(second)) == [second, first]
    assert store.read_tree_files(second) == {"stats.json": "{\"g\": 1}\n"}


def test_lock_refuses_a_live_holder_and_recovers_a_dead_one(store):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        store.state_dir.mkdir(parents=True, exist_ok=True)
        (store.state_dir / "lock").write_text(f"{holder.pid} {os.uname().nodename} 0\n")
        with pytest.raises(LockedError, match=f"locked by pid {holder.pid}"), store.lock():
            pass
    finally:
        holder.kill()
        holder.wait()
    with store.lock():  # the holder is dead now: its stale lock is taken over
        assert (store.state_dir / "lock").read_text().split()[0] == str(os.getpid())
    assert not (store.state_dir / "lock").exists()


def test_init_repository_and_dirty_paths(tmp_path):
    store = init_repository(tmp_path / "new")
    assert store.repo.head_is_unborn
    (store.root / "a.txt").write_text("x")
    assert store.is_dirty() == ["a.txt"]


def test_stale_ref_locks_are_removed(store):
    head = store.head_commit()
    store.update_refs([("refs/heads/gitevo/main/g000-000", head, None)], "seed")
    lock = store.root / ".git" / "refs" / "heads" / "gitevo" / "main" / "g001-000.lock"
    lock.write_text(head + "\n")  # as a process killed mid-transaction leaves it
    with pytest.raises(Exception, match="lock"):
        store.update_refs([("refs/heads/gitevo/main/g001-000", head, None)], "blocked")
    assert store.stale_ref_locks("main") == [lock] and not lock.exists()
    store.update_refs([("refs/heads/gitevo/main/g001-000", head, None)], "fine now")


def test_a_ref_lock_that_goes_away_by_itself_is_not_stale(store):
    """A verify writing a note without the run's lock holds a ref lock for milliseconds;
    recovery gives a young lock time to vanish instead of deleting it under its owner."""
    head = store.head_commit()
    notes = store.root / ".git" / "refs" / "notes" / "gitevo"
    notes.mkdir(parents=True)
    lock = notes / "main.lock"
    lock.write_text(head + "\n")
    owner = subprocess.Popen([sys.executable, "-c", "import os, sys, time; time.sleep(0.5); "
                              "os.unlink(sys.argv[1])", str(lock)])
    started = time.monotonic()
    assert store.stale_ref_locks("main") == []
    owner.wait()
    assert time.monotonic() - started >= 0.4


def test_commits_between_is_git_log_range_oldest_first(store):
    base = store.head_commit()
    a = store.commit(store.tree_with(base, {"model.py": "a\n"}), [base], "a")
    b = store.commit(store.tree_with(base, {"model.py": "b\n"}), [base], "b")
    merge = store.commit(store.tree_with(a, {"model.py": "ab\n"}), [a, b], "merge")
    between = store.commits_between(base, merge)
    assert set(between) == {a, b, merge} and between[-1] == merge
    expected = git(store.root, "log", "--format=%H", f"{base}..{merge}").split()
    assert sorted(between) == sorted(expected)


def test_notes_write_that_loses_a_race_is_redone_on_top_of_the_winner(store):
    head = store.head_commit()
    other = store.commit(store.tree_with(head, {"model.py": "x\n"}), [head], "x")
    rival = Store(store.root)  # another writer: a verify, or a generation's evaluations
    seen = []

    def edit(current):
        if not seen:  # the rival moves the notes ref between our read and our swap
            rival.write_notes("refs/notes/gitevo/main", {other: "theirs\n"}, "rival")
        seen.append(current)
        return (current or "") + "ours\n"

    store.write_notes("refs/notes/gitevo/main", {head: "first\n"}, "first")
    store.edit_notes("refs/notes/gitevo/main", {head: edit}, "ours")
    assert seen == ["first\n", "first\n"]  # redone from the notes as they were then
    assert store.read_notes("refs/notes/gitevo/main") == {head: "first\nours\n",
                                                          other: "theirs\n"}
    assert git(store.root, "rev-list", "--count", "refs/notes/gitevo/main").strip() == "3"
    git(store.root, "fsck", "--strict")


def test_two_processes_writing_notes_at_once_lose_none(store):
    head = store.head_commit()
    commits = [store.commit(store.tree_with(head, {"model.py": f"{i}\n"}), [head], str(i))
               for i in range(40)]
    go = store.root / "go"  # both writers start together, so their writes interleave
    script = ("import os, sys, time\nfrom gitevo.store.gitstore import Store\n"
              "s = Store(sys.argv[1])\n"
              "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
              "for c in sys.argv[3:]:\n"
              "    s.write_notes('refs/notes/gitevo/main', {c: c + '\\n'}, 'w')\n")
    writers = [subprocess.Popen([sys.executable, "-c", script, str(store.root), str(go), *half],
                                cwd=os.getcwd()) for half in (commits[::2], commits[1::2])]
    time.sleep(0.5)
    go.touch()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    assert store.read_notes("refs/notes/gitevo/main") == {c: c + "\n" for c in commits}
    git(store.root, "fsck", "--strict")
