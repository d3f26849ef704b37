"""`gitevo sync REMOTE`: exchange runs with another clone, losing nothing on either side.

The remote's gitevo branches and notes are fetched into a staging namespace first and
judged there, so a conflict (an individual id that names different commits in the two
clones, diverged ledgers) is refused before any local ref moves. Then, in one ref
transaction: new individuals appear, the ledger fast-forwards, best follows the newer
ledger and notes are merged (`git notes merge`, two versions of one note combined with
every verification of both). Last, what the remote lacks is pushed without force
(best aside: it moves only if the remote's is still the one fetched).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from gitevo.project import initialize
from gitevo.results.verify import merge_note_texts
from gitevo.store import ledger
from gitevo.store import remote as remotes
from gitevo.store.gitstore import (
    BRANCH_PREFIX,
    NOTES_PREFIX,
    GitError,
    RefMovedError,
    Store,
    best_ref,
    ledger_ref,
)

STAGING = "refs/gitevo-sync/"  # the remote's refs as fetched, until judged
SCRATCH = remotes.SCRATCH_NOTES
APPLY_TRIES = 5  # a verify may write notes meanwhile; the notes merge is then redone
Update = tuple[str, str, str | None]


@dataclass
class SyncReport:
    fetched: list[str] = field(default_factory=list)  # individuals new here
    pushed: list[str] = field(default_factory=list)  # individuals new on the remote
    moved: list[str] = field(default_factory=list)  # ledgers, best branches, notes: one line each
    installed: list[str] | None = None  # warnings of the hook install a fresh clone needed

    def lines(self) -> list[str]:
        out = [f"fetched {len(self.fetched)} individual(s), pushed {len(self.pushed)}"]
        out += self.moved
        if self.installed is not None:
            out.append("installed gitevo's hooks and notes.displayRef (a fresh clone)")
            out += [f"warning: {w}" for w in self.installed]
        return out


def sync(store: Store, run: str, remote: str) -> SyncReport:
    """Fetch, judge, merge and push every gitevo branch and notes ref; see the module doc."""
    with store.lock():
        name = _scratch_name(remote)
        staged, scratch = f"{STAGING}{name}/", f"{SCRATCH}{name}/"
        try:
            _clean(store, staged, scratch)
            remotes.fetch(store, remote, [f"+{BRANCH_PREFIX}*:{staged}heads/gitevo/*",
                                          f"+{NOTES_PREFIX}*:{staged}notes/gitevo/*"])
            theirs = {"refs/" + ref[len(staged):]: target
                      for ref, target in store.refs_under(staged).items()}
            report = SyncReport()
            report.fetched, report.moved = _apply(store, remote, theirs, staged, scratch)
            _push(store, remote, theirs, report)
            if store.get_config("notes.displayRef") is None:
                # a fresh clone: without these, `git log` hides fitness and edits skip checks
                report.installed = initialize.install(store, run)
            return report
        finally:
            _clean(store, staged, scratch)


def _scratch_name(remote: str) -> str:
    """A ref-safe name for the remote (it may be a URL or a path)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", remote):
        return remote
    return "url-" + hashlib.sha1(remote.encode()).hexdigest()[:12]


def _clean(store: Store, *prefixes: str) -> None:
    for prefix in prefixes:
        store.delete_refs(prefix)


# ---- local: judge, then move every ref in one transaction -------------------------------

def _apply(store: Store, remote: str, theirs: dict[str, str], staged: str,
           scratch: str) -> tuple[list[str], list[str]]:
    """Judge and move every local ref; returns (individuals fetched, lines on the rest)."""
    tries = 0
    while True:
        store.delete_refs(scratch)
        fetched, branch_updates, moved = _branches(store, remote, theirs)
        note_updates, note_lines = _notes(store, remote, theirs, staged, scratch)
        try:
            store.update_refs(branch_updates + note_updates, f"gitevo: sync with {remote}")
        except RefMovedError:
            tries += 1
            if tries == APPLY_TRIES:
                raise
            continue
        return fetched, moved + note_lines


