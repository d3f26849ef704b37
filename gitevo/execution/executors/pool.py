"""The loop every executor shares: take jobs as they come, run at most N at once, hand back
each result as soon as it is known.

Jobs are pulled in a feeder thread because the iterator may block for minutes (children
still being written by the LLM) while earlier evaluations finish: their notes must not
wait for the next child.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from gitevo.execution.job import Job
from gitevo.store.fitness import Evaluation

RunOne = Callable[[Job], Evaluation]
OnStart = Callable[[Job], None]


def run_pool(jobs: Iterable[Job], slots: int, run_one: RunOne,
             on_start: OnStart | None = None) -> Iterator[tuple[Job, Evaluation]]:
    """Yield (job, evaluation) as each ends, with at most `slots` jobs taken and unfinished.

    `run_one` runs in a worker thread and may block for as long as the evaluation takes
    (a subprocess here, a task on a cluster). An exception from `jobs` or `run_one` is
    raised here once the evaluations already running have ended and been yielded.
    """
    slots = max(1, slots)
    done: queue.Queue = queue.Queue()
    free = threading.Semaphore(slots)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="gitevo-eval") as pool:
        feeder = threading.Thread(target=_feed, name="gitevo-jobs", daemon=True,
                                  args=(iter(jobs), free, stop, pool, done, run_one, on_start))
        feeder.start()
        try:
            yield from _collect(done)
        finally:
            stop.set()
            free.release()  # a feeder waiting for a slot sees `stop` and ends


def _collect(done: queue.Queue) -> Iterator[tuple[Job, Evaluation]]:
    # an error waits for the evaluations already running, so their notes are not lost
    submitted, finished, error = None, 0, None
    while submitted is None or finished < submitted:
        kind, *rest = done.get()
        if kind == "result":
            finished += 1
            yield rest[0], rest[1]
        elif kind == "end":
            submitted = rest[0]
        else:
            finished += kind == "failed"
            error = error or rest[-1]
    if error is not None:
        raise error


def _feed(jobs: Iterator[Job], free: threading.Semaphore, stop: threading.Event,
          pool: ThreadPoolExecutor, done: queue.Queue, run_one: RunOne,
          on_start: OnStart | None) -> None:
    count = 0
    try:
        while True:
            free.acquire()  # a free place first: a job is taken only when it can start
            job = None if stop.is_set() else next(jobs, None)
            if job is None:
                break
            pool.submit(_run, job, free, done, run_one, on_start)
            count += 1
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who raises it
        done.put(("error", exc))
    finally:
        done.put(("end", count))


def _run(job: Job, free: threading.Semaphore, done: queue.Queue, run_one: RunOne,
         on_start: OnStart | None) -> None:
    try:
        if on_start is not None:
            on_start(job)
        done.put(("result", job, run_one(job)))
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who raises it
        done.put(("failed", job, exc))
    finally:
        free.release()
