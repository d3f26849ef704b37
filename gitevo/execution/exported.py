"""A trusted command's working copy: an export of one commit and a temp dir beside it.

`prepare` and the task's `recipe` run on the run's seed, never in the user's checkout.
Each export lives under .git/gitevo/<home>/ in a folder named after this process, so
that one left by a gitevo that was killed is found and removed by the next.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gitevo.store.gitstore import Store, process_alive


@contextlib.contextmanager
def exported(store: Store, commit: str, home: str) -> Iterator[tuple[Path, Path]]:
    """(tree, scratch): `commit` exported, and an empty temp dir; both removed after."""
    root = store.state_dir / home
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():  # the exports of processes that were killed
        owner = stale.name.split("-", 1)[0]
        if owner.isdigit() and not process_alive(int(owner)):
            store.remove_dir(stale)
    work = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
    try:
        tree, scratch = work / "tree", work / "tmp"
        store.export_tree(commit, tree)
        scratch.mkdir()
        yield tree, scratch
    finally:
        store.remove_dir(work)
