"""A trusted scorer apart from the untrusted trainer: `[fitness] score`.

With a scorer configured, the fitness command is only the trainer: it runs the
candidate's code and leaves its results (a trained model as data, say) in {artifacts},
and whatever it writes to {metrics} is kept as its report, never as an objective. Once
it has ended and every process it started is gone, the scorer runs from a copy of the
tree as it was before training, on a copy of those artifacts, in a folder the trainer
never knew, and with the held-out data the trainer could not see (under bubblewrap);
its metrics are the evaluation's. A scorer that refuses the artifacts makes the
individual invalid, with the scorer's last line as the reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitevo.execution.handover import (
    HandoverError,
    Tree,
    check_unchanged,
    copy_artifacts,
    copy_tree,
    fingerprint,
    read_plain,
)
from gitevo.execution.job import (
    Job,
    expand,
    failure,
    read_metrics,
    run_fitness,
    run_sandboxed,
    timed,
)
from gitevo.execution.sandbox import bwrap_active, heldout_hidden, private_dir
from gitevo.store.fitness import Evaluation

MAX_REPORT_BYTES = 256 * 1024


def train_then_score(job: Job, tmp: Path, timings: dict[str, float],
                     before: Tree | None = None) -> Evaluation:
    """Run the trainer in `job.workdir`, then the scorer on what it left; the Evaluation.
    `before` is the tree's fingerprint if the checks just took it (else it is taken)."""
    if before is None:
        before = fingerprint(job.workdir)
    if job.score_early and bwrap_active(job.sandbox):
        return _score_alongside(job, tmp, timings, before)
    trained = _train(job, tmp, timings)
    if trained.failed is not None:
        return trained.failed
    # made only now, after every process the trainer started is gone: it never knew it
    with private_dir(f"{job.ident}-score") as folder:
        place = _Place(Path(folder))
        try:
            copy_tree(job.workdir, before, place.tree)
            _hand_over(tmp, place)
        except HandoverError as exc:
            return Evaluation("invalid", error=str(exc), metrics=_record(trained.report, job))
        with timed(timings, "score"):
            result = _score(job, place, job.timeout)
    return _with_training(result, trained, job)


def _score_alongside(job: Job, tmp: Path, timings: dict[str, float],
                     before: Tree) -> Evaluation:
    """[fitness] score_early under bubblewrap: the scorer starts with the trainer (from a
    copy of the tree made before training) and loads itself while the trainer trains,
    then waits for {artifacts} to appear; they appear once the trainer's processes are
    gone. The trainer's sandbox has its own PID namespace and a read-only view of the
    scorer's folder, so it can neither reach the scorer nor change what it reads."""
    with private_dir(f"{job.ident}-score") as folder:
        place = _Place(Path(folder))
        try:
            copy_tree(job.workdir, before, place.tree)
        except HandoverError as exc:  # the checks' own guard says this cannot happen
            return Evaluation("invalid", error=str(exc))
        stop = threading.Event()
        with ThreadPoolExecutor(1, thread_name_prefix=f"gitevo-score-{job.ident}") as pool:
            # its own time limit covers the wait for the trainer too
            scoring = pool.submit(_score, job, place, 2 * job.timeout, stop)
            try:
                trained = _train(job, tmp, timings)
                failed = trained.failed or _handed_over(job, before, tmp, place, trained.report)
            finally:
                if not place.artifacts.exists():
                    stop.set()  # nothing to score: the trainer failed, or gitevo is stopping
            if failed is not None:
                return failed
            with timed(timings, "score"):
                result = scoring.result()
    return _with_training(result, trained, job)


def _with_training(result: Evaluation, trained: _Trained, job: Job) -> Evaluation:
    """The scorer's evaluation, with the trainer's report and curve beside its metrics."""
    result.metrics = {**result.metrics, **_record(trained.report, job)}
    result.curve = trained.curve
    return result


def _handed_over(job: Job, before: Tree, tmp: Path, place: _Place,
                 trainer: dict[str, Any] | None) -> Evaluation | None:
    """Copy the trainer's artifacts to the scorer, once the trainer's tree is found as it
    was; the refusal as an invalid Evaluation, None when handed over."""
    try:
        check_unchanged(job.workdir, before)
        _hand_over(tmp, place)
    except HandoverError as exc:
        return Evaluation("invalid", error=str(exc), metrics=_record(trainer, job))
    return None


class _Place:
    """The scorer's folder: the tree it runs from, the artifacts it reads (they appear
    whole, by a rename), and its own temporary folder."""

    def __init__(self, root: Path):
        self.root, self.tree = root, root / "tree"
        self.artifacts, self.scratch = root / "artifacts", root / "tmp"
        self.scratch.mkdir()


@dataclass
class _Trained:
    failed: Evaluation | None  # None when the trainer succeeded
    report: dict[str, Any] | None  # what it wrote to {metrics}
    curve: list[dict[str, float]]  # what it wrote to {progress}


def _train(job: Job, tmp: Path, timings: dict[str, float]) -> _Trained:
    """Run the trainer, stopped early if its learning curve falls behind."""
    artifacts = tmp / "artifacts"
    artifacts.mkdir()
    report = tmp / "trainer-metrics.json"
    with timed(timings, "fitness"):
        failed, curve = run_fitness(job, tmp, report, artifacts)
    return _Trained(failed, trainer_report(report), curve)


def _hand_over(tmp: Path, place: _Place) -> None:
    incoming = place.root / "incoming"
    copy_artifacts(tmp / "artifacts", incoming)
    os.rename(incoming, place.artifacts)  # a scorer waiting for it never sees half of it


def _score(job: Job, place: _Place, timeout: float,
           stop: threading.Event | None = None) -> Evaluation:
    scorer = dataclasses.replace(job, workdir=place.tree, cache_writable=False)
    metrics = place.scratch / "metrics.json"
    outcome = run_sandboxed(expand(job.score or "", scorer, metrics, place.artifacts),
                            scorer, place.scratch, timeout, trusted=True, stop=stop)
    if outcome.timed_out:
        return failure(outcome, "scorer", timeout)
    if outcome.returncode != 0:
        # the scorer refusing the trainer's results is the candidate's fault: data, with
        # the scorer's reason first, for the LLM to act on
        return Evaluation("invalid", error=f"scorer refused it: {outcome.last_line}\n"
                          + outcome.tail)
    return read_metrics(metrics, job.objectives, "scorer")


def trainer_report(path: Path) -> dict[str, Any] | None:
    """What the trainer wrote to its {metrics}, when it is a JSON object of sane size;
    kept for people to read, never used for selection."""
    data = read_plain(path, MAX_REPORT_BYTES)  # never a whole 16 GB file into memory
    if data is None:
        return None
    try:
        report = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return report if isinstance(report, dict) else None


def _record(trainer: dict[str, Any] | None, job: Job) -> dict[str, Any]:
    """The note's account of how it was scored: apart, and whether the trainer could
    read the held-out data (only bubblewrap hides it; elsewhere the scores are not
    protected from a trainer that reads it)."""
    hidden = heldout_hidden(job.sandbox)
    out: dict[str, Any] = {"scorer": {"apart": True, "heldout_hidden": hidden}}
    if not hidden:
        out["scorer"]["warning"] = ("the trainer could read the held-out data (no "
                                    "bubblewrap): this score is not protected")
    if trainer is not None:
        out["trainer"] = trainer
    return out
