"""Asynchronous promotion up a fidelity cascade: one stream of evaluations for every
rung, in which a child goes on to the next rung as soon as the rung's rule can place it
(`cascade.due`: once it is certain to go on, or by ASHA's rule), so that no worker
waits for a whole rung to end.

The main thread takes every decision and writes every screening note; a pump thread
turns children into first-rung jobs as they come (the LLM may still be writing them),
and a runner thread drives the executor, which takes the most advanced job waiting each
time a worker is free. Order on disk is what makes a rerun after kill -9 safe: a
screening result is written before any decision reads it, and a promotion is recorded
(by `decide`) before its evaluation is queued.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from gitevo.core.events import Events
from gitevo.execution.executors import Executor
from gitevo.execution.job import Job
from gitevo.pipeline.cascade import Stage
from gitevo.store.fitness import Evaluation

Child = tuple[str, bool | None]  # (id, validated); validated None: the proposal was refused


@dataclass(frozen=True)
class Steps:
    """What the ladder asks of the generation it runs for."""

    jobs: Callable[[Iterable[Child], Stage], Iterator[Job]]  # exported, not yet noted
    # the ids newly promoted from a stage, recorded, given how many children may still
    # come in there (0: none, it is whole; None: not known yet)
    decide: Callable[[Stage, int | None], list[str]]
    write: Callable[[Stage, Job, Evaluation], None]  # the result's note
    started: Callable[[Job], None]


class Ladder:
    def __init__(self, stages: list[Stage], executor: Executor, events: Events,
                 steps: Steps):
        self.stages, self.executor, self.events, self.steps = stages, executor, events, steps
        self._ready: queue.PriorityQueue = queue.PriorityQueue()
        self._inbox: queue.Queue = queue.Queue()
        self._order = itertools.count()
        self._pending = {s.number: 0 for s in stages}  # queued or running, per stage
        self._stage_of: dict[int, tuple[Job, Stage]] = {}
        self._complete: set[int] = set()  # stages every result and decision of is in
        self._changed: set[int] = set()  # stages with results no decision has seen yet
        self._children_in = False
        self._runner_ended = False
        self._expected = 0  # evaluations known to come, for the progress display
        self._incoming = 0  # children that may still come to the first stage, at most

    def run(self, children: Iterable[Child], count: int,
            waiting: list[tuple[str, Stage]]) -> None:
        """Evaluate `children` (`count` of them) at the first stage and every promotion
        from there on; `waiting`: children already promoted to a stage, not yet evaluated
        there (an earlier process recorded the promotion and was stopped)."""
        self._expected = self._incoming = count
        for ident, stage in waiting:
            self._enqueue(ident, stage)
        self._changed = {s.number for s in self.stages}  # decide on what is already in
        self._emit_count()
        stop = threading.Event()
        threads = [threading.Thread(target=self._pump, args=(iter(children), stop),
                                    name="gitevo-children", daemon=True),
                   threading.Thread(target=self._drive, name="gitevo-runner", daemon=True)]
        for thread in threads:
            thread.start()
        try:
            self._loop()
        finally:
            stop.set()
            self._ready.put((-math.inf, next(self._order), None))  # start nothing more
            self._drain()

    # ---- the main thread ---------------------------------------------------------------

    def _loop(self) -> None:
        while not self._done():
            kind, *rest = self._inbox.get()
            if kind == "queued":
                self._track(*rest)
                self._incoming -= 1
            elif kind == "refused":
                self._expected -= 1
                self._incoming -= 1
                self._emit_count()
            elif kind == "children_in":
                self._children_in = True
                self._changed.add(1)
            elif kind == "result":
                self._result(*rest)
            elif kind == "error":
                raise rest[0]
            else:  # the runner ended before the cascade did: it cannot go on
                self._runner_ended = True
                raise RuntimeError("the executor stopped with evaluations still to run")
            self._advance()

    def _drain(self) -> None:
        """Write the results of the evaluations still running, until the runner ends,
        and raise what went wrong in a thread (after the main thread's own error)."""
        error = None
        while not self._runner_ended:
            kind, *rest = self._inbox.get()
            if kind == "done":
                self._runner_ended = True
            elif kind == "result":
                self._write(*rest)
            elif kind == "error":
                error = error or rest[0]
        if error is not None:
            raise error

    def _track(self, job: Job, stage: Stage) -> None:
        self._stage_of[id(job)] = (job, stage)
        self._pending[stage.number] += 1

    def _result(self, job: Job, result: Evaluation) -> None:
        stage = self._write(job, result)
        self._pending[stage.number] -= 1
        self._changed.add(stage.number)

    def _write(self, job: Job, result: Evaluation) -> Stage:
        _, stage = self._stage_of.pop(id(job))
        self.steps.write(stage, job, result)
        return stage

    def _advance(self) -> None:
        """Decide on every stage that has news, lowest first, and queue who goes on; a
        stage is complete once the one before it is and none of its evaluations is left."""
        for stage, after in zip(self.stages, self.stages[1:], strict=False):
            remaining = self._remaining(stage)
            if stage.number in self._changed or (remaining == 0 and
                                                 stage.number not in self._complete):
                self._changed.discard(stage.number)
                for ident in self.steps.decide(stage, remaining):
                    self._enqueue(ident, after)
            if remaining == 0:
                self._complete.add(stage.number)

    def _remaining(self, stage: Stage) -> int | None:
        """How many children may still come in at `stage`, at most: the ones queued or
        running there, and for the first stage the ones still to arrive; None while the
        stage before is undecided (so is the number it promotes)."""
        if stage.number == 1:
            return self._pending[1] + (0 if self._children_in else max(0, self._incoming))
        if stage.number - 1 not in self._complete:
            return None
        return self._pending[stage.number]

    def _is_complete(self, stage: Stage) -> bool:
        return self._remaining(stage) == 0

    def _done(self) -> bool:
        return all(self._is_complete(s) for s in self.stages)

    def _enqueue(self, ident: str, stage: Stage) -> None:
        for job in self.steps.jobs([(ident, False)], stage):
            self._track(job, stage)
            self._ready.put((-stage.number, next(self._order), job))
            self._expected += 1
            self._emit_count()

    def _emit_count(self) -> None:
        self.events.emit("evaluating", count=self._expected, workers=self.executor.workers)

    # ---- the other threads -------------------------------------------------------------

    def _pump(self, children: Iterator[Child], stop: threading.Event) -> None:
        first = self.stages[0]
        try:
            for ident, validated in children:
                if stop.is_set():
                    return
                if validated is None:
                    self._inbox.put(("refused",))
                    continue
                for job in self.steps.jobs([(ident, validated)], first):
                    self._inbox.put(("queued", job, first))  # tracked before it can end
                    self._ready.put((-first.number, next(self._order), job))
            self._inbox.put(("children_in",))
        except BaseException as exc:  # noqa: BLE001 - raised by the main thread
            self._inbox.put(("error", exc))

    def _drive(self) -> None:
        try:
            for job, result in self.executor.run(self._jobs(), on_start=self.steps.started):
                self._inbox.put(("result", job, result))
        except BaseException as exc:  # noqa: BLE001 - raised by the main thread
            self._inbox.put(("error", exc))
        finally:
            self._inbox.put(("done",))

    def _jobs(self) -> Iterator[Job]:
        while (job := self._ready.get()[2]) is not None:
            yield job
