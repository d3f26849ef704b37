"""`gitevo adopt REV`: a commit that a person wrote becomes an individual of the run.

It is checked as a child is (only gene files changed, every gene file parses into its
blocks, only evolvable blocks changed), evaluated in the sandbox at the run's full
fidelity, and recorded as `g<next>-h<k>` with operator `human`: a commit with REV's tree
whose only parent is REV (so `git log` shows the person's own commits in its lineage), with
trailers naming the individuals it descends from and REV. Its ref and its fitness note are
written in one transaction, after the evaluation: an adoption that fails leaves nothing.
The next generation's selection takes it in like any of its children.
"""

from __future__ import annotations

from collections import deque

from gitevo.config import Config
from gitevo.core.events import Events
from gitevo.pipeline.evolution import Evolution
from gitevo.pipeline.notewriter import note_text
from gitevo.pipeline.plan import evolvable_blocks
from gitevo.store import individuals, ledger
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import GitError, Store, individual_ref, notes_ref

HUMAN = "human"
ADOPTED = "Gitevo-Adopted"  # the trailer that names the person's commit
ANCESTRY_LIMIT = 10_000  # commits walked back from REV looking for individuals


def adopt(store: Store, config: Config, run: str, rev: str,
          events: Events | None = None) -> tuple[str, Evaluation]:
    """Adopt `rev`; returns the new individual's id and its evaluation. Raises GitError
    (one line) for a revision that cannot be adopted, and LockedError while a generation
    runs."""
    commit = store.resolve(rev)
    if commit is None:
        raise GitError(f"{rev}: no such revision")
    with store.lock():  # refused, in one line, while a generation holds it
        current = ledger.read(store, run)
        if current is None:
            raise GitError(f"run {run!r} has no generation 0 yet (`gitevo seed` records one)")
        _check_new(store, run, rev, commit)
        parents = _ancestors(store, run, rev, commit)
        block = _check_genes(store, config, rev, commit, parents[0][1])
        ident = _next_id(store, run, current.generation + 1)
        child = store.commit(store.tree_id(commit), [commit], _message(
            store, rev, commit, [p for p, _ in parents], block))
        evo = Evolution(store, config, run, events=events)
        result = evo.evaluate_alone(ident, child)
        store.write_notes(notes_ref(run), {child: note_text(result)},
                          f"gitevo: adopt {commit[:10]} as {ident}",
                          with_refs=[(individual_ref(run, ident), child, None)])
        return ident, result


def _check_new(store: Store, run: str, rev: str, commit: str) -> None:
    for ident, known in individuals.commits(store, run).items():
        if known == commit:
            raise GitError(f"{rev}: is individual {ident} of run {run!r} already")
        if store.trailers(known).get(ADOPTED) == commit:
            raise GitError(f"{rev}: already adopted as {ident}")


def _ancestors(store: Store, run: str, rev: str, commit: str) -> list[tuple[str, str]]:
    """(id, commit) of the nearest individuals that `commit` descends from, first-parent
    side first: the walk stops at each individual it meets."""
    known = {c: i for i, c in individuals.commits(store, run).items()}
    found: list[tuple[str, str]] = []
    queue, seen = deque(store.parents(commit)), set()
    while queue and len(seen) < ANCESTRY_LIMIT:
        current = queue.popleft()
        if current in seen:
            continue
        seen.add(current)
        if current in known:
            found.append((known[current], current))
            continue
        queue.extend(store.parents(current))
    if not found:
        raise GitError(f"{rev}: descends from no individual of run {run!r} (branch off one, "
                       f"e.g. `git switch -c idea gitevo/{run}/best`)")
    return found


def _check_genes(store: Store, config: Config, rev: str, commit: str, parent: str) -> str:
    """The blocks REV changes against its first ancestor individual, as a trailer value;
    GitError when it changes anything else or leaves a gene file unparsable."""
    changed = store.changed_paths(parent, commit)
    outside = [p for p in changed if p not in config.genes.files]
    if outside:
        raise GitError(f"{rev}: changes files outside the genes: {', '.join(outside[:5])} "
                       f"(genes: {', '.join(config.genes.files)})")
    if not changed:
        raise GitError(f"{rev}: changes no gene file against the individual it descends from")
    before, after = evolvable_blocks(store, config, parent), evolvable_blocks(store, config,
                                                                              commit)
    for path in changed:
        if path.endswith(".py") and not any(k.startswith(f"{path}::") for k in after):
            raise GitError(f"{rev}: {path} has no evolvable block left (it must parse, and "
                           "keep its top-level classes and functions)")
    blocks = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if config.genes.blocks:
        allowed = set(config.genes.blocks)
        moved = [k for k in blocks if k not in allowed]
        if moved:
            raise GitError(f"{rev}: changes blocks outside genes.blocks: {', '.join(moved)}")
    return " ".join(blocks)


def _next_id(store: Store, run: str, generation: int) -> str:
    taken = individuals.commits(store, run)
    k = 0
    while f"g{generation:03d}-h{k:03d}" in taken:
        k += 1
    return f"g{generation:03d}-h{k:03d}"


def _message(store: Store, rev: str, commit: str, parents: list[str], block: str) -> str:
    subject = store.message(commit).strip().splitlines()[0] if store.message(commit).strip() \
        else rev
    return (f"human: {subject}\n\nAdopted from {commit[:10]} ({rev}), a commit a person "
            f"wrote.\n\nGitevo-Operator: {HUMAN}\nGitevo-Parents: {' '.join(parents)}\n"
            f"Gitevo-Block: {block}\n{ADOPTED}: {commit}\n")
