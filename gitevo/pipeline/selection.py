"""Multi-objective selection: SPEA2 survival, NSGA-II tournaments, Pareto front, hypervolume.

Plain data in, plain data out: callers pass one objective vector per individual in natural
units, a sense ("max" or "min") per objective and a constraint violation per individual
(0 = feasible), and get back indices into what they passed. Mapping indices to commits is
the caller's business.

The algorithms are pymoo's own (SPEA2Survival, RankAndCrowding, the NSGA-II binary
tournament, HV backed by moocore); this module only converts to pymoo's conventions:
minimisation, a population of Individuals with F and G, and a numpy Generator.

numpy and pymoo load inside the functions, never at import time: the CLI imports this
module and must start fast (pymoo alone takes about two seconds to import).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

SENSES = ("max", "min")

Values = Sequence[Sequence[float]]


# ---------------------------------------------------------------------------------------------
# Input checks and conversion to pymoo's conventions
# ---------------------------------------------------------------------------------------------


def _check_senses(senses: Sequence[str]) -> None:
    if len(senses) == 0:
        raise ValueError("senses: at least one objective is needed")
    for k, sense in enumerate(senses):
        if sense not in SENSES:
            raise ValueError(f"senses[{k}]: {sense!r} is not 'max' or 'min'")


def _check_vector(vector: Sequence[float], senses: Sequence[str], name: str) -> None:
    if len(vector) != len(senses):
        raise ValueError(f"{name}: {len(vector)} objectives, but {len(senses)} senses are given")
    if not all(math.isfinite(float(v)) for v in vector):
        raise ValueError(f"{name}: not finite: {list(vector)}")


def _check_values(values: Values, senses: Sequence[str]) -> None:
    """Reject ragged vectors and NaN/inf: pymoo would sort them silently into nonsense."""
    _check_senses(senses)
    for i, vector in enumerate(values):
        _check_vector(vector, senses, f"values[{i}]")


def _check_violations(violations: Sequence[float], n: int) -> None:
    if len(violations) != n:
        raise ValueError(f"violations: {len(violations)} given for {n} individuals")
    for i, cv in enumerate(violations):
        if not math.isfinite(float(cv)) or cv < 0:
            raise ValueError(f"violations[{i}]: {cv} is not a finite number >= 0")


def _check_all(values: Values, senses: Sequence[str], violations: Sequence[float]) -> None:
    _check_values(values, senses)
    _check_violations(violations, len(values))


def _to_min(values: Values, senses: Sequence[str]) -> np.ndarray:
    """Objectives as pymoo wants them: one row per individual, every column minimised."""
    import numpy as np

    F = np.asarray(values, dtype=float).reshape(len(values), len(senses))
    flip = np.array([-1.0 if s == "max" else 1.0 for s in senses])
    return F * flip


def _normalized(F: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """Scale each objective to [0, 1] over the feasible individuals.

    SPEA2's density and truncation use Euclidean distances, and in natural units a
    parameter count (~1e5) would drown an accuracy (~1). Dominance is unchanged by this
    scaling. pymoo's own SPEA2Survival(normalize=True) keeps its bounds across calls and
    overrides fitness with hyperplane extreme points, which does not suit a stateless
    function, so we scale once here with pymoo's ZeroToOneNormalization instead.
    """
    from pymoo.util.normalization import ZeroToOneNormalization

    basis = F[cv <= 0] if (cv <= 0).any() else F
    # equal bounds (a constant objective) map to 0 rather than dividing by zero
    return ZeroToOneNormalization(basis.min(axis=0), basis.max(axis=0)).forward(F)


def _population(F: np.ndarray, cv: np.ndarray) -> tuple[Any, Any]:
    """A pymoo problem and population whose single inequality constraint is the violation.

    G = violation gives CV = max(0, G) = violation, so pymoo's feasibility split and
    constrained tournaments see exactly the caller's numbers.
    """
    from pymoo.core.population import Population
    from pymoo.core.problem import Problem

    problem = Problem(n_var=1, n_obj=F.shape[1], n_ieq_constr=1)
    return problem, Population.new("F", F, "G", cv.reshape(-1, 1))


def _arrays(
    values: Values, senses: Sequence[str], violations: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    _check_all(values, senses, violations)
    return _to_min(values, senses), np.asarray(violations, dtype=float).reshape(-1)


# ---------------------------------------------------------------------------------------------
# SPEA2 environmental selection and the hall of fame
# ---------------------------------------------------------------------------------------------


def _spea2(F: np.ndarray, cv: np.ndarray, n_survive: int, seed: int) -> list[int]:
    """Survivors by pymoo's SPEA2Survival, best first.

    pymoo returns non-dominated survivors in index order, then fill-ins by SPEA2 fitness,
    then infeasible ones by violation. We re-order what it chose so "best first" holds:
    feasible by SPEA2 fitness (raw strength + density; non-dominated ones are < 1, the rest
    >= 1), then infeasible by violation; remaining ties go to the lower index.
    """
    import numpy as np
    from pymoo.algorithms.moo.spea2 import SPEA2Survival

    if n_survive <= 0 or len(F) == 0:
        return []
    problem, pop = _population(_normalized(F, cv), cv)
    # SPEA2Survival is deterministic today; the seeded Generator keeps it so if that changes
    chosen = SPEA2Survival(normalize=False).do(
        problem,
        pop,
        n_survive=min(n_survive, len(F)),
        return_indices=True,
        random_state=np.random.default_rng(seed),
    )

    def key(i: int) -> tuple[int, float, int]:
        if cv[i] > 0:
            return (1, float(cv[i]), i)
        return (0, float(pop[i].get("SPEA_F")), i)

    return sorted((int(i) for i in chosen), key=key)


def environmental_selection(
    values: Values,
    senses: Sequence[str],
    violations: Sequence[float],
    n_survive: int,
    seed: int,
) -> list[int]:
    """SPEA2 environmental selection (elitism) over population + offspring.

    Returns the indices of the min(n_survive, len(values)) survivors, best first: every
    feasible survivor before any infeasible one, infeasible ones by increasing violation.
    When there are more non-dominated feasible individuals than places, SPEA2's
    nearest-neighbour truncation thins the crowded parts and keeps the extremes.
    Deterministic for a given input and seed.
    """
    if n_survive < 0:
        raise ValueError(f"n_survive: {n_survive} is negative")
    F, cv = _arrays(values, senses, violations)
    return _spea2(F, cv, n_survive, seed)


def hall_of_fame(
    values: Values,
    senses: Sequence[str],
    violations: Sequence[float],
    size: int,
    seed: int,
) -> list[int]:
    """The best-ever archive: up to `size` feasible individuals, best first.

    Non-dominated feasible individuals, thinned by SPEA2 truncation when there are more
    than `size`; when there are fewer, filled with the best dominated feasible ones by SPEA2
    fitness. Infeasible individuals never enter, so the archive may hold fewer than `size`
    (none at all when nothing is feasible). Pass the previous hall of fame plus the new
    individuals to keep it best-ever.
    """
    if size < 0:
        raise ValueError(f"size: {size} is negative")
    F, cv = _arrays(values, senses, violations)
    feasible = [i for i in range(len(cv)) if cv[i] <= 0]
    chosen = _spea2(F[feasible], cv[feasible], size, seed)
    return [feasible[j] for j in chosen]


# ---------------------------------------------------------------------------------------------
# NSGA-II parent selection
# ---------------------------------------------------------------------------------------------


def select_parents(
    values: Values,
    senses: Sequence[str],
    violations: Sequence[float],
    n: int,
    seed: int,
) -> list[int]:
    """Draw n parent indices by NSGA-II binary tournament.

    A tournament between two feasible individuals goes to the lower non-domination rank,
    then the larger crowding distance, then a coin flip; if either is infeasible it goes
    to the smaller violation. Draws use numpy.random.default_rng(seed), so the same input
    and seed give the same parents. An individual may be drawn more than once.
    """
    if n < 0:
        raise ValueError(f"n: {n} is negative")
    F, cv = _arrays(values, senses, violations)
    if len(F) == 0:
        raise ValueError("select_parents: no individuals to select from")
    if n == 0:
        return []
    if len(F) == 1:
        return [0] * n
    return _tournament(F, cv, n, seed)


def _tournament(F: np.ndarray, cv: np.ndarray, n: int, seed: int) -> list[int]:
    from types import SimpleNamespace

    import numpy as np
    from pymoo.algorithms.moo.nsga2 import binary_tournament
    from pymoo.operators.selection.tournament import TournamentSelection
    from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

    rng = np.random.default_rng(seed)
    problem, pop = _population(F, cv)
    # surviving everyone is how pymoo attaches "rank" and "crowding" to the feasible ones
    RankAndCrowding().do(problem, pop, n_survive=len(pop), random_state=rng)
    # binary_tournament reads its settings and coin flips from the algorithm object, not
    # from the random_state argument: give it a stand-in that shares our Generator
    algorithm = SimpleNamespace(tournament_type="comp_by_rank_and_crowding", random_state=rng)
    picks = TournamentSelection(func_comp=binary_tournament, pressure=2).do(
        problem, pop, n, 1, to_pop=False, algorithm=algorithm, random_state=rng
    )
    return [int(i) for i in np.asarray(picks).reshape(-1)]


def best_by_rank(
    values: Values,
    senses: Sequence[str],
    violations: Sequence[float],
    n: int,
    seed: int,
) -> list[int]:
    """The n best indices (ascending) by NSGA-II's order: feasible before infeasible, then
    non-domination rank, then crowding distance (pymoo's RankAndCrowding survival).
    Deterministic for a given input and seed."""
    import numpy as np
    from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

    if n < 0:
        raise ValueError(f"n: {n} is negative")
    F, cv = _arrays(values, senses, violations)
    if n >= len(F):
        return list(range(len(F)))
    if n == 0:
        return []
    problem, pop = _population(F, cv)
    chosen = RankAndCrowding().do(problem, pop, n_survive=n, return_indices=True,
                                  random_state=np.random.default_rng(seed))
    return sorted(int(i) for i in chosen)


# ---------------------------------------------------------------------------------------------
# Pareto front and hypervolume
# ---------------------------------------------------------------------------------------------


def pareto_front(values: Values, senses: Sequence[str], violations: Sequence[float]) -> list[int]:
    """Indices (ascending) of the feasible non-dominated individuals.

    When nothing is feasible: the non-dominated ones among those with the least
    violation, which is what constrained domination puts first. Identical vectors do not
    dominate each other, so duplicates on the front are all returned.
    """
    import numpy as np
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    F, cv = _arrays(values, senses, violations)
    if len(F) == 0:
        return []
    least = 0.0 if (cv <= 0).any() else cv.min()
    candidates = np.flatnonzero(cv <= least)
    front = NonDominatedSorting().do(F[candidates], only_non_dominated_front=True)
    return sorted(int(candidates[j]) for j in front)


def hypervolume(values: Values, senses: Sequence[str], reference: Sequence[float]) -> float:
    """Dominated hypervolume of the (feasible) points given, in natural units.

    `reference` is a lower bound for max objectives and an upper bound for min ones.
    Points that do not strictly improve on it in every objective contribute nothing; no
    points give 0.0.
    """
    import numpy as np
    from pymoo.indicators.hv import HV

    _check_values(values, senses)
    _check_vector(reference, senses, "reference")
    if len(values) == 0:
        return 0.0
    points = _to_min(values, senses)
    ref = _to_min([reference], senses)[0]
    # filter explicitly rather than trust the backend with points beyond the reference
    inside = points[np.all(points < ref, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=ref)(inside))


def default_reference(seed_values: Sequence[float], senses: Sequence[str]) -> list[float]:
    """A fixed hypervolume reference point one seed-magnitude worse than the seed.

    max objective: v - |v| (0.0 for any positive v, so an accuracy of 0.93 gives 0.0, and
    2v for a negative v); min objective: v + |v| (2v for a positive v, so 0.5M parameters
    give 1M, and 0.0 for a negative v). A zero seed value gives -1 (max) or +1 (min).
    The seed itself therefore has a positive hypervolume, and a run's hypervolume is
    comparable across generations because the point never moves.
    """
    _check_senses(senses)
    _check_vector(seed_values, senses, "seed_values")
    reference = []
    for v, sense in zip(seed_values, senses, strict=True):
        v = float(v)
        step = abs(v) if v != 0 else 1.0
        reference.append(v - step if sense == "max" else v + step)
    return reference
