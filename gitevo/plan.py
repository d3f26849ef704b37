"""Step 1 of a generation: decide every offspring's parents, operator and block up front.

The plan is drawn from an RNG seeded by (run seed, generation), so the same config
gives the same plan, and it is saved under .git/gitevo/ before any work starts, so
a rerun after a crash finishes exactly the plan that was begun.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from gitevo import genome, offline, selection
from gitevo.config import Config
from gitevo.gitstore import Store
from gitevo.ledger import Member

MUTATION, CROSSOVER = "mutation", "crossover"


@dataclass
class Spec:
    """One planned offspring and, once known, what became of it."""

    id: str
    operator: str
    parents: list[str]
    block: str
    seed: int
    rejected: str | None = None  # the reason, when the proposal could not be applied


@dataclass
class Plan:
    generation: int
    specs: list[Spec]

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the old plan or the new one, never half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"generation": self.generation,
                                   "specs": [asdict(s) for s in self.specs]}, indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Plan | None:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(data["generation"], [Spec(**s) for s in data["specs"]])


def individual_id(generation: int, index: int) -> str:
    return f"g{generation:03d}-{index:03d}"


def make_plan(store: Store, config: Config, generation: int, population: list[Member],
              n: int) -> Plan:
    """Draw parents by NSGA-II tournament, then an operator and a block for each child."""
    rng = random.Random(f"gitevo:{config.evolution.seed}:{generation}")
    picks = _tournament(config, population, 2 * n, rng.getrandbits(32))
    specs = []
    for i in range(n):
        first, second = population[picks[2 * i]], population[picks[2 * i + 1]]
        specs.append(_spec(store, config, individual_id(generation, i), first, second, rng))
    return Plan(generation, specs)


def _tournament(config: Config, population: list[Member], n: int, seed: int) -> list[int]:
    names = config.objective_names
    values = [[m.objectives[k] for k in names] for m in population]
    return selection.select_parents(values, config.senses, [m.violation for m in population],
                                    n, seed)


def _spec(store: Store, config: Config, ident: str, first: Member, second: Member,
          rng: random.Random) -> Spec:
    operator = _draw_operator(config, rng)
    if operator == CROSSOVER:
        shared = crossover_blocks(store, config, first.commit, second.commit)
        if shared:
            return Spec(ident, CROSSOVER, [first.id, second.id], rng.choice(shared),
                        rng.getrandbits(32))
    blocks = mutable_blocks(store, config, first.commit)
    if not blocks:
        raise ValueError(f"{config.path}: genes: no evolvable block in {first.id}")
    return Spec(ident, MUTATION, [first.id], rng.choice(blocks), rng.getrandbits(32))


def _draw_operator(config: Config, rng: random.Random) -> str:
    evo = config.evolution
    # offline, Evolution of Thought has no LLM to reason with, so it counts as mutation
    mutation = evo.prob_mutation + evo.prob_eot
    return CROSSOVER if rng.random() * (evo.prob_crossover + mutation) < evo.prob_crossover \
        else MUTATION


def _python_genes(store: Store, config: Config, commit: str) -> Iterator[tuple[str, str]]:
    """(path, source) of each Python gene file present at `commit`."""
    for path in config.genes.files:
        source = store.read_file(commit, path)
        if source is not None and path.endswith(".py"):
            yield path, source


def evolvable_blocks(store: Store, config: Config, commit: str) -> dict[str, str]:
    """Each evolvable block's key ("file::Name") mapped to its source text at `commit`."""
    allowed = set(config.genes.blocks)
    out = {}
    for path, source in _python_genes(store, config, commit):
        try:
            found = genome.blocks(source, path)
        except genome.GenomeError:
            continue  # an unparsable parent has no blocks to offer
        out.update((b.key, b.text) for b in found if not allowed or b.key in allowed)
    return out


def mutable_blocks(store: Store, config: Config, commit: str) -> list[str]:
    """Evolvable blocks that the offline mutation has something to change in."""
    evolvable = evolvable_blocks(store, config, commit)
    found = []
    for path, source in _python_genes(store, config, commit):
        try:
            names = offline.mutable_blocks(source)  # whole file: defaults need their callers
        except (genome.GenomeError, SyntaxError):
            continue
        found += [key for key in (f"{path}::{n}" for n in names) if key in evolvable]
    return found


def crossover_blocks(store: Store, config: Config, a: str, b: str) -> list[str]:
    """Evolvable blocks whose text differs between two parents."""
    if a == b:
        return []
    mine, theirs = evolvable_blocks(store, config, a), evolvable_blocks(store, config, b)
    return [key for key, text in mine.items() if key in theirs and theirs[key] != text]
