"""What runs on a cluster worker: unpack the individual's archive, evaluate it there.

This module is imported on the worker, so it imports no more than evaluate needs. The
job's paths name places on the submitting machine; here they are replaced by the
worker's own temp dir, and nothing else about the job changes.
"""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

from gitevo.execution.evaluate import evaluate
from gitevo.execution.job import Job
from gitevo.execution.sandbox import private_dir
from gitevo.store.fitness import Evaluation


def evaluate_archive(job: Job, archive: bytes) -> Evaluation:
    """Evaluate `job` on the tree in `archive` (a tar of the commit), in a private dir."""
    with private_dir(f"{job.ident}-tree") as tmp:
        tree = Path(tmp) / "tree"
        unpack(archive, tree)
        # pid_dir is on the submitting machine; orphans here die with the worker's job
        return evaluate(dataclasses.replace(job, workdir=tree, pid_dir=None))


def tree_archive(tree: Path) -> bytes:
    """A tar of an exported tree (Store.export_tree): its files, modes and links."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(tree.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def unpack(archive: bytes, dest: Path) -> None:
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        if hasattr(tarfile, "tar_filter"):
            # refuses names that would land outside `dest`; keeps symlinks as export_tree does
            tar.extractall(dest, filter="tar")
        else:  # pragma: no cover - Pythons before the extraction filters
            tar.extractall(dest)  # noqa: S202 - an archive we made from a commit
