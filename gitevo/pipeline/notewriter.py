"""Fitness notes written as results come, in groups: at most one notes commit per PACE.

A result is written at once when the writer's last notes commit is PACE old, else with
whatever else arrives until it is: a crash loses at most PACE of results (they are
evaluated again), while a burst of fast evaluations costs one notes commit instead of
one each. Each commit rewrites the notes tree's root and the commit chain, a cost that
grows with the run; with evaluations that take minutes every note is written at once.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gitevo.execution.job import Job
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import Store

Written = Callable[[Job, Evaluation], None]  # called once each note is in the repository

_CLOSE = None
PACE = 0.05  # seconds from one notes commit of a writer to its next, at least


class NoteWriter:
    """A thread with a Store of its own (pygit2 repositories are not shared between
    threads) that writes each result's note on `ref`, then removes the job's workdir."""

    def __init__(self, root: Path, ref: str, written: Written):
        self.root, self.ref, self.written = root, ref, written
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gitevo-notes", daemon=True)
        self._thread.start()

    def put(self, job: Job, result: Evaluation) -> None:
        """Queue `result` as the note of `job.commit`."""
        if job.commit is None:
            raise ValueError(f"{job.ident}: a job without its commit has nowhere for its note")
        if self._error is not None:
            raise self._error
        self._queue.put((job, result))

    def close(self) -> None:
        """Write what is queued, stop, and raise the writer's error if it had one."""
        self._queue.put(_CLOSE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        store = Store(self.root)
        closing = False
        last = 0.0  # time.monotonic() when the last write began
        while not closing:
            group = self._gather(last + PACE)
            last = time.monotonic()
            closing = _CLOSE in group
            group = [item for item in group if item is not _CLOSE]
            if group and self._error is None:
                try:
                    self._write(store, group)
                except BaseException as exc:  # noqa: BLE001 - raised by put() or close()
                    self._error = exc

    def _gather(self, until: float) -> list:
        """The next item, and what else comes before `until` (the close ends it at once)."""
        group = [self._queue.get()]
        while group[-1] is not _CLOSE:
            try:
                group.append(self._queue.get(timeout=max(0.0, until - time.monotonic())))
            except queue.Empty:
                break
        return group

    def _write(self, store: Store, group: list[tuple[Job, Evaluation]]) -> None:
        ids = ", ".join(job.ident for job, _ in group)
        store.write_notes(self.ref, {job.commit: note_text(result) for job, result in group},
                          f"gitevo: fitness of {ids}")
        for job, result in group:
            store.remove_dir(job.workdir)
            self.written(job, result)


def note_text(result: Evaluation) -> str:
    return json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n"
