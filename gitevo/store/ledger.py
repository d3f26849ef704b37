"""The ledger: an orphan branch with one commit per finished generation.

Each commit's tree holds the population, the hall of fame, the generation's
offspring and statistics, and the config in force, as plain JSON/TOML files, so
`git show gitevo/main/ledger:stats.json` answers questions without gitevo.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from gitevo.store.gitstore import Store, best_ref, ledger_ref, llm_notes_ref

NOTEBOOK_FILE = "notebook.md"  # the run notebook's lessons, rewritten after a generation


@dataclass
class Member:
    """An individual as selection sees it."""

    id: str
    commit: str
    objectives: dict[str, float]
    violation: float = 0.0


@dataclass
class Generation:
    generation: int
    population: list[Member]
    hall_of_fame: list[Member]
    reference: list[float]
    stats: dict[str, Any] = field(default_factory=dict)
    offspring: list[dict[str, Any]] = field(default_factory=list)
    config: str = ""
    notebook: str | None = None  # the run notebook's text after this generation, if kept


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _members(text: str) -> list[Member]:
    return [Member(**m) for m in json.loads(text)]


def read(store: Store, run: str, commit: str | None = None) -> Generation | None:
    """The latest finished generation (or the one at `commit`), or None before the first."""
    commit = commit or store.resolve_ref(ledger_ref(run))
    if commit is None:
        return None
    files = store.read_tree_files(commit)
    stats = json.loads(files["stats.json"])
    return Generation(generation=stats["generation"], population=_members(files["population.json"]),
                      hall_of_fame=_members(files["hall_of_fame.json"]),
                      reference=stats.get("reference", []), stats=stats,
                      offspring=json.loads(files.get("offspring.json", "[]")),
                      config=files.get("config.toml", ""),
                      notebook=files.get(NOTEBOOK_FILE))


def history(store: Store, run: str) -> list[Generation]:
    """Every finished generation, oldest first."""
    head = store.resolve_ref(ledger_ref(run))
    if head is None:
        return []
    found = [read(store, run, c) for c in store.first_parent_chain(head)]
    return [g for g in reversed(found) if g is not None]


def record(store: Store, run: str, gen: Generation, champion: str, message: str,
           provenance: str | None = None) -> str:
    """Commit a generation to the ledger and move `best`, in one ref transaction; with
    `provenance` (the notebook call's conversation), its note on the ledger commit in the
    same transaction."""
    stats = {**gen.stats, "generation": gen.generation, "reference": gen.reference}
    files = {"population.json": _dump([asdict(m) for m in gen.population]),
             "hall_of_fame.json": _dump([asdict(m) for m in gen.hall_of_fame]),
             "offspring.json": _dump(gen.offspring), "stats.json": _dump(stats),
             "config.toml": gen.config}
    if gen.notebook is not None:
        files[NOTEBOOK_FILE] = gen.notebook.rstrip("\n") + "\n"
    old = store.resolve_ref(ledger_ref(run))
    commit = store.commit(store.flat_tree(files), [old] if old else [], message)
    moves = [(ledger_ref(run), commit, old),
             (best_ref(run), champion, store.resolve_ref(best_ref(run)))]
    if provenance is None:
        store.update_refs(moves, f"gitevo: generation {gen.generation}")
    else:
        store.write_notes(llm_notes_ref(run), {commit: provenance},
                          f"gitevo: generation {gen.generation} notebook", with_refs=moves)
    return commit
