"""Individuals as read back from refs, commit trailers and fitness notes (read-only)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import BRANCH_PREFIX, Store, notes_ref

# gNNN-KKK: a planned child; gNNN-hKKK: a person's commit adopted into generation NNN
_ID = re.compile(r"^g(\d{3,})-(h?\d{3,})$")


@dataclass
class Individual:
    id: str
    commit: str
    generation: int
    operator: str
    block: str
    parents: list[str]
    subject: str
    evaluation: Evaluation | None
    prompt: str = ""  # template, or template+persona, of an LLM child; "offline" otherwise
    model: str = ""
    temperature: float | None = None
    hints: list[str] = field(default_factory=list)  # numbers of the hints its prompt showed

    @property
    def status(self) -> str:
        return self.evaluation.status if self.evaluation else "pending"


def commits(store: Store, run: str) -> dict[str, str]:
    """Every individual's commit, keyed by id, oldest first (refs only: no messages read)."""
    prefix = f"{BRANCH_PREFIX}{run}/"
    return {ref[len(prefix):]: commit for ref, commit in sorted(store.refs_under(prefix).items())
            if _ID.match(ref[len(prefix):])}


def load_all(store: Store, run: str) -> dict[str, Individual]:
    """Every individual of a run, keyed by id, oldest first."""
    notes = store.read_notes(notes_ref(run))
    return {ident: _individual(store, ident, int(_ID.match(ident).group(1)), commit,
                               notes.get(commit))
            for ident, commit in commits(store, run).items()}


def _individual(store: Store, ident: str, generation: int, commit: str,
                note: str | None) -> Individual:
    trailers = store.trailers(commit) if generation else {}
    subject = store.message(commit).splitlines()[0] if generation else "seed"
    return Individual(
        id=ident, commit=commit, generation=generation,
        operator=trailers.get("Gitevo-Operator", "seed"), block=trailers.get("Gitevo-Block", ""),
        parents=trailers.get("Gitevo-Parents", "").split(), subject=subject,
        evaluation=Evaluation.from_dict(json.loads(note)) if note else None,
        prompt=trailers.get("Gitevo-Prompt", ""), model=trailers.get("Gitevo-Model", ""),
        temperature=_float(trailers.get("Gitevo-Temperature")),
        hints=trailers.get("Gitevo-Hints", "").split())


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def by_commit(individuals: dict[str, Individual]) -> dict[str, Individual]:
    return {ind.commit: ind for ind in individuals.values()}