def _branches(store: Store, remote: str,
              theirs: dict[str, str]) -> tuple[list[str], list[Update], list[str]]:
    """(individuals to create, ref updates, lines saying what moved); raises on a conflict."""
    ours = store.refs_under(BRANCH_PREFIX)
    remote_branches = {r: c for r, c in theirs.items() if r.startswith(BRANCH_PREFIX)}
    updates: list[Update] = []
    created, divergent = [], []
    for ref, commit in sorted(remote_branches.items()):
        if not _is_individual(ref):
            continue
        if ref not in ours:
            updates.append((ref, commit, None))
            created.append(ref)
        elif ours[ref] != commit:
            divergent.append(ref[len(BRANCH_PREFIX):])
    if divergent:
        shown = ", ".join(divergent[:6]) + (f" and {len(divergent) - 6} more"
                                            if len(divergent) > 6 else "")
        raise GitError(f"{shown}: different commits here and in {remote} (both clones "
                       "evolved the same generation); nothing was changed. Keep one "
                       "clone's generation, or evolve in parallel under another name "
                       "with `gitevo --run NAME`")
    moved = []
    for run in sorted({ref[len(BRANCH_PREFIX):].rsplit("/", 1)[0] for ref in remote_branches}):
        more, line = _ledger_and_best(store, remote, run, ours, remote_branches)
        updates += more
        moved += [line] if line else []
    return created, updates, moved


def _ledger_and_best(store: Store, remote: str, run: str, ours: dict[str, str],
                     theirs: dict[str, str]) -> tuple[list[Update], str | None]:
    """The ledger fast-forwards to the remote's when that is newer; best follows the
    side with the newer ledger (this clone's when they are equal)."""
    lref, bref = ledger_ref(run), best_ref(run)
    mine, other = ours.get(lref), theirs.get(lref)
    updates: list[Update] = []
    newer = False
    if other is not None and mine != other:
        if mine is None or store.is_ancestor(mine, other):
            newer = True
            updates.append((lref, other, mine))
        elif not store.is_ancestor(other, mine):
            here, there = _generation(store, run, mine), _generation(store, run, other)
            raise GitError(f"run {run!r}: the ledger here (generation {here}) and in {remote} "
                           f"(generation {there}) have diverged; nothing was changed. Keep "
                           "one clone's run, or evolve in parallel under another name with "
                           "`gitevo --run NAME`")
    my_best, their_best = ours.get(bref), theirs.get(bref)
    if their_best is not None and their_best != my_best and (newer or my_best is None):
        updates.append((bref, their_best, my_best))
    if not newer:
        return updates, None
    return updates, (f"run {run!r}: ledger fast-forwarded to generation "
                     f"{_generation(store, run, other)}, best follows it")


def _generation(store: Store, run: str, commit: str | None) -> str:
    found = ledger.read(store, run, commit) if commit else None
    return str(found.generation) if found else "?"


def _notes(store: Store, remote: str, theirs: dict[str, str], staged: str,
           scratch: str) -> tuple[list[Update], list[str]]:
    """Each notes ref: taken, fast-forwarded or merged with the remote's."""
    updates: list[Update] = []
    lines = []
    for ref, other in sorted(theirs.items()):
        if not ref.startswith(NOTES_PREFIX):
            continue
        mine = store.resolve_ref(ref)
        if mine == other or (mine is not None and store.is_ancestor(other, mine)):
            continue
        source = staged + ref[len("refs/"):]
        if mine is None or store.is_ancestor(mine, other):
            new, merged = other, source
        else:
            # git notes merge moves its ref without compare-and-swap: merge on a scratch
            # copy, then swap the result in with everything else
            merged = scratch + ref[len("refs/notes/"):]
            store.update_refs([(merged, mine, None)], "gitevo: sync scratch")
            result = remotes.merge_notes(store, merged, source, merge_note_texts)
            # git's message names the scratch refs; say what happened instead
            new = store.commit(store.tree_id(result), store.parents(result),
                               f"gitevo: notes merged with those of {remote}\n")
        changed = _count_changed(store.read_notes(ref), store.read_notes(merged))
        updates.append((ref, new, mine))
        lines.append(f"{ref}: {changed} note(s) new or merged here")
    return updates, lines


def _count_changed(before: dict[str, str], after: dict[str, str]) -> int:
    return sum(1 for commit, text in after.items() if before.get(commit) != text)


# ---- remote: push what it lacks ------------------------------------------------------------

def _push(store: Store, remote: str, theirs: dict[str, str], report: SyncReport) -> None:
    ours = {**store.refs_under(BRANCH_PREFIX), **store.refs_under(NOTES_PREFIX)}
    refs = [ref for ref, commit in sorted(ours.items()) if theirs.get(ref) != commit]
    # best may move sideways, but only from the value fetched: never over a newer push
    remotes.push(store, remote, refs,
                 leases={ref: theirs.get(ref) for ref in refs if _is_best(ref)})
    report.pushed = [ref for ref in refs if _is_individual(ref)]
    report.moved += [f"pushed {ref}" for ref in refs if not _is_individual(ref)]


def _is_best(ref: str) -> bool:
    return ref.startswith(BRANCH_PREFIX) and ref.endswith("/best")


def _is_individual(ref: str) -> bool:
    return ref.startswith(BRANCH_PREFIX) and not ref.endswith(("/ledger", "/best"))
