"""How the children that saw each of a person's hints fared against the other children of
the same generations: the share that applied and ran (valid), and per objective the share
that beat their parent. Read from the ledger's offspring rows (each names the hints its
prompt showed) and the hints' own notes."""

from __future__ import annotations

from dataclasses import dataclass, field

from gitevo.config import Config
from gitevo.store import hints, ledger
from gitevo.store.fitness import VALID
from gitevo.store.gitstore import Store


@dataclass
class Share:
    children: int = 0
    valid: int = 0
    beat: dict[str, int] = field(default_factory=dict)  # objective -> children that beat

    def add(self, row: dict, parent: dict[str, float] | None, senses: dict[str, str]) -> None:
        self.children += 1
        self.valid += row.get("status") in VALID
        mine = row.get("objectives") or {}
        for name, sense in senses.items():
            better = (parent is not None and name in mine and name in parent and
                      (mine[name] > parent[name] if sense == "max" else mine[name] < parent[name]))
            self.beat[name] = self.beat.get(name, 0) + better

    def line(self) -> str:
        if not self.children:
            return "no children yet"
        beat = ", ".join(f"beat parent on {n} {v / self.children:.0%}"
                         for n, v in self.beat.items())
        return f"{self.children} children, valid {self.valid / self.children:.0%}, {beat}"


@dataclass
class HintStats:
    hint: hints.Hint
    state: str  # waiting, live, over, removed
    saw: Share
    others: Share


def gather(store: Store, config: Config, run: str) -> list[HintStats]:
    """One entry per hint of the run, in the order they were given."""
    found = hints.load(store, run)
    if not found:
        return []
    history = ledger.history(store, run)
    senses = {o.name: o.sense for o in config.objectives}
    known: dict[str, dict[str, float]] = {}
    rows_by_gen: dict[int, list[tuple[dict, dict[str, float] | None]]] = {}
    for gen in history:
        for member in gen.population:
            known.setdefault(member.id, member.objectives)
        for row in gen.offspring:
            if gen.generation and row.get("operator") != "human":
                parent = known.get((row.get("parents") or [""])[0])
                rows_by_gen.setdefault(gen.generation, []).append((row, parent))
            if row.get("status") == "ok" and row.get("objectives"):
                known.setdefault(row["id"], row["objectives"])
    latest = history[-1].generation if history else 0
    out = []
    for hint in found:
        saw, others = Share(), Share()
        for g in range(hint.start, hint.start + hint.generations):
            for row, parent in rows_by_gen.get(g, []):
                (saw if hint.number in row.get("hints", []) else others).add(row, parent,
                                                                             senses)
        out.append(HintStats(hint, _state(hint, latest), saw, others))
    return out


def _state(hint: hints.Hint, latest: int) -> str:
    if hint.removed:
        return "removed"
    if latest + 1 < hint.start:
        return "waiting"
    return "live" if latest + 1 < hint.start + hint.generations else "over"
