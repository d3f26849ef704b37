"""Evaluate as SLURM jobs through submitit: one sbatch job per evaluation attempt.

submitit pickles the call (the Job and the commit's tar) into `folder`, which the
nodes must see; the code itself travels inside that pickle, so the nodes need no
checkout. `cluster = "local"` runs the same jobs as local processes (tests, dry runs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from gitevo.config import SlurmOptions
from gitevo.execution.executors.attempts import WorkerLost, with_retries
from gitevo.execution.executors.optional import need
from gitevo.execution.executors.pool import run_pool
from gitevo.execution.executors.remote_job import evaluate_archive
from gitevo.execution.job import Job
from gitevo.store.fitness import Evaluation

Archiver = Callable[[Job], bytes]
# with no `workers` cap, jobs go to the scheduler as they come; SLURM queues the rest
UNCAPPED = 256


class SlurmExecutor:
    def __init__(self, options: SlurmOptions, workers: int, retries: int, archive: Archiver,
                 folder: Path):
        self.submitit = need("submitit", "slurm", "slurm")
        self.options, self.retries, self.archive = options, retries, archive
        self.executor = self.submitit.AutoExecutor(folder=folder, cluster=options.cluster)
        self.executor.update_parameters(**_parameters(options))
        self.submit_lock = threading.Lock()  # the job name is set on the shared executor
        self.workers = workers or UNCAPPED

    def run(self, jobs: Iterable[Job], on_start: Callable[[Job], None] | None = None
            ) -> Iterator[tuple[Job, Evaluation]]:
        """Yield each job with its evaluation as its SLURM job ends."""
        yield from run_pool(jobs, self.workers, self._evaluate, on_start)

    def _evaluate(self, job: Job) -> Evaluation:
        job = dataclasses.replace(job, threads=self.options.cpus_per_task, devices=None)
        code = self.archive(job)
        return with_retries(job, lambda j: self._attempt(j, code), self.retries)

    def _attempt(self, job: Job, code: bytes) -> Evaluation:
        with self.submit_lock:
            self.executor.update_parameters(name=f"gitevo-{job.ident}")
            submitted = self.executor.submit(evaluate_archive, job, code)
        if self.options.cluster == "local":
            # same machine, same disk: no network filesystem to wait for before deciding
            # that a dead job left no result (submitit waits 15 s for one by default)
            submitted._results_timeout_s = 1
        try:
            result = submitted.result()
        except self.submitit.core.utils.UncompletedJobError as exc:
            # killed, preempted, timed out, node failure, or gitevo raised on the node
            # (FailedJobError); a candidate's failure comes back as an Evaluation instead.
            # Its files stay in the folder: the job id in the reason points at them.
            raise WorkerLost(_describe(submitted, exc)) from exc
        _remove_files(submitted)  # the note holds what matters; the pickle held the code
        return result


def _parameters(options: SlurmOptions) -> dict[str, Any]:
    params: dict[str, Any] = {"timeout_min": options.time, "cpus_per_task": options.cpus_per_task,
                              "nodes": 1, "tasks_per_node": 1}
    if options.mem_gb is not None:
        params["mem_gb"] = options.mem_gb
    if options.cluster == "slurm":
        if options.partition:
            params["slurm_partition"] = options.partition
        if options.gpus_per_task:
            params["slurm_gpus_per_task"] = options.gpus_per_task
        if options.sbatch:
            params["slurm_additional_parameters"] = dict(options.sbatch)
    return params


def _describe(submitted: Any, exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    state = getattr(submitted, "state", "?")
    return f"job {submitted.job_id} ({state}): " + " | ".join(lines[:2] + lines[-3:])


def _remove_files(submitted: Any) -> None:
    """A finished job's pickles and logs (its result is in the note). The sbatch script,
    a few hundred bytes, stays: it shows what was asked of the scheduler."""
    paths = submitted.paths
    for name in ("submitted_pickle", "result_pickle", "stdout", "stderr"):
        with contextlib.suppress(OSError, AttributeError):
            Path(getattr(paths, name)).unlink(missing_ok=True)
