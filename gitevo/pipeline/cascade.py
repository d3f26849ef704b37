"""A fidelity cascade: screen every child cheaply, train in full only the ones that earn it.

Each screening rung of [fitness.cascade] evaluates the children that reached it at its
cheaper fidelity and promotes a share of them, by non-dominated rank then crowding, to
the next; the last rung is the full evaluation ([fitness] as configured), the only one
selection looks at. A rung's results are notes on a ref of their own, so a rerun after a
crash runs no rung twice and takes the same decisions from the same notes. A child that
stops at a screening rung gets its fitness note there: status `screened` (or the failure
it had), with every rung it reached.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gitevo.config import Config, Rung
from gitevo.pipeline import selection
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import notes_ref, rung_ref

SCREENED = "screened"


@dataclass(frozen=True)
class Stage:
    """Where one round of evaluations runs and where its notes go."""

    number: int  # 1-based; the last stage is the full evaluation
    ref: str
    fidelity: str
    variables: dict[str, str]
    rung: Rung | None  # None for the full evaluation

    @property
    def final(self) -> bool:
        return self.rung is None


def stages(config: Config, run: str) -> list[Stage]:
    """The screening rungs in order, then the full evaluation."""
    fitness = config.fitness
    out = [Stage(i, rung_ref(run, i), rung.fidelity or fitness.fidelity,
                 {**fitness.vars, **rung.vars}, rung)
           for i, rung in enumerate(fitness.rungs, start=1)]
    return out + [Stage(len(out) + 1, notes_ref(run), fitness.fidelity, dict(fitness.vars),
                        None)]


def promote(results: dict[str, Evaluation], rung: Rung, config: Config, seed: int,
            parents: dict[str, Evaluation] | None = None) -> list[str]:
    """The ids that go on from this rung: the best `rung.promote` share (rounded up) of
    the ones it scored, by non-dominated rank then crowding, feasible ones first, leaving
    out any that `rung.margin` holds back against its parent's result here (`parents`)."""
    scored = sum(r.ok for r in results.values())
    return _best(results, math.ceil(rung.promote * scored), rung, config, seed, parents)


def due(results: dict[str, Evaluation], remaining: int | None, rung: Rung, config: Config,
        seed: int, parents: dict[str, Evaluation], promoted: set[str],
        rule: str = "async") -> list[str]:
    """The ids to promote now that are not yet; `remaining`: how many children may still
    come in at this rung (0: it is whole; None: not known yet). Once whole, every one
    `promote` picks. Before, by `rule`: "async", every child already certain to be among
    them (`certain`), so the rung promotes exactly whom waiting would have, only sooner;
    "asha", ASHA's rule, the best `rung.promote` share (rounded down) of the children
    scored so far, which starts more children early but may promote a few that the
    whole rung would not have (never fewer)."""
    if remaining == 0:
        chosen = promote(results, rung, config, seed, parents)
    elif rule == "asha":
        scored = sum(r.ok for r in results.values())
        chosen = _best(results, math.floor(rung.promote * scored), rung, config, seed, parents)
    elif remaining is None:
        chosen = []
    else:
        chosen = certain(results, remaining, rung, config, parents)
    return [i for i in chosen if i not in promoted]


def certain(results: dict[str, Evaluation], remaining: int, rung: Rung, config: Config,
            parents: dict[str, Evaluation]) -> list[str]:
    """The children `promote` will pick whatever the `remaining` ones score. A child
    that dominates another (or is feasible where it is not, or breaks the constraints
    less) is ahead of it in every order by rank and crowding; so a child is certain
    when the siblings that might be ahead of it, plus every one still to come, are fewer
    than the places the rung will give even if all of those come in scored."""
    eligible = _eligible(results, rung, config, parents)
    scored = sum(r.ok for r in results.values())
    places = math.ceil(rung.promote * (scored + remaining))
    keys = {i: (_oriented(results[i], config), violation(results[i], config))
            for i in eligible}
    return [c for c in eligible
            if sum(not _ahead(keys[c], keys[d]) for d in eligible if d != c) + remaining
            < places]


