"""Run an individual's fitness command on its exported tree and turn the outcome into a note.

The harness (the target repository's fitness command) measures the objectives; we
only trust the metrics file it writes, never anything the candidate prints. A
failure is data: it becomes a note with a status and the tail of stderr.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from gitevo.execution import scoring
from gitevo.execution.handover import Tree, changes, fingerprint
from gitevo.execution.job import Job, expand, read_metrics, run_fitness, run_sandboxed, timed
from gitevo.execution.protection import protection
from gitevo.execution.sandbox import private_dir
from gitevo.store.fitness import Evaluation

CHECK_TIMEOUT = 300.0
CHECK_METRICS = "check-metrics.json"  # where the check command may write its findings
FINGERPRINT_CHARS = 128


def evaluate(job: Job) -> Evaluation:
    """Validate cheaply, then run the fitness command; never raises for candidate faults."""
    start = time.monotonic()
    timings: dict[str, float] = {}
    with private_dir(job.ident) as tmp:
        result = _evaluate_in(job, Path(tmp), timings)
        result.fingerprint = check_fingerprint(Path(tmp))
    result.isolation = protection(job.sandbox)
    result.error = _floor_said(result)
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


FLOOR_NOTE = ("(the Landlock floor refuses paths outside the worktree, its temp dir, the "
              "system, the Python environment and the folders [fitness.vars] names: name a "
              "data folder there, or set [sandbox] landlock = false)")


def _floor_said(result: Evaluation) -> str | None:
    """The error, with a line on the Landlock floor where it refused a path: else a
    harness reading an unnamed data folder would fail with a bare "Permission denied"
    (inside bubblewrap too: its own refusals read "Read-only file system")."""
    error, held = result.error, result.isolation or {}
    if not error or "Permission denied" not in error or not held.get("landlock"):
        return error
    return f"{error.rstrip()}\n{FLOOR_NOTE}"


def check_fingerprint(tmp: Path) -> str | None:
    """The behavioural fingerprint that the check command wrote into its metrics file under
    `tmp` ("fingerprint", a short string), if it ran and wrote one."""
    try:
        value = json.loads((tmp / CHECK_METRICS).read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and 0 < len(value) <= FINGERPRINT_CHARS else None


def runs_commands(job: Job) -> bool:
    """Whether validating `job` runs anything (an import check or `check`), not only
    parses and compiles."""
    return bool(job.check or _imported(job))


def checked(job: Job, tmp: Path) -> tuple[Evaluation | None, list[str]]:
    """`validate`, and the files its commands changed in the tree (none ran: none)."""
    failed, changed, _ = _checked(job, tmp)
    return failed, changed


def _checked(job: Job, tmp: Path) -> tuple[Evaluation | None, list[str], Tree | None]:
    """`checked`, and the tree's fingerprint after the checks when it was taken."""
    before = fingerprint(job.workdir) if runs_commands(job) else None
    failed = validate(job, tmp)
    if failed is not None or before is None:
        return failed, [], None
    after = fingerprint(job.workdir)
    return None, changes(before, after), after


def _imported(job: Job) -> list[str]:
    """The gene files the import check loads: none when the import is proven."""
    return [] if job.import_proven else [f for f in job.gene_files if f.endswith(".py")]


def _evaluate_in(job: Job, tmp: Path, timings: dict[str, float]) -> Evaluation:
    tree = None  # the tree's fingerprint once the checks ran: a scorer starts from it
    if not job.validated:
        with timed(timings, "validate"):
            failed, changed, tree = _checked(job, tmp)
        if failed is not None:
            return failed
        if changed:
            # the fitness command runs next in this same tree: a check that rewrote the
            # harness, or planted a module it imports, would decide its own score
            return Evaluation("invalid", error=f"the checks changed {', '.join(changed[:5])}"
                              " in the tree; a candidate may not change what it is "
                              "evaluated with")
    if job.score:
        return scoring.train_then_score(job, tmp, timings, tree)
    metrics_path = tmp / "metrics.json"
    with timed(timings, "fitness"):
        failed, curve = run_fitness(job, tmp, metrics_path)
    if failed is not None:
        return failed  # with its curve already
    result = read_metrics(metrics_path, job.objectives, "fitness command")
    result.curve = curve
    return result


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
        metrics = tmp / (CHECK_METRICS if what == "check" else f"{what}-metrics.json")
        outcome = run_sandboxed(expand(check, job, metrics), job, tmp, timeout)
    if outcome.timed_out:
        return Evaluation("invalid", error=f"{what} exceeded {timeout:g}s")
    if outcome.returncode != 0:
        return Evaluation("invalid", error=f"{what} failed: {outcome.last_line}\n{outcome.tail}")
    return None
