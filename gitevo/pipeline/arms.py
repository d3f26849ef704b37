"""Which model, mutation direction and persona a child's LLM call gets: the allocation.

The arms are three factors, each with a bandit of its own (gitevo.pipeline.bandit): the
model of the ensemble, the mutation direction (the prompt's kind; the operator itself,
crossover, mutation or EoT, stays with [evolution] prob_*), and the persona. Factors rather
than their combinations: with 2 models, 8 directions and 6 personas there would be ~100
combined arms, and a run of a few hundred calls would never learn them; each factor alone
learns from every call that used it.

The state is read from the ledger alone (each offspring row's model, prompt, persona,
outcome and cost), never kept in memory: a rerun after kill -9, or a clone that
`gitevo sync` brought up to date, draws the same plan from the same refs.

A call's reward, in [0, 1], from its child's outcome against its first parent:
    0    no valid child (refused, invalid, crashed, timed out)
    0.2  valid, but its parent dominates it, it was screened out, or it only repeated an
         evaluated individual (reused)
    0.6  valid and not dominated by its parent
    +0.4 it entered the population
An improvement (for cost per improvement) is a child that entered the population: new code
that selection kept, whether it beat its parent outright or traded one objective for another.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gitevo.config import Config
from gitevo.pipeline import bandit
from gitevo.store.ledger import Generation

MODEL, PROMPT, PERSONA = "model", "prompt", "persona"
FACTORS = (MODEL, PROMPT, PERSONA)


@dataclass
class Allocation:
    """The run's arms and how they are drawn."""

    mode: str  # "uniform" | "bandit"
    names: dict[str, list[str]]  # factor -> its arms, in config order
    arms: dict[str, dict[str, bandit.Arm]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)  # the models' weights
    by_cost: bool = False  # models are compared by reward per dollar

    def choose(self, factor: str, rng: random.Random) -> str:
        names = self.names[factor]
        weights = self.weights if factor == MODEL else None
        if self.mode == "uniform" or len(names) == 1:
            return bandit.uniform(names, rng, weights)
        return bandit.draw(names, self.arms.get(factor, {}), rng, weights=weights,
                           by_cost=self.by_cost and factor == MODEL)

    def shares(self, factor: str, seed: str) -> dict[str, float]:
        """The share of the next calls each arm of `factor` would get."""
        names = self.names[factor]
        weights = self.weights if factor == MODEL else {}
        if self.mode == "uniform" or len(names) == 1:
            total = sum(weights.get(n, 1.0) for n in names)
            return {n: weights.get(n, 1.0) / total for n in names}
        return bandit.shares(names, self.arms.get(factor, {}), seed, weights=weights,
                             by_cost=self.by_cost and factor == MODEL)


def allocation(config: Config, directions: Sequence[str], personas: Sequence[str],
               generations: Iterable[Generation]) -> Allocation:
    """The allocation for the next generation, learned from `generations` (oldest first)."""
    models = config.ensemble
    names = {MODEL: [m.label for m in models], PROMPT: list(directions),
             PERSONA: ["none", *personas]}
    mode = config.evolution.allocation or (
        "bandit" if any(len(v) > 1 for v in names.values()) else "uniform")
    by_cost = len(models) > 1 and not any(m.prices.free for m in models)
    return Allocation(mode, names, observe(config, generations),
                      {m.label: m.weight for m in models}, by_cost)


def observe(config: Config, generations: Iterable[Generation]) -> dict[str, dict[str, bandit.Arm]]:
    """Every LLM child's reward, cost and improvement, credited to its arm in each factor."""
    arms: dict[str, dict[str, bandit.Arm]] = {f: {} for f in FACTORS}
    first = config.llm.label
    known: dict[str, dict[str, float]] = {}  # id -> objectives, of every valid individual
    for gen in generations:
        for member in gen.population:
            known.setdefault(member.id, member.objectives)
        entered = {m.id for m in gen.population}
        for row in gen.offspring:
            template = row.get("template") or "offline"
            if template in ("offline", "human"):  # no LLM call to credit
                continue
            reward, improved = outcome(config, row, known, row["id"] in entered)
            cost = float(row.get("cost", 0.0))
            credit = [(MODEL, row.get("model") or first)]
            if template.startswith("mutation/"):
                credit.append((PROMPT, template.split("/", 1)[1]))
            if row.get("operator") != "crossover":
                credit.append((PERSONA, row.get("persona") or "none"))
            for factor, name in credit:
                arms[factor].setdefault(name, bandit.Arm()).add(reward, cost, improved)
    return arms


def outcome(config: Config, row: dict, known: dict[str, dict[str, float]],
            entered: bool) -> tuple[float, bool]:
    """(reward, improved) of one offspring row; see the module's table."""
    status = row.get("status")
    if status not in ("ok", "screened"):
        return 0.0, False
    objectives = row.get("objectives") or {}
    parent = known.get((row.get("parents") or [""])[0])
    if status == "ok" and objectives:
        known.setdefault(row["id"], objectives)
    improved = entered and not row.get("reused")
    if status != "ok" or row.get("reused") or not objectives or parent is None:
        return 0.2 + 0.4 * entered, improved
    names, senses = config.objective_names, config.senses
    beaten = dominates([parent[k] for k in names], [objectives[k] for k in names], senses)
    return (0.2 if beaten else 0.6) + 0.4 * entered, improved


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """a is no worse than b in every objective and better in one (pymoo's selection is
    not imported for this: `gitevo status` shows the arms and must start fast)."""
    signs = [1.0 if s == "max" else -1.0 for s in senses]
    gains = [(x - y) * k for x, y, k in zip(a, b, signs, strict=True)]
    return all(g >= 0 for g in gains) and any(g > 0 for g in gains)
