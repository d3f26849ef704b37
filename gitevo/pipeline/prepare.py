"""The trusted step before evaluations: fetch what they need while the network is allowed.

`[fitness] prepare` runs on the run's seed commit, which a person wrote and not an LLM.
It is confined like every command (limits, allowlisted environment, read-only
repository) but may use the network, so the candidates' evaluations can run without it.
The typical job is downloading a dataset into the cache the harness reads. It runs before
init's seed evaluation, before the first generation a gitevo process runs, and before
verify, so it must be quick when there is nothing to do. It runs on this machine only:
Ray and SLURM workers need the data where their own harness finds it (a shared cache
directory or `--data PATH` on shared storage).
"""

from __future__ import annotations

import dataclasses

from gitevo.config import Config
from gitevo.execution.exported import exported
from gitevo.execution.job import expand, make_job, run_sandboxed
from gitevo.pipeline.plan import individual_id
from gitevo.store.gitstore import Store, individual_ref


class PrepareError(RuntimeError):
    """The prepare command failed: no evaluation could succeed without it."""


def prepare_seed(store: Store, config: Config, run: str) -> None:
    """Run [fitness] prepare (if any) on `run`'s seed commit; raise PrepareError."""
    if not config.fitness.prepare:
        return
    seed = store.resolve_ref(individual_ref(run, individual_id(0, 0)))
    if seed is not None:
        prepare(store, config, seed)


def prepare(store: Store, config: Config, commit: str) -> None:
    """Run [fitness] prepare (if any) on an export of `commit`; raise PrepareError."""
    command = config.fitness.prepare
    if not command:
        return
    with exported(store, commit, "prepare") as (tree, scratch):
        job = make_job(config, "prepare", tree)
        job = dataclasses.replace(job, cache_writable=True, sandbox=dataclasses.replace(
            job.sandbox, network="allow"))
        outcome = run_sandboxed(expand(command, job, scratch / "prepare-metrics.json"), job,
                                scratch, job.timeout, trusted=True)
    if outcome.timed_out:
        raise PrepareError(f"[fitness] prepare exceeded {job.timeout:g}s: {outcome.last_line}")
    if outcome.returncode != 0:
        raise PrepareError(f"[fitness] prepare exited {outcome.returncode}"
                           f"{outcome.reason()}: {outcome.last_line}")
