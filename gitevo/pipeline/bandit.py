"""Thompson sampling over a few arms, with an exploration floor and an optional cost.

The rule (Thompson, 1933; for Bernoulli-like rewards in [0, 1], Agrawal and Goyal 2012):
each arm keeps a Beta(1 + sum of rewards, 1 + sum of (1 - reward)) belief about its mean
reward; a draw samples one value from each arm's belief and takes the arm with the highest
sample (divided by the arm's mean cost per call when costs are compared), so an arm is
chosen as often as it is likely to be the best. A share `floor` of the draws goes to an arm
chosen by weight alone, so no arm starves: an arm that lost early can still show that it
has become the better one.

Pure: no git, no config. The caller owns the random stream, so a seeded stream gives the
same choices for the same observations.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FLOOR = 0.1  # the share of draws made by weight alone, whatever the beliefs
SHARE_SAMPLES = 4000  # draws behind a shown allocation: its shares are within ~1.5%


@dataclass
class Arm:
    """What one arm has earned so far."""

    calls: int = 0
    reward: float = 0.0  # the sum of rewards, each in [0, 1]
    cost: float = 0.0  # USD spent on its calls
    improvements: int = 0

    def add(self, reward: float, cost: float, improved: bool) -> None:
        self.calls += 1
        self.reward += reward
        self.cost += cost
        self.improvements += improved

    @property
    def mean(self) -> float | None:
        return self.reward / self.calls if self.calls else None

    @property
    def cost_per_improvement(self) -> float | None:
        return self.cost / self.improvements if self.improvements else None


def draw(names: Sequence[str], arms: Mapping[str, Arm], rng: random.Random, *,
         weights: Mapping[str, float] | None = None, by_cost: bool = False,
         floor: float = FLOOR) -> str:
    """One arm's name, by Thompson sampling over `arms` (missing names: no calls yet).

    `weights` bias the floor's draws (default equal); with `by_cost`, a sample is divided
    by its arm's mean cost per call, so the rule seeks reward per dollar. It always takes
    the same number of random values for the same `names`, whatever it chooses, so one
    factor's choice never shifts another's stream."""
    explore, pick = rng.random(), rng.random()
    samples = {name: _sample(arms.get(name), rng) for name in names}
    if explore < floor:
        return _weighted(names, weights or {}, pick)
    if by_cost:
        typical = _typical_cost(arms, names)
        samples = {n: s / _mean_cost(arms.get(n), typical) for n, s in samples.items()}
    return max(names, key=lambda n: samples[n])  # first of equals: names are ordered


def shares(names: Sequence[str], arms: Mapping[str, Arm], seed: str, *,
           weights: Mapping[str, float] | None = None, by_cost: bool = False,
           floor: float = FLOOR) -> dict[str, float]:
    """The share of draws each arm would get now (for tables): many draws, seeded."""
    rng = random.Random(seed)
    counts = dict.fromkeys(names, 0)
    for _ in range(SHARE_SAMPLES):
        counts[draw(names, arms, rng, weights=weights, by_cost=by_cost, floor=floor)] += 1
    return {name: counts[name] / SHARE_SAMPLES for name in names}


def uniform(names: Sequence[str], rng: random.Random,
            weights: Mapping[str, float] | None = None) -> str:
    """An arm by weight alone (the "uniform" allocation)."""
    return _weighted(names, weights or {}, rng.random())


def _sample(arm: Arm | None, rng: random.Random) -> float:
    arm = arm or Arm()
    return rng.betavariate(1.0 + arm.reward, 1.0 + arm.calls - arm.reward)


def _weighted(names: Sequence[str], weights: Mapping[str, float], u: float) -> str:
    total = sum(weights.get(n, 1.0) for n in names)
    edge = 0.0
    for name in names:
        edge += weights.get(name, 1.0) / total
        if u < edge:
            return name
    return names[-1]


def _typical_cost(arms: Mapping[str, Arm], names: Sequence[str]) -> float:
    """The mean cost per call over every arm with calls: what an untried arm is taken to
    cost until it has its own."""
    calls = sum(arms[n].calls for n in names if n in arms)
    spent = sum(arms[n].cost for n in names if n in arms)
    return spent / calls if calls and spent > 0 else 1.0


def _mean_cost(arm: Arm | None, typical: float) -> float:
    if arm is None or not arm.calls or arm.cost <= 0:
        return typical
    return arm.cost / arm.calls
