"""Run an individual's fitness command on its exported tree and turn the outcome into a note.

The harness (the target repository's fitness command) measures the objectives; we
only trust the metrics file it writes, never anything the candidate prints. A
failure is data: it becomes a note with a status and the tail of stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shlex
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gitevo.config import PLACEHOLDER, Config, Sandbox
from gitevo.execution.sandbox import Outcome, import_confined, run_confined, sandbox_env
from gitevo.store.fitness import Evaluation

CHECK_TIMEOUT = 300.0


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


def make_job(config: Config, ident: str, workdir: Path, fidelity: str | None = None,
             pid_dir: Path | None = None) -> Job:
    return Job(ident=ident, workdir=workdir, gene_files=config.genes.files,
               command=config.fitness.command, check=config.fitness.check,
               timeout=config.fitness.timeout, fidelity=fidelity or config.fitness.fidelity,
               variables=dict(config.fitness.vars), objectives=tuple(config.objective_names),
               env_extra=config.fitness.env, pid_dir=pid_dir, sandbox=config.sandbox,
               cache_writable=not config.fitness.prepare)


def evaluate(job: Job) -> Evaluation:
    """Validate cheaply, then run the fitness command; never raises for candidate faults."""
    start = time.monotonic()
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"gitevo-{job.ident}-") as tmp:
        result = _evaluate_in(job, Path(tmp), timings)
    result.seconds = round(time.monotonic() - start, 3)
    result.fidelity = job.fidelity
    result.timings = timings
    return result


def validate(job: Job, tmp: Path) -> Evaluation | None:
    """The cheap checks before training: gene files parse and import, then `check` passes.

    Returns an `invalid` evaluation naming the problem, or None when all pass. The
    pre-commit hook runs this same function on a human's staged edit.
    """
    problem = syntax_problem(job.workdir, job.gene_files)
    if problem:
        return Evaluation("invalid", error=problem)
    modules = _imported(job)
    failed = _run_check(job, tmp, modules, "import") if modules else None
    if failed is None and job.check:
        failed = _run_check(job, tmp, job.check, "check")
    return failed


def runs_commands(job: Job) -> bool:
    """Whether validating `job` runs anything (an import check or `check`), not only
    parses and compiles."""
    return bool(job.check or _imported(job))


def checked(job: Job, tmp: Path) -> tuple[Evaluation | None, list[str]]:
    """`validate`, and the files its commands changed in the tree (none ran: none)."""
    before = fingerprint(job.workdir) if runs_commands(job) else None
    failed = validate(job, tmp)
    if failed is not None or before is None:
        return failed, []
    return None, _changes(before, fingerprint(job.workdir))


def _imported(job: Job) -> list[str]:
    """The gene files the import check loads: none when the import is proven."""
    return [] if job.import_proven else [f for f in job.gene_files if f.endswith(".py")]


def _evaluate_in(job: Job, tmp: Path, timings: dict[str, float]) -> Evaluation:
    if not job.validated:
        with _timed(timings, "validate"):
            failed, changed = checked(job, tmp)
        if failed is not None:
            return failed
        if changed:
            # the fitness command runs next in this same tree: a check that rewrote the
            # harness, or planted a module it imports, would decide its own score
            return Evaluation("invalid", error=f"the checks changed {', '.join(changed[:5])}"
                              " in the tree; a candidate may not change what it is "
                              "evaluated with")
    metrics_path = tmp / "metrics.json"
    with _timed(timings, "fitness"):
        outcome = run_sandboxed(expand(job.command, job, metrics_path), job, tmp, job.timeout)
    if outcome.timed_out:
        return Evaluation("timeout", error=f"fitness command exceeded {job.timeout:g}s"
                          f"{outcome.reason()}\n" + outcome.tail)
    if outcome.returncode != 0:
        # the last line of its output is usually the why: it belongs in the first line
        return Evaluation("crashed", error=f"fitness command exited {outcome.returncode}"
                          f"{outcome.reason()}: {outcome.last_line}\n" + outcome.tail)
    return read_metrics(metrics_path, job.objectives)


@contextlib.contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        timings[phase] = round(time.monotonic() - start, 3)


def fingerprint(root: Path) -> dict[str, str]:
    """Every file and link under `root` (an exported tree), with a digest of its content
    (and of its exec bit). Taken twice per checked child, so plain strings, not Paths."""
    seen: dict[str, str] = {}
    _fingerprint(str(root), "", seen)
    return seen


def _fingerprint(folder: str, prefix: str, seen: dict[str, str]) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            key = prefix + entry.name
            if entry.is_symlink():
                seen[key] = "link:" + os.readlink(entry.path)
            elif entry.is_dir():
                _fingerprint(entry.path, key + "/", seen)
            else:
                with contextlib.suppress(OSError), open(entry.path, "rb") as handle:
                    digest = hashlib.blake2b(handle.read(), digest_size=16).hexdigest()
                    seen[key] = ("x" if entry.stat().st_mode & 0o111 else "") + digest


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files added, removed or rewritten, sorted."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def syntax_problem(workdir: Path, gene_files: tuple[str, ...]) -> str | None:
    """The first gene file that is missing or does not compile, as a message."""
    for name in gene_files:
        path = workdir / name
        if not path.is_file():
            return f"{name}: gene file is missing"
        if path.suffix == ".py":
            try:
                # compile, not just parse: the compiler refuses more (a misplaced
                # `nonlocal`, `return` outside a function), and it runs none of the code
                compile(path.read_text(encoding="utf-8"), name, "exec", dont_inherit=True)
            except SyntaxError as exc:
                return f"{name}:{exc.lineno}: syntax error: {exc.msg}"
            except UnicodeDecodeError:
                return f"{name}: not valid UTF-8"
            except ValueError as exc:  # a NUL byte in the source
                return f"{name}: cannot compile: {exc}"
    return None


def _run_check(job: Job, tmp: Path, check: str | list[str], what: str) -> Evaluation | None:
    """Run the check command, or import the gene files when `check` lists them."""
    timeout = min(job.timeout, CHECK_TIMEOUT)
    if isinstance(check, list):
        outcome = run_sandboxed(check, job, tmp, timeout)
    else:
        metrics = tmp / f"{what}-metrics.json"
        outcome = run_sandboxed(expand(check, job, metrics), job, tmp, timeout)
    if outcome.timed_out:
        return Evaluation("invalid", error=f"{what} exceeded {timeout:g}s")
    if outcome.returncode != 0:
        return Evaluation("invalid", error=f"{what} failed: {outcome.last_line}\n{outcome.tail}")
    return None


def expand(template: str, job: Job, metrics: Path) -> str:
    """Fill {metrics}, {workdir}, {fidelity} and [fitness.vars] into a command, shell-quoted."""
    values = {**job.variables, "metrics": str(metrics), "workdir": str(job.workdir),
              "fidelity": job.fidelity}
    return PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group(1)])
                            if m.group(1) in values else m.group(0), template)


def read_metrics(path: Path, objectives: tuple[str, ...]) -> Evaluation:
    """Parse the harness's metrics JSON; every objective must be a finite number."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Evaluation("invalid", error="fitness command wrote no metrics file")
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


# ---- the sandboxed subprocess (execution/sandbox.py) ---------------------------------------

def run_sandboxed(command: str | list[str], job: Job, tmp: Path, timeout: float) -> Outcome:
    """Run `command` (or, given a list of gene files, import them) for `job` in the
    sandbox; the whole process group dies on timeout."""
    env = sandbox_env(tmp, job.env_extra, job.threads)
    if job.devices is not None:  # the executor's GPU pick for this job
        env["CUDA_VISIBLE_DEVICES"] = job.devices
    run = import_confined if isinstance(command, list) else run_confined
    return run(command, workdir=job.workdir, tmp=tmp, timeout=timeout, env=env,
               settings=job.sandbox, pid_dir=job.pid_dir, name=job.ident,
               cache_writable=job.cache_writable)
