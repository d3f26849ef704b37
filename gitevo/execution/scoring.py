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
import tempfile
from pathlib import Path
from typing import Any

from gitevo.execution.handover import (
    HandoverError,
    Tree,
    copy_artifacts,
    copy_tree,
    fingerprint,
    read_plain,
)
from gitevo.execution.job import Job, expand, failure, read_metrics, run_sandboxed, timed
from gitevo.execution.sandbox import heldout_hidden
from gitevo.store.fitness import Evaluation

MAX_REPORT_BYTES = 256 * 1024


def train_then_score(job: Job, tmp: Path, timings: dict[str, float],
                     before: Tree | None = None) -> Evaluation:
    """Run the trainer in `job.workdir`, then the scorer on what it left; the Evaluation.
    `before` is the tree's fingerprint if the checks just took it (else it is taken)."""
    if before is None:
        before = fingerprint(job.workdir)
    artifacts, report = tmp / "artifacts", tmp / "trainer-metrics.json"
    artifacts.mkdir()
    with timed(timings, "fitness"):
        outcome = run_sandboxed(expand(job.command, job, report, artifacts), job, tmp,
                                job.timeout)
    failed = failure(outcome, "fitness command", job.timeout)
    if failed is not None:
        return failed
    trainer = trainer_report(report)
    with tempfile.TemporaryDirectory(prefix=f"gitevo-{job.ident}-score-") as folder:
        trusted = Path(folder)
        tree, copied, scratch = trusted / "tree", trusted / "artifacts", trusted / "tmp"
        scratch.mkdir()
        try:
            copy_tree(job.workdir, before, tree)
            copy_artifacts(artifacts, copied)
        except HandoverError as exc:
            return Evaluation("invalid", error=str(exc), metrics=_record(trainer, job))
        with timed(timings, "score"):
            result = _score(job, tree, copied, scratch)
    result.metrics = {**result.metrics, **_record(trainer, job)}
    return result


def _score(job: Job, tree: Path, artifacts: Path, scratch: Path) -> Evaluation:
    scorer = dataclasses.replace(job, workdir=tree, cache_writable=False)
    metrics = scratch / "metrics.json"
    outcome = run_sandboxed(expand(job.score or "", scorer, metrics, artifacts), scorer,
                            scratch, job.timeout, trusted=True)
    if outcome.timed_out:
        return failure(outcome, "scorer", job.timeout)
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
