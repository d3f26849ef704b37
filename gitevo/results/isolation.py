"""What confined a set of evaluations, as their fitness notes recorded it: one line for
`gitevo status` and the HTML report."""

from __future__ import annotations

from gitevo.execution import protection
from gitevo.store.individuals import Individual


def line(individuals: list[Individual]) -> str:
    """What confined the evaluations of `individuals`, as their notes recorded it."""
    counts: dict[str, int] = {}
    for ind in individuals:
        found = ind.evaluation.isolation if ind.evaluation else None
        key = protection.summary(found) if found else "not recorded"
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return ""
    return "isolation of their evaluations: " + "; ".join(
        f"{key} ({n})" for key, n in sorted(counts.items(), key=lambda kv: -kv[1]))
