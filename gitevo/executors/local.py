"""Evaluate on this machine with N concurrent workers.

Each evaluation is a subprocess, so threads are enough to keep N of them busy.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

from gitevo.evaluate import Evaluation, Job, evaluate


def thread_share(workers: int) -> int | None:
    """Each of `workers` side-by-side evaluations gets its share of the cores (None: one
    evaluation alone keeps the libraries' own default)."""
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None


class LocalExecutor:
    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def run(self, jobs: Iterable[Job], on_start: Callable[[Job], None] | None = None
            ) -> Iterator[tuple[Job, Evaluation]]:
        """Yield each job with its evaluation as soon as it finishes; `on_start(job)` is
        called (in a worker thread) as each one begins."""
        jobs = list(jobs)
        if not jobs:
            return
        share = thread_share(self.workers)
        if share is not None:
            jobs = [dataclasses.replace(job, threads=share) for job in jobs]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
            futures = {pool.submit(_started_then_evaluate, job, on_start): job for job in jobs}
            for future in as_completed(futures):
                yield futures[future], future.result()


def _started_then_evaluate(job: Job, on_start: Callable[[Job], None] | None) -> Evaluation:
    if on_start is not None:
        on_start(job)
    return evaluate(job)
