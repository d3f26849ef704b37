"""The logic behind the git hooks that `gitevo init` installs into a target repository."""

from __future__ import annotations

import tempfile
from pathlib import Path

from gitevo.config import Config
from gitevo.execution.evaluate import validate
from gitevo.execution.job import make_job
from gitevo.store.gitstore import Store


def pre_commit(store: Store, config: Config) -> str | None:
    """Validate staged gene files the way gitevo validates an offspring; None when fine.

    Only the staged snapshot is checked (not the working tree), and only when a gene
    file changed, so unrelated commits stay instant.
    """
    staged = store.index_tree()
    head = None if store.repo.head_is_unborn else store.head_commit()
    if head is not None and not _genes_changed(store, config, head, staged):
        return None
    with tempfile.TemporaryDirectory(prefix="gitevo-hook-") as tmp:
        workdir = Path(tmp) / "tree"
        store.export_tree_id(staged, workdir)
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        failed = validate(make_job(config, "staged", workdir), scratch)
    if failed is None:
        return None
    lines = [line for line in (failed.error or "").splitlines() if line.strip()]
    return lines[0] if lines else "validity check failed"


def _genes_changed(store: Store, config: Config, head: str, staged: str) -> bool:
    old = store.repo[store.tree_id(head)]
    new = store.repo[staged]
    return any(_entry_id(old, path) != _entry_id(new, path) for path in config.genes.files)


def _entry_id(tree, path: str) -> str | None:
    try:
        return str(tree[path].id)
    except KeyError:
        return None
