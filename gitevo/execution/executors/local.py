"""Evaluate on this machine with N concurrent workers, or one job per GPU.

Each evaluation is a subprocess, so threads are enough to keep N of them busy. The
workers read the trees evolution exported; nothing is archived or copied.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

from gitevo.execution.evaluate import evaluate
from gitevo.execution.executors.gpus import GpuPool
from gitevo.execution.executors.pool import run_pool
from gitevo.execution.job import Job
from gitevo.store.fitness import Evaluation


def thread_share(workers: int) -> int | None:
    """Each of `workers` side-by-side evaluations gets its share of the cores (None: one
    evaluation alone keeps the libraries' own default)."""
    return max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None


class LocalExecutor:
    """`workers` at once; with `gpus`, one job per device (`per_gpu` per device) instead,
    each seeing only its own device through CUDA_VISIBLE_DEVICES."""

    def __init__(self, workers: int = 1, gpus: Sequence[str] = (), per_gpu: int = 1):
        self.gpus = GpuPool(gpus, per_gpu) if gpus else None
        self.workers = self.gpus.size if self.gpus else max(1, workers)

    def run(self, jobs: Iterable[Job], on_start: Callable[[Job], None] | None = None
            ) -> Iterator[tuple[Job, Evaluation]]:
        """Yield each job with its evaluation as soon as it finishes, taking jobs from
        `jobs` only as places free up; `on_start(job)` is called (in a worker thread) as
        each one begins."""
        share = thread_share(self.workers)
        yield from run_pool(jobs, self.workers, lambda job: self._one(job, share), on_start)

    def _one(self, job: Job, share: int | None) -> Evaluation:
        if share is not None:
            job = dataclasses.replace(job, threads=share)
        if self.gpus is None:
            return evaluate(job)
        device = self.gpus.take()
        try:
            return evaluate(dataclasses.replace(job, devices=device))
        finally:
            self.gpus.give_back(device)
