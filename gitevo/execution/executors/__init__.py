"""Where evaluations run. Every executor takes Jobs (lazily: the iterator may block while
children are still being written) and yields (job, Evaluation) as each ends, and calls
`on_start(job)` (from any thread) as each begins, for progress displays.

local: this machine, N workers or one per GPU, on the trees evolution exported.
ray, slurm: a cluster; each job's exported tree travels as a tar, so the workers need
gitevo installed but no shared checkout. They import the rest of execution, store
(trees come from git) and config, nothing above.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from gitevo.config import Config
from gitevo.execution.executors.gpus import resolve_gpus
from gitevo.execution.executors.local import LocalExecutor
from gitevo.execution.executors.remote_job import tree_archive
from gitevo.execution.job import Job
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import Store


class Executor(Protocol):
    workers: int

    def run(self, jobs: Iterable[Job], on_start: Callable[[Job], None] | None = None
            ) -> Iterator[tuple[Job, Evaluation]]: ...


def make_executor(config: Config, store: Store | None = None) -> Executor:
    """The executor that gitevo.toml's [executor] section names (validated by config).
    The cluster ones send each job's exported tree as a tar; SLURM keeps submitit's
    files under `store`'s state directory (default: gitevo.toml's repository)."""
    ex = config.executor
    if ex.kind == "local":
        return LocalExecutor(ex.workers, resolve_gpus(ex.gpus), ex.per_gpu)
    if ex.kind == "ray":
        from gitevo.execution.executors.ray import RayExecutor
        return RayExecutor(ex.ray, ex.workers, ex.retries, _archive)
    from gitevo.execution.executors.slurm import SlurmExecutor
    store = store or Store(config.path.parent)
    folder = store.root / ex.slurm.folder if ex.slurm.folder else store.state_dir / "slurm"
    return SlurmExecutor(ex.slurm, ex.workers, ex.retries, _archive, folder)


def _archive(job: Job) -> bytes:
    """The tree evolution exported for `job`, as a tar: the commit's files, sent whole."""
    return tree_archive(job.workdir)
