"""Evaluate on this machine with N concurrent workers.

Each evaluation is a subprocess, so threads are enough to keep N of them busy.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

from gitevo.evaluate import Evaluation, Job, evaluate


class LocalExecutor:
    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Evaluation]]:
        """Yield each job with its evaluation as soon as it finishes."""
        jobs = list(jobs)
        if not jobs:
            return
        if self.workers > 1:  # each evaluation gets its share of the cores
            share = max(1, (os.cpu_count() or 1) // self.workers)
            jobs = [dataclasses.replace(job, threads=share) for job in jobs]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
            futures = {pool.submit(evaluate, job): job for job in jobs}
            for future in as_completed(futures):
                yield futures[future], future.result()
