"""Training past the budget: a child whose training took far longer than its parent's.

A candidate that secretly trains more (extra epochs inside its optimizer, a second model
fitted in its forward) can buy accuracy without a better model. gitevo times the fitness
command itself, outside the sandbox, so the time is not the candidate's claim. A child
that took over `ratio` times its parent's training time at the same fidelity, plus
`grace` seconds, with no bigger model to explain it, is marked `suspect`: its scores stay
in its note for anyone to read, but selection does not keep it or breed from it.
"""

from __future__ import annotations

import dataclasses
import math

from gitevo.config import Budget
from gitevo.store.fitness import Evaluation

SUSPECT = "suspect"
PHASE = "fitness"  # the trainer's command, as `timed` records it


def overrun(child: Evaluation, parents: list[Evaluation], budget: Budget) -> str | None:
    """Why `child` is suspect, or None when its training time is explained."""
    seconds = child.timings.get(PHASE)
    peers = [p for p in parents if p.ok and p.fidelity == child.fidelity
             and p.timings.get(PHASE)]
    if not child.ok or seconds is None or not peers:
        return None
    base = max(p.timings[PHASE] for p in peers)  # a crossover may take its slower parent's
    growth = max(1.0, _growth(child, peers, budget.size))
    allowed = base * budget.ratio * growth + budget.grace
    if seconds <= allowed:
        return None
    bigger = f" and {growth:.2f}x its {budget.size}" if growth > 1.0 else ""
    return (f"training ran {seconds:.0f}s, {seconds / base:.1f}x its parent's {base:.0f}s at "
            f"fidelity {child.fidelity}{bigger} (allowed {allowed:.0f}s): suspected of "
            "training past its budget, so it is not selected")


def marked(child: Evaluation, parents: list[Evaluation], budget: Budget) -> Evaluation:
    """`child` as its note should record it: suspect with the reason, or as it was."""
    reason = overrun(child, parents, budget)
    if reason is None:
        return child
    return dataclasses.replace(child, status=SUSPECT, error=reason)


def _growth(child: Evaluation, peers: list[Evaluation], size: str) -> float:
    """How many times bigger the child is than its biggest parent, by `size`."""
    mine = _size(child, size)
    theirs = [s for s in (_size(p, size) for p in peers) if s]
    if not size or mine is None or not theirs:
        return 1.0
    return mine / max(theirs)


def _size(result: Evaluation, size: str) -> float | None:
    value = result.objectives.get(size, result.metrics.get(size))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None
