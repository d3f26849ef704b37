"""One individual's evaluation as plain data (a Job, which can travel to a cluster
worker), and running one of its commands in the sandbox: placeholders filled, the
outcome read back as an Evaluation or a failure.
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gitevo.config import ARTIFACTS, PLACEHOLDER, PROGRESS, Config, EarlyStop, Sandbox
from gitevo.execution.progress import STOPPED, Watch
from gitevo.execution.sandbox import Outcome, import_confined, run_confined, sandbox_env
from gitevo.store.fitness import Evaluation


@dataclass(frozen=True)
class Job:
    """What a worker needs to evaluate one individual; plain data so it can travel."""

    ident: str
    workdir: Path
    gene_files: tuple[str, ...]
    command: str
    check: str | None
    timeout: float
    fidelity: str
    variables: dict[str, str]
    objectives: tuple[str, ...]
    env_extra: tuple[str, ...] = ()
    pid_dir: Path | None = None
    threads: int | None = None  # this job's share of the CPU cores (None: no limit set)
    validated: bool = False  # already passed `validate` on this very tree: skip it
    # importing the gene files runs exactly what importing the first parent's did (they
    # differ only inside function bodies), and the parent's import passed: skip that step
    import_proven: bool = False
    devices: str | None = None  # CUDA_VISIBLE_DEVICES for this job (None: as inherited)
    commit: str | None = None  # the individual's commit: its fitness note goes there
    sandbox: Sandbox = Sandbox()  # gitevo.toml's [sandbox]: how the commands are confined
    # once a [fitness] prepare step has filled the dataset cache, candidates only read it,
    # so none can poison the data of those evaluated after it
    cache_writable: bool = True
    # [fitness] score: the trusted scorer that runs after `command`, the trainer, has ended
    score: str | None = None
    score_early: bool = False  # [fitness] score_early: the scorer waits for {artifacts}
    early_stop: EarlyStop | None = None  # [fitness.early_stop]
    # the parent's learning curve at this fidelity: what early stopping compares with
    reference: tuple[dict[str, float], ...] = ()


def make_job(config: Config, ident: str, workdir: Path, fidelity: str | None = None,
             pid_dir: Path | None = None) -> Job:
    return Job(ident=ident, workdir=workdir, gene_files=config.genes.files,
               command=config.fitness.command, check=config.fitness.check,
               timeout=config.fitness.timeout, fidelity=fidelity or config.fitness.fidelity,
               variables=dict(config.fitness.vars), objectives=tuple(config.objective_names),
               env_extra=config.fitness.env, pid_dir=pid_dir, sandbox=config.sandbox,
               cache_writable=not config.fitness.prepare, score=config.fitness.score,
               score_early=config.fitness.score_early, early_stop=config.fitness.early_stop)


def failure(outcome: Outcome, what: str, timeout: float) -> Evaluation | None:
    """The evaluation of a command that timed out or failed; None when it succeeded."""
    if outcome.timed_out:
        return Evaluation("timeout", error=f"{what} exceeded {timeout:g}s{outcome.reason()}\n"
                          + outcome.tail)
    if outcome.returncode != 0:
        # the last line of its output is usually the why: it belongs in the first line
        return Evaluation("crashed", error=f"{what} exited {outcome.returncode}"
                          f"{outcome.reason()}: {outcome.last_line}\n" + outcome.tail)
    return None


@contextlib.contextmanager
def timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        timings[phase] = round(time.monotonic() - start, 3)


def expand(template: str, job: Job, metrics: Path, artifacts: Path | None = None,
           progress: Path | None = None) -> str:
    """Fill {metrics}, {workdir}, {fidelity}, {artifacts} (with a scorer), {progress}
    (for the fitness command) and [fitness.vars] into a command, shell-quoted."""
    values = {**job.variables, "metrics": str(metrics), "workdir": str(job.workdir),
              "fidelity": job.fidelity}
    if artifacts is not None:
        values[ARTIFACTS] = str(artifacts)
    if progress is not None:
        values[PROGRESS] = str(progress)
    return PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)])
                            if m.group(1) in values else m.group(0), template)


def read_metrics(path: Path, objectives: tuple[str, ...], writer: str) -> Evaluation:
    """Parse the metrics JSON that `writer` (the fitness command, the scorer) wrote;
    every objective must be a finite number."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Evaluation("invalid", error=f"{writer} wrote no metrics file")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Evaluation("invalid", error=f"metrics file is not valid JSON: {exc}")
    if not isinstance(metrics, dict):
        return Evaluation("invalid", error="metrics file must hold a JSON object")
    values = {}
    for name in objectives:
        value = metrics.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return Evaluation("invalid", metrics=metrics,
                              error=f"metrics: objective {name!r} missing or not a number")
        if not math.isfinite(value):
            return Evaluation("invalid", metrics=metrics,
                              error=f"metrics: objective {name!r} is {value}")
        values[name] = float(value)
    return Evaluation("ok", objectives=values, metrics=metrics)


