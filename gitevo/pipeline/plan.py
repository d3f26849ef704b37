"""Step 1 of a generation: decide every offspring's parents, operator and block up front.

The plan is drawn from an RNG seeded by (run seed, generation), so the same config
gives the same plan, and it is saved under .git/gitevo/ before any work starts, so
a rerun after a crash finishes exactly the plan that was begun.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from gitevo.config import Config, ConfigError
from gitevo.pipeline import arms, selection
from gitevo.store import hints as hints_store
from gitevo.store.gitstore import GitError, Store
from gitevo.store.ledger import Member
from gitevo.variation import genome, offline
from gitevo.variation.prompts import PromptLibrary
from gitevo.variation.spec import CROSSOVER, EOT, MUTATION, Spec


def plan_path(store: Store, run: str) -> Path:
    """Where the generation in progress keeps its plan (gone once the generation is)."""
    return store.state_dir / "runs" / run / "plan.json"


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


SEED_ID = individual_id(0, 0)


def no_seed(root: Path, run: str) -> GitError:
    """The error of a run that has no seed branch, naming the command that records one."""
    return GitError(f"{root}: run {run!r} has no seed yet (`gitevo seed` records HEAD as its "
                    "seed and evaluates it)")


def make_plan(store: Store, config: Config, generation: int, population: list[Member],
              n: int, seed_commit: str, library: PromptLibrary | None = None,
              allocation: arms.Allocation | None = None,
              hints: list[hints_store.Hint] | None = None) -> Plan:
    """Draw parents by NSGA-II tournament, then operator, block and sampling per child.

    `library` is None for the offline operators; with an LLM it supplies the mutation
    directions and personas, and `allocation` (default: uniform, nothing learned yet)
    draws among them and the models.
    """
    rng = random.Random(f"gitevo:{config.evolution.seed}:{generation}")
    picks = _tournament(config, population, 2 * n, rng.getrandbits(32))
    if library is not None and allocation is None:
        allocation = arms.allocation(config, library.directions, library.personas, [])
    # the allocation draws from a stream of its own: what it learns moves models, directions
    # and personas, never which parents, operators and blocks the plan picks
    draws = random.Random(f"gitevo:{config.evolution.seed}:{generation}:allocation")
    planner = _Planner(store, config, population, seed_commit, library, allocation, draws,
                       [h for h in hints or [] if h.live(generation)], generation)
    operators = planner.operators(n, rng)
    specs = []
    for i in range(n):
        first, second = population[picks[2 * i]], population[picks[2 * i + 1]]
        specs.append(planner.spec(individual_id(generation, i), first, second, operators[i],
                                  rng))
    return Plan(generation, specs)


def _tournament(config: Config, population: list[Member], n: int, seed: int) -> list[int]:
    names = config.objective_names
    values = [[m.objectives[k] for k in names] for m in population]
    return selection.select_parents(values, config.senses, [m.violation for m in population],
                                    n, seed)


class _Planner:
    """Draws one child's operator, block and (with an LLM) prompt and sampling."""

    def __init__(self, store: Store, config: Config, population: list[Member], seed: str,
                 library: PromptLibrary | None, allocation: arms.Allocation | None,
                 draws: random.Random, hints: list[hints_store.Hint], generation: int):
        self.store, self.config, self.library = store, config, library
        self.allocation, self.draws = allocation, draws
        self.hints, self.generation = hints, generation  # the hints live this generation
        self.population = population
        self.commits = {m.id: m.commit for m in population}
        self.lessons = _lessons(store, config, population, seed) if library else []

    def spec(self, ident: str, first: Member, second: Member, operator: str,
             rng: random.Random) -> Spec:
        if operator == CROSSOVER:
            partner, shared = self._partner(first, second, rng)
            if shared:
                spec = Spec(ident, CROSSOVER, [first.id, partner.id], rng.choice(shared),
                            rng.getrandbits(32))
                return self._sampling(spec, rng, "crossover")
        blocks = self._blocks(first)
        block = rng.choice(blocks)
        if operator == EOT and self.lessons:
            elite, lesson = rng.choice(self.lessons)
            spec = Spec(ident, EOT, [first.id], block, rng.getrandbits(32), elite=elite.id,
                        lesson=rng.choice(lesson))
            return self._sampling(spec, rng, "eot")
        spec = Spec(ident, MUTATION, [first.id], block, rng.getrandbits(32))
        direction = self.allocation.choose(arms.PROMPT, self.draws) if self.library else ""
        return self._sampling(spec, rng, f"mutation/{direction}")

    def _partner(self, first: Member, second: Member,
                 rng: random.Random) -> tuple[Member, list[str]]:
        """The tournament's second parent, or, when it has no block that differs from the
        first (often the same winner twice), another member that does. Only a population
        with no diversity at all (generation 1) turns a crossover into a mutation."""
        shared = crossover_blocks(self.store, self.config, first.commit, second.commit)
        if shared:
            return second, shared
        others = [m for m in self.population if m.id not in (first.id, second.id)]
        for partner in rng.sample(others, len(others)):
            shared = crossover_blocks(self.store, self.config, first.commit, partner.commit)
            if shared:
                return partner, shared
        return second, []

    def operators(self, n: int, rng: random.Random) -> list[str]:
        """The generation's operators, in shuffled order.

        Stochastic universal sampling: one random offset and n evenly spaced pointers,
        so every operator gets its share of the n children to within one (with 8
        children and prob_crossover 0.3, always 2 or 3 crossovers; independent draws
        give none one generation in 17).
        """
        evo = self.config.evolution
        weights = {CROSSOVER: evo.prob_crossover, MUTATION: evo.prob_mutation,
                   EOT: evo.prob_eot}
        if self.library is None:
            # offline, Evolution of Thought has no LLM to reason with: it counts as mutation
            weights = {CROSSOVER: evo.prob_crossover, MUTATION: evo.prob_mutation + evo.prob_eot}
        total, offset = sum(weights.values()), rng.random()
        drawn, edge = [], 0.0
        for operator, weight in weights.items():
            low, edge = edge, edge + weight / total * n
            drawn += [operator] * (math.floor(edge - offset) - math.floor(low - offset))
        drawn += [MUTATION] * (n - len(drawn))  # float rounding at the very top
        rng.shuffle(drawn)
        return drawn[:n]

    def _blocks(self, parent: Member) -> list[str]:
        if self.library is None:
            blocks = mutable_blocks(self.store, self.config, parent.commit)
        else:
            blocks = list(evolvable_blocks(self.store, self.config, parent.commit))
        if not blocks:
            raise ConfigError(f"{self.config.path}: genes: no evolvable block in {parent.id}")
        return blocks

    def _sampling(self, spec: Spec, rng: random.Random, template: str) -> Spec:
        """Model, persona, temperature and max tokens for an LLM call (offline: none)."""
        if self.library is None:
            return spec
        spec.model = self.allocation.choose(arms.MODEL, self.draws)
        settings = next(m for m in self.config.ensemble if m.label == spec.model)
        spec.template = template
        if template != "crossover":  # a crossover weighs two parents in its own voice
            spec.persona = self.allocation.choose(arms.PERSONA, self.draws)
        spec.temperature = settings.draw_temperature(rng)
        spec.hints = [h.number for h in self.hints if h.live(self.generation, spec.block)]
        blocks = evolvable_blocks(self.store, self.config, self.commits[spec.parents[0]])
        spec.max_tokens = settings.max_tokens_for(len(blocks.get(spec.block, "")), rng)
        return spec


