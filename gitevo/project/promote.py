"""`gitevo promote`: make an individual the run's champion, and optionally publish it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from gitevo.results.verify import resolve_individual
from gitevo.store import remote as remotes
from gitevo.store.gitstore import GitError, Store, best_ref, llm_notes_ref, notes_ref


@dataclass
class Promotion:
    ident: str
    commit: str
    previous: str | None  # the commit best pointed to before
    pushed: list[str]  # refs pushed, when --push was given


def promote(store: Store, run: str, ref: str, push_to: str | None = None) -> Promotion:
    """Move `gitevo/<run>/best` to REF's commit; push it and the run's notes to `push_to`."""
    with store.lock():
        ident, commit = resolve_individual(store, run, ref)
        _require_ok(store, run, ident, commit)
        previous = store.resolve_ref(best_ref(run))
        if previous != commit:
            store.update_refs([(best_ref(run), commit, previous)], f"gitevo: promote {ident}")
        pushed = _publish(store, run, push_to) if push_to else []
    return Promotion(ident, commit, previous, pushed)


def _require_ok(store: Store, run: str, ident: str, commit: str) -> None:
    text = store.read_note(notes_ref(run), commit)
    status = json.loads(text).get("status") if text else None
    if status != "ok":
        what = f"is {status}" if status else "has not been evaluated yet"
        raise GitError(f"{ident} {what}: only an individual evaluated ok can be champion")


def _publish(store: Store, run: str, remote: str) -> list[str]:
    # best is forced: champions need not descend from each other; notes only ever
    # fast-forward, so a remote with notes this clone lacks refuses the whole push
    refs = [best_ref(run)] + [ref for ref in (notes_ref(run), llm_notes_ref(run))
                              if store.resolve_ref(ref) is not None]
    try:
        remotes.push(store, remote, refs, force=[best_ref(run)])
    except GitError as exc:
        hint = (f" (run `gitevo sync {remote}` first: it has notes this clone lacks)"
                if "refs/notes/" in str(exc) else "")
        raise GitError(f"{exc}{hint}") from None
    return refs