def run_fitness(job: Job, tmp: Path, metrics: Path, artifacts: Path | None = None
                ) -> tuple[Evaluation | None, list[dict[str, float]]]:
    """Run the fitness command (the trainer, with a scorer), watching its {progress}
    file. Returns its failure, or its `stopped` evaluation when the watch cut it short
    (None when it succeeded), and the learning curve it reported."""
    progress = tmp / "progress.jsonl"
    command = expand(job.command, job, metrics, artifacts, progress)
    with Watch(progress, job.reference, job.early_stop) as watch:
        outcome = run_sandboxed(command, job, tmp, job.timeout, stop=watch.stop)
    if outcome.cancelled and watch.reason:
        failed = Evaluation(STOPPED, error=watch.reason)
    else:
        failed = failure(outcome, "fitness command", job.timeout)
    if failed is not None:
        failed.curve = watch.curve
    return failed, watch.curve


# ---- the sandboxed subprocess (execution/sandbox.py) ---------------------------------------

def run_sandboxed(command: str | list[str], job: Job, tmp: Path, timeout: float,
                  trusted: bool = False, stop: threading.Event | None = None) -> Outcome:
    """Run `command` (or, given a list of gene files, import them) for `job` in the
    sandbox; the whole process group dies on timeout, or once `stop` is set. Only a
    `trusted` command (prepare, score) sees the held-out cache."""
    env = sandbox_env(tmp, job.env_extra, job.threads)
    if job.devices is not None:  # the executor's GPU pick for this job
        env["CUDA_VISIBLE_DEVICES"] = job.devices
    hide = hidden_paths(job)  # the sandbox leaves them visible to a trusted command
    if isinstance(command, list):
        return import_confined(command, workdir=job.workdir, tmp=tmp, timeout=timeout,
                               env=env, settings=job.sandbox, pid_dir=job.pid_dir,
                               name=job.ident, cache_writable=job.cache_writable, hide=hide,
                               data=data_paths(job))
    return run_confined(command, workdir=job.workdir, tmp=tmp, timeout=timeout, env=env,
                        settings=job.sandbox, pid_dir=job.pid_dir, name=job.ident,
                        cache_writable=job.cache_writable, trusted=trusted, hide=hide,
                        stop=stop, data=data_paths(job))


def data_paths(job: Job) -> tuple[Path, ...]:
    """The existing absolute paths that [fitness.vars] name (a dataset folder, say): what a
    candidate may read besides the system, the Python environment and its worktree."""
    found = []
    for value in job.variables.values():
        path = Path(str(value)).expanduser()
        if path.is_absolute() and path.exists():
            found.append(path)
    return tuple(found)


def hidden_paths(job: Job) -> tuple[Path, ...]:
    """[sandbox] hide with [fitness.vars] filled in; what is not an absolute path (a
    dataset name such as "cifar10") names nothing on disk to hide."""
    paths = []
    for entry in job.sandbox.hide:
        text = PLACEHOLDER.sub(lambda m: job.variables.get(m.group(1), m.group(0)), entry)
        path = Path(text).expanduser()
        if path.is_absolute():
            paths.append(path.resolve())
    return tuple(paths)
