"""`gitevo hint`: a person steers a run through hints kept in git (gitevo.store.hints)."""

from __future__ import annotations

import subprocess

from gitevo.config import Config
from gitevo.pipeline.plan import evolvable_blocks
from gitevo.results.report import hint_lines
from gitevo.store import hints, ledger
from gitevo.store.gitstore import GitError, Store, best_ref


def give(store: Store, config: Config, run: str, text: str, block: str | None,
         generations: int) -> hints.Hint:
    """Record a hint for the next `generations` generations (one block, or all)."""
    current = ledger.read(store, run)
    start = current.generation + 1 if current else 1
    return hints.add(store, run, text, start=start, generations=generations,
                     block=_block(store, config, run, block) if block else None,
                     author=_author(store))


def list_lines(store: Store, config: Config, run: str) -> list[str]:
    return hint_lines(store, config, run) or [f"run {run!r} has no hints yet"]


def _block(store: Store, config: Config, run: str, block: str) -> str:
    """`block` as "path::Name": a bare Name is looked up among the champion's blocks."""
    commit = store.resolve_ref(best_ref(run))
    known = list(evolvable_blocks(store, config, commit)) if commit else []
    matches = [k for k in known if k == block or k.rpartition("::")[2] == block]
    if len(matches) != 1:
        shown = ", ".join(k.rpartition("::")[2] for k in known) or "none"
        raise GitError(f"hint --block {block}: "
                       + ("names more than one block" if matches else "no such block")
                       + f" (blocks: {shown})")
    return matches[0]


def _author(store: Store) -> str:
    try:
        out = subprocess.run(["git", "config", "user.name"], cwd=store.root,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()
