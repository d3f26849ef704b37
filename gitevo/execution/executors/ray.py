"""Evaluate as tasks on a Ray cluster (`ray start` on the nodes; `address` in gitevo.toml).

Each task gets the individual's commit as a tar and the Job, evaluates on whichever
node Ray picks, and returns the Evaluation. Ray restarts nothing itself (max_retries=0):
we retry a lost worker or node, and count the losses into the note.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gitevo.config import RayOptions
from gitevo.execution.executors.attempts import WorkerLost, with_retries
from gitevo.execution.executors.optional import need
from gitevo.execution.executors.pool import run_pool
from gitevo.execution.executors.remote_job import evaluate_archive
from gitevo.execution.job import Job
from gitevo.store.fitness import Evaluation

Archiver = Callable[[Job], bytes]


class RayExecutor:
    def __init__(self, options: RayOptions, workers: int, retries: int, archive: Archiver):
        self.ray = need("ray", "ray", "ray")
        if not self.ray.is_initialized():
            # address None: RAY_ADDRESS, else the cluster `ray start` left on this machine,
            # else a new one-machine cluster (Ray's own rules)
            self.ray.init(address=options.address, logging_level="WARNING",
                          log_to_driver=False)
        self.options, self.retries, self.archive = options, retries, archive
        self.task = self.ray.remote(evaluate_archive).options(
            num_cpus=options.num_cpus, num_gpus=options.num_gpus, max_retries=0)
        self.workers = workers or self._capacity()

    def _capacity(self) -> int:
        """How many tasks of our size the cluster holds at once, as it is now."""
        resources = self.ray.cluster_resources()
        fits = [resources.get("CPU", 1) / self.options.num_cpus] if self.options.num_cpus else []
        if self.options.num_gpus:
            fits.append(resources.get("GPU", 0) / self.options.num_gpus)
        return max(1, math.floor(min(fits))) if fits else max(1, int(resources.get("CPU", 1)))

    def run(self, jobs: Iterable[Job], on_start: Callable[[Job], None] | None = None
            ) -> Iterator[tuple[Job, Evaluation]]:
        """Yield each job with its evaluation as its task ends, `workers` tasks at most."""
        yield from run_pool(jobs, self.workers, self._evaluate, on_start)

    def _evaluate(self, job: Job) -> Evaluation:
        # the math libraries get the cores the task reserved; Ray sets the GPUs itself
        threads = max(1, math.floor(self.options.num_cpus))
        job = dataclasses.replace(job, threads=threads, devices=None)
        code = self.ray.put(self.archive(job))  # stored once, read again by each retry
        return with_retries(job, lambda j: self._attempt(j, code), self.retries)

    def _attempt(self, job: Job, code: Any) -> Evaluation:
        try:
            return self.ray.get(self.task.remote(job, code))
        except self.ray.exceptions.RayError as exc:
            # the worker process or its node died, ran out of memory, or gitevo itself
            # raised there: not the candidate's doing (that comes back as an Evaluation)
            raise WorkerLost(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first.strip()}"
