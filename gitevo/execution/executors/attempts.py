"""Retrying an evaluation whose worker was lost, never one whose candidate failed.

A candidate that crashes, times out or writes bad metrics comes back as an ordinary
Evaluation: that is data, and running it again would only cost time. Only the
machinery failing under it (the worker process killed, the node gone, the job
preempted) earns another attempt, up to `retries`; then the individual is recorded as
crashed so the generation can finish.
"""

from __future__ import annotations

from collections.abc import Callable

from gitevo.execution.job import Job
from gitevo.store.fitness import Evaluation

ERROR_CHARS = 1500


class WorkerLost(Exception):
    """The evaluation never came back because its worker, node or job went away."""


def with_retries(job: Job, attempt: Callable[[Job], Evaluation], retries: int) -> Evaluation:
    """`attempt(job)` until it returns; each WorkerLost costs one of `retries`."""
    losses: list[str] = []
    while True:
        try:
            return attempt(job)
        except WorkerLost as exc:
            losses.append(str(exc).strip() or type(exc).__name__)
            if len(losses) > retries:
                return lost(losses)


def lost(losses: list[str]) -> Evaluation:
    n = len(losses)
    last = losses[-1][-ERROR_CHARS:]
    return Evaluation("crashed", error=f"worker lost {n} time{'s' * (n != 1)}: {last}")