ELITES_FOR_EOT = 3  # EoT learns from the best few of the population, not its tail


def _lessons(store: Store, config: Config, population: list[Member],
             seed: str) -> list[tuple[Member, list[str]]]:
    """Elites (best first) with the blocks in which each differs from the seed."""
    found = []
    for member in population:
        if member.commit == seed:
            continue
        blocks = crossover_blocks(store, config, seed, member.commit)
        if blocks:
            found.append((member, blocks))
        if len(found) == ELITES_FOR_EOT:
            break
    return found


def _python_genes(store: Store, config: Config, commit: str) -> Iterator[tuple[str, str]]:
    """(path, source) of each Python gene file present at `commit`."""
    for path in config.genes.files:
        source = store.read_file(commit, path)
        if source is not None and path.endswith(".py"):
            yield path, source


def check_genes(store: Store, config: Config, commit: str) -> None:
    """genes.files and genes.blocks must name what the seed `commit` holds: a typo there
    would otherwise surface as an empty plan, after work was written."""
    for name in config.genes.files:
        if store.read_file(commit, name) is None:
            raise ConfigError(f"{config.path}: genes.files: {name} is not in the seed "
                              f"({commit[:10]})")
    try:
        for path, source in _python_genes(store, config, commit):
            genome.blocks(source, path)
    except genome.GenomeError:
        return  # the seed's own evaluation says what is wrong with it, and plans nothing
    present = evolvable_blocks(store, config, commit)  # the allowlisted ones that exist
    if not present and not config.genes.blocks:
        raise ConfigError(f"{config.path}: genes.files: no top-level class or function to "
                          f"evolve in {', '.join(config.genes.files)} of the seed "
                          f"({commit[:10]})")
    for key in config.genes.blocks:
        if key not in present:
            raise ConfigError(f"{config.path}: genes.blocks: {key} is not a top-level class "
                              f"or function of the seed ({commit[:10]})")


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
