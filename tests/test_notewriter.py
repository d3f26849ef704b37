"""Fitness notes are written as results come, one notes commit per PACE at most: a burst
shares a commit, none is lost, and each result's callback comes after its note exists."""

from __future__ import annotations

import threading
import time

from gitevo.execution.job import Job
from gitevo.pipeline.notewriter import NoteWriter
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import Store
from tests.conftest import git

REF = "refs/notes/gitevo/main"


def _store(tmp_path) -> tuple[Store, list[str]]:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commits = []
    for i in range(12):
        (repo / "model.py").write_text(f"x = {i}\n")
        git(repo, "add", "model.py")
        git(repo, "commit", "-qm", f"c{i}")
        commits.append(git(repo, "rev-parse", "HEAD").strip())
    return Store(repo), commits


def _job(tmp_path, i: int, commit: str) -> Job:
    workdir = tmp_path / "trees" / f"g001-{i:03d}"
    workdir.mkdir(parents=True)
    return Job(f"g001-{i:03d}", workdir, ("model.py",), "true", None, 10.0, "default", {},
               ("accuracy",), commit=commit)


def test_a_burst_of_results_shares_notes_commits_and_loses_none(tmp_path):
    store, commits = _store(tmp_path)
    written: list[tuple[str, str | None]] = []
    first = threading.Event()

    def done(job: Job, result: Evaluation) -> None:
        # the note is in the repository before anyone hears of the result
        written.append((job.ident, Store(store.root).read_note(REF, job.commit)))
        first.set()

    writer = NoteWriter(store.root, REF, done)
    jobs = [_job(tmp_path, i, c) for i, c in enumerate(commits)]
    writer.put(jobs[0], Evaluation("ok", {"accuracy": 0.0}))
    assert first.wait(10)  # the first result, alone, is written without waiting for more
    for i, job in enumerate(jobs[1:], 1):  # one every 5 ms: written as they come, each
        time.sleep(0.005)                   # would be a commit of its own
        writer.put(job, Evaluation("ok", {"accuracy": i / 10}))
    writer.close()
    assert [ident for ident, _ in written] == [job.ident for job in jobs]
    assert all(note and '"status": "ok"' in note for _, note in written)
    assert not any(job.workdir.exists() for job in jobs)  # each tree went with its note
    # eleven results over 55 ms, about a PACE: a few more commits, never one each
    commits_made = int(git(store.root, "rev-list", "--count", REF).strip())
    assert 2 <= commits_made <= 5, commits_made