def _oriented(result: Evaluation, config: Config) -> tuple[float, ...]:
    """Objective values where lower is better."""
    return tuple(-v if o.sense == "max" else v
                 for o in config.objectives for v in [result.objectives[o.name]])


def _ahead(mine: tuple, theirs: tuple) -> bool:
    """Whether `mine` comes before `theirs` in every ranking: feasible before infeasible,
    less violation among the infeasible, Pareto dominance among the feasible."""
    (a, va), (b, vb) = mine, theirs
    if va or vb:
        return va < vb
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def _eligible(results: dict[str, Evaluation], rung: Rung, config: Config,
              parents: dict[str, Evaluation]) -> list[str]:
    """The children scored at this rung that its margin does not hold back."""
    return [i for i, r in results.items()
            if r.ok and behind(r, parents.get(i), rung, config) is None]


def _best(results: dict[str, Evaluation], n: int, rung: Rung, config: Config, seed: int,
          parents: dict[str, Evaluation] | None) -> list[str]:
    eligible = _eligible(results, rung, config, parents or {})
    if not eligible or n <= 0:
        return []
    names = config.objective_names
    values = [[results[i].objectives[name] for name in names] for i in eligible]
    violations = [violation(results[i], config) for i in eligible]
    chosen = selection.best_by_rank(values, config.senses, violations,
                                    min(len(eligible), n), seed)
    return [eligible[k] for k in chosen]


def behind(result: Evaluation, parent: Evaluation | None, rung: Rung,
           config: Config) -> str | None:
    """Why `rung.margin` holds the child back: its first objective here is worse than its
    parent's at this same rung by more than the margin; None when it does not (no margin,
    or no parent's result to hold it to)."""
    if rung.margin is None or parent is None or not parent.ok or not result.ok:
        return None
    objective = config.objectives[0]
    mine, theirs = result.objectives[objective.name], parent.objectives.get(objective.name)
    if theirs is None:
        return None
    gap = theirs - mine if objective.sense == "max" else mine - theirs
    if gap <= rung.margin:
        return None
    return (f"{objective.name} {mine:.6g} is behind its parent's {theirs:.6g} at this rung "
            f"by more than {rung.margin:g}")


def violation(result: Evaluation, config: Config) -> float:
    """How far the result breaks the constraints (0: feasible); a missing metric breaks
    them as far as it can."""
    total = 0.0
    for constraint in config.evolution.constraints:
        value = result.metrics.get(constraint.metric, result.objectives.get(constraint.metric))
        total += (math.inf if not isinstance(value, int | float)
                  else constraint.violation(float(value)))
    return total


def summary(stage: Stage, result: Evaluation) -> dict:
    """One rung as the final note lists it."""
    return {"rung": stage.number, "fidelity": stage.fidelity, "vars": stage.rung.vars
            if stage.rung else {}, "status": result.status, "objectives": result.objectives,
            "seconds": round(result.seconds, 3), "timings": result.timings,
            **({"error": result.error.splitlines()[0]} if result.error else {})}


def stopped(stage: Stage, history: list[dict], result: Evaluation, promoted: int,
            scored: int, held_back: str | None = None) -> Evaluation:
    """The fitness note of a child whose cascade ends at `stage`: screened when it was
    scored there but not promoted (`held_back`: the margin's reason), its own failure
    when it failed there."""
    if result.ok:
        why = held_back or f"{promoted} of the {scored} children it scored went on"
        return Evaluation(SCREENED, fidelity=stage.fidelity, seconds=result.seconds,
                          error=f"screened out at rung {stage.number} ({stage.fidelity}): "
                                f"{why}", timings=result.timings, rungs=history)
    return dataclasses.replace(result, rungs=history)


def spearman(first: list[float], second: list[float]) -> float | None:
    """Rank correlation of two rungs' values over the children that reached both."""
    if len(first) < 3 or len(set(first)) < 2 or len(set(second)) < 2:
        return None
    from scipy.stats import spearmanr

    return round(float(spearmanr(first, second).statistic), 4)


def training_seconds(result: Evaluation) -> float:
    """What the evaluation cost in training: the trainer and the scorer, as gitevo timed
    them (the checks aside)."""
    return result.timings.get("fitness", 0.0) + result.timings.get("score", 0.0)
