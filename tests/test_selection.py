"""Selection: hand-checkable cases for SPEA2, NSGA-II tournaments, fronts and hypervolume."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import pytest

from gitevo.pipeline.selection import (
    best_by_rank,
    default_reference,
    environmental_selection,
    hall_of_fame,
    hypervolume,
    pareto_front,
    select_parents,
)

# (accuracy, parameters): the flagship's two objectives
ACC_PARAMS = ["max", "min"]

# A and B are non-dominated; C is dominated by both, D only by A.
# SPEA2 strengths: S(A)=2 (C, D), S(B)=1 (C); raw fitness R(D)=2 < R(C)=3, so D fills first.
A, B, C, D = (0.90, 100.0), (0.80, 50.0), (0.70, 200.0), (0.85, 300.0)


def feasible(n: int) -> list[float]:
    return [0.0] * n


# ---------------------------------------------------------------------------------------------
# environmental_selection
# ---------------------------------------------------------------------------------------------


def test_dominated_points_go_first():
    values = [C, A, D, B]
    assert sorted(environmental_selection(values, ACC_PARAMS, feasible(4), 2, seed=0)) == [1, 3]


def test_fill_follows_spea2_fitness_and_order_is_best_first():
    values = [C, A, D, B]
    chosen = environmental_selection(values, ACC_PARAMS, feasible(4), 3, seed=0)
    assert sorted(chosen[:2]) == [1, 3]  # the non-dominated pair leads
    assert chosen[2] == 2  # D (R=2) beats C (R=3)


def test_truncation_keeps_the_extremes_of_a_front():
    # all five are mutually non-dominated (min, min); (1, 3) and (1.1, 2.9) crowd each other
    values = [(1.0, 3.0), (0.0, 4.0), (2.0, 2.0), (1.1, 2.9), (4.0, 0.0)]
    chosen = environmental_selection(values, ["min", "min"], feasible(5), 3, seed=0)
    assert len(chosen) == 3
    assert {1, 4} <= set(chosen)
    assert not {0, 3} <= set(chosen)  # truncation thinned the crowded pair


def test_infeasible_rank_below_every_feasible_one_and_by_violation():
    values = [A, (0.10, 10_000.0), C, B]  # 1 is feasible but dominated by everything
    violations = [0.5, 0.0, 0.1, 2.0]
    assert environmental_selection(values, ACC_PARAMS, violations, 4, seed=0) == [1, 2, 0, 3]
    assert environmental_selection(values, ACC_PARAMS, violations, 1, seed=0) == [1]
    assert environmental_selection(values, ACC_PARAMS, violations, 2, seed=0) == [1, 2]


def test_all_infeasible_ordered_by_violation():
    values = [A, B, C]
    assert environmental_selection(values, ACC_PARAMS, [3.0, 1.0, 2.0], 2, seed=0) == [1, 2]


def test_flipping_a_sense_flips_the_choice():
    values = [(1.0, 1.0), (2.0, 2.0)]
    assert environmental_selection(values, ["max", "max"], feasible(2), 1, seed=0) == [1]
    assert environmental_selection(values, ["min", "min"], feasible(2), 1, seed=0) == [0]


def test_three_objectives():
    senses = ["max", "min", "min"]
    values = [
        (0.9, 100.0, 5.0),
        (0.8, 50.0, 9.0),
        (0.7, 200.0, 10.0),  # dominated by 0 and 1
        (0.9, 100.0, 1.0),  # dominates 0
        (0.5, 10.0, 10.0),
    ]
    assert pareto_front(values, senses, feasible(5)) == [1, 3, 4]
    chosen = environmental_selection(values, senses, feasible(5), 4, seed=0)
    assert sorted(chosen[:3]) == [1, 3, 4]
    assert chosen[3] == 0  # dominated by one (S=3), while 2 has three dominators


def test_single_objective_orders_by_value():
    values = [[3.0], [1.0], [2.0], [5.0]]
    assert environmental_selection(values, ["max"], feasible(4), 4, seed=0) == [3, 0, 2, 1]
    assert environmental_selection(values, ["min"], feasible(4), 4, seed=0) == [1, 2, 0, 3]
    assert environmental_selection(values, ["max"], feasible(4), 2, seed=0) == [3, 0]


def test_duplicates_do_not_crash_and_ties_go_to_the_lower_index():
    values = [[1.0], [1.0], [0.0]]
    assert environmental_selection(values, ["max"], feasible(3), 3, seed=0) == [0, 1, 2]
    same = [A] * 6
    chosen = environmental_selection(same, ACC_PARAMS, feasible(6), 3, seed=0)
    assert len(set(chosen)) == 3
    mixed = [A, A, B, B, C, C]
    chosen = environmental_selection(mixed, ACC_PARAMS, feasible(6), 3, seed=0)
    assert len(set(chosen)) == 3 and set(chosen) <= {0, 1, 2, 3}


def test_more_places_than_individuals_returns_all_ordered():
    values = [C, A, D, B]
    chosen = environmental_selection(values, ACC_PARAMS, [0.0, 0.0, 0.0, 1.0], 10, seed=0)
    assert sorted(chosen) == [0, 1, 2, 3]
    assert chosen[0] == 1 and chosen[-1] == 3  # A alone on the feasible front; B infeasible
    assert environmental_selection([], ACC_PARAMS, [], 3, seed=0) == []
    assert environmental_selection(values, ACC_PARAMS, feasible(4), 0, seed=0) == []


def test_environmental_selection_is_deterministic():
    values = [(0.5 + (i * 37 % 11) / 40, 100 + (i * 53 % 17) * 10) for i in range(30)]
    violations = [0.0 if i % 7 else 0.3 for i in range(30)]
    first = environmental_selection(values, ACC_PARAMS, violations, 12, seed=5)
    assert first == environmental_selection(values, ACC_PARAMS, violations, 12, seed=5)
    assert all(type(i) is int for i in first)


# ---------------------------------------------------------------------------------------------
# select_parents
# ---------------------------------------------------------------------------------------------


def test_tournament_favours_the_front():
    values = [A, B, C, D]
    counts = Counter(select_parents(values, ACC_PARAMS, feasible(4), 2000, seed=1))
    # A and B (rank 0) win every tournament against C or D (rank 1), which only beat each
    # other: A is in ~1000 tournaments and wins ~5/6, C wins ~1/6 of its ~1000
    assert counts[0] > 3 * counts[2]
    assert counts[0] + counts[1] > 1500
    assert counts[2] + counts[3] > 0


def test_tournament_single_objective_by_value():
    values = [[3.0], [1.0], [2.0], [5.0]]
    counts = Counter(select_parents(values, ["max"], feasible(4), 2000, seed=3))
    assert counts[3] > counts[0] > counts[2] > counts[1] == 0


def test_tournament_respects_infeasibility():
    values = [(0.1, 10_000.0), (0.99, 1.0), (0.95, 2.0)]
    counts = Counter(select_parents(values, ACC_PARAMS, [0.0, 1.0, 2.0], 2000, seed=2))
    # the feasible but dominated individual wins every tournament it is in
    assert counts[0] > counts[1] > counts[2]


def test_tournament_edge_cases():
    assert select_parents([A], ACC_PARAMS, [0.0], 5, seed=0) == [0] * 5
    assert select_parents([A, B], ACC_PARAMS, [0.0, 0.0], 0, seed=0) == []
    with pytest.raises(ValueError, match="no individuals"):
        select_parents([], ACC_PARAMS, [], 3, seed=0)
    duplicates = select_parents([A] * 5, ACC_PARAMS, feasible(5), 50, seed=0)
    assert len(duplicates) == 50 and set(duplicates) <= set(range(5))


def test_tournament_is_deterministic_per_seed():
    values = [A, B, C, D, (0.88, 90.0), (0.60, 20.0)]
    violations = [0.0, 0.0, 0.0, 0.3, 0.0, 0.0]
    first = select_parents(values, ACC_PARAMS, violations, 40, seed=11)
    assert first == select_parents(values, ACC_PARAMS, violations, 40, seed=11)
    assert first != select_parents(values, ACC_PARAMS, violations, 40, seed=12)
    assert all(type(i) is int for i in first)


# ---------------------------------------------------------------------------------------------
# pareto_front and hall_of_fame
# ---------------------------------------------------------------------------------------------


def test_pareto_front():
    values = [C, A, D, B, A]
    assert pareto_front(values, ACC_PARAMS, feasible(5)) == [1, 3, 4]  # duplicate A included
    assert pareto_front(values, ACC_PARAMS, [0.0, 1.0, 0.0, 0.0, 1.0]) == [2, 3]
    assert pareto_front([], ACC_PARAMS, []) == []


def test_pareto_front_when_nothing_is_feasible():
    values = [A, C, B]
    assert pareto_front(values, ACC_PARAMS, [1.0, 0.5, 2.0]) == [1]
    # among the least violating, constrained domination still applies the objectives
    assert pareto_front(values, ACC_PARAMS, [0.5, 0.5, 0.5]) == [0, 2]


def test_hall_of_fame_truncates_fills_and_excludes_infeasible():
    front = [(0.0, 4.0), (1.0, 3.0), (1.1, 2.9), (2.0, 2.0), (4.0, 0.0)]
    chosen = hall_of_fame(front, ["min", "min"], feasible(5), 3, seed=0)
    assert len(chosen) == 3 and {0, 4} <= set(chosen)

    values = [C, A, D, B, (0.99, 1.0)]
    violations = [0.0, 0.0, 0.0, 0.0, 1.0]
    chosen = hall_of_fame(values, ACC_PARAMS, violations, 3, seed=0)
    assert sorted(chosen[:2]) == [1, 3] and chosen[2] == 2
    assert hall_of_fame(values, ACC_PARAMS, violations, 10, seed=0)[-1] == 0  # no 4
    assert hall_of_fame([A], ACC_PARAMS, [1.0], 3, seed=0) == []


# ---------------------------------------------------------------------------------------------
# hypervolume and default_reference
# ---------------------------------------------------------------------------------------------


def test_hypervolume_of_a_staircase():
    # max/max steps (3,1), (2,2), (1,3) over (0,0): rows of width 3, 2, 1 -> 6
    assert hypervolume([(3, 1), (2, 2), (1, 3)], ["max", "max"], [0, 0]) == pytest.approx(6.0)
    # the same staircase as minimisation against (4,4)
    stairs = [(1, 3), (2, 2), (3, 1)]
    assert hypervolume(stairs, ["min", "min"], [4, 4]) == pytest.approx(6.0)


def test_hypervolume_mixed_senses_and_points_outside_the_reference():
    # A covers 0.9 x (200-100) = 90, B covers 0.8 x 150 = 120, overlap 0.8 x 100 = 80
    ref = [0.0, 200.0]
    assert hypervolume([A, B], ACC_PARAMS, ref) == pytest.approx(130.0)
    beyond = [A, B, (0.95, 250.0), (0.0, 10.0), (-0.1, 20.0)]
    assert hypervolume(beyond, ACC_PARAMS, ref) == pytest.approx(130.0)
    assert hypervolume([(0.95, 250.0)], ACC_PARAMS, ref) == 0.0
    assert hypervolume([], ACC_PARAMS, ref) == 0.0
    assert hypervolume([A, A, B], ACC_PARAMS, ref) == pytest.approx(130.0)


def test_hypervolume_one_and_three_objectives():
    assert hypervolume([[0.9], [0.8]], ["max"], [0.0]) == pytest.approx(0.9)
    assert hypervolume([(1, 2, 3)], ["max", "max", "max"], [0, 0, 0]) == pytest.approx(6.0)
    two_boxes = [(1, 1, 2), (2, 2, 1)]  # 1x1x1 + 2x2x1 over (0,0,0) with max senses
    assert hypervolume(two_boxes, ["max"] * 3, [0, 0, 0]) == pytest.approx(5.0)


def test_default_reference():
    assert default_reference([0.9252, 518_000], ACC_PARAMS) == [0.0, 1_036_000.0]
    assert default_reference([0, 0], ACC_PARAMS) == [-1.0, 1.0]
    assert default_reference([-2.0, -2.0], ACC_PARAMS) == [-4.0, 0.0]
    seed = [0.9252, 518_000]
    ref = default_reference(seed, ACC_PARAMS)
    assert hypervolume([seed], ACC_PARAMS, ref) == pytest.approx(0.9252 * 518_000)


def test_random_populations_keep_the_invariants():
    """Many shapes (1-4 objectives, duplicates, infeasible, any n_survive) and no crash."""
    rng = random.Random(0)
    for trial in range(150):
        m, n, k = rng.randint(1, 4), rng.randint(0, 20), rng.randint(0, 25)
        senses = [rng.choice(["max", "min"]) for _ in range(m)]
        pool = [[float(rng.randint(0, 3)) for _ in range(m)] for _ in range(3)]
        values = [
            rng.choice(pool) if rng.random() < 0.5 else [rng.uniform(-5, 5) for _ in range(m)]
            for _ in range(n)
        ]
        violations = [0.0 if rng.random() < 0.7 else rng.choice([0.5, 1.0]) for _ in range(n)]

        chosen = environmental_selection(values, senses, violations, k, seed=trial)
        assert len(chosen) == len(set(chosen)) == min(k, n)
        infeasible = [violations[i] for i in chosen if violations[i] > 0]
        assert infeasible == sorted(infeasible)
        assert chosen[: len(chosen) - len(infeasible)] == [i for i in chosen if violations[i] == 0]
        front = pareto_front(values, senses, violations)
        if 0.0 in violations and k >= len(front):
            assert set(front) <= set(chosen)  # elitism
        assert all(violations[i] == 0 for i in hall_of_fame(values, senses, violations, k, 0))
        if n:
            parents = select_parents(values, senses, violations, k, seed=trial)
            assert len(parents) == k and all(0 <= i < n for i in parents)


# ---------------------------------------------------------------------------------------------
# Input checks and import cost
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_name_the_index(bad):
    values = [A, B, (0.5, bad)]
    for call in (
        lambda: environmental_selection(values, ACC_PARAMS, feasible(3), 2, seed=0),
        lambda: select_parents(values, ACC_PARAMS, feasible(3), 2, seed=0),
        lambda: pareto_front(values, ACC_PARAMS, feasible(3)),
        lambda: hall_of_fame(values, ACC_PARAMS, feasible(3), 2, seed=0),
        lambda: hypervolume(values, ACC_PARAMS, [0.0, 200.0]),
    ):
        with pytest.raises(ValueError, match=r"values\[2\]"):
            call()
    with pytest.raises(ValueError, match="reference"):
        hypervolume([A], ACC_PARAMS, [bad, 200.0])


def test_malformed_input_is_rejected():
    with pytest.raises(ValueError, match=r"senses\[1\]"):
        pareto_front([A], ["max", "maximise"], [0.0])
    with pytest.raises(ValueError, match=r"values\[1\]"):
        pareto_front([A, (0.5,)], ACC_PARAMS, [0.0, 0.0])
    with pytest.raises(ValueError, match="violations"):
        pareto_front([A, B], ACC_PARAMS, [0.0])
    with pytest.raises(ValueError, match=r"violations\[0\]"):
        pareto_front([A], ACC_PARAMS, [-1.0])
    with pytest.raises(ValueError, match="n_survive"):
        environmental_selection([A], ACC_PARAMS, [0.0], -1, seed=0)


def test_import_does_not_load_numpy_or_pymoo():
    code = (
        "import sys, gitevo.pipeline.selection\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pymoo', 'moocore'})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---- best_by_rank: a cascade rung's promotion -------------------------------------------------

def test_best_by_rank_takes_the_front_then_the_next_rank():
    values = [[0.9, 5], [0.8, 1], [0.5, 9], [0.7, 2], [0.6, 3]]  # front: 0, 1; then 3
    assert best_by_rank(values, ["max", "min"], [0] * 5, 2, 0) == [0, 1]
    assert best_by_rank(values, ["max", "min"], [0] * 5, 3, 0) == [0, 1, 3]
    assert best_by_rank(values, ["max", "min"], [0] * 5, 9, 0) == [0, 1, 2, 3, 4]
    assert best_by_rank(values, ["max", "min"], [0] * 5, 0, 0) == []


def test_best_by_rank_puts_feasible_ones_first():
    values = [[0.9, 5], [0.8, 1], [0.5, 9], [0.7, 2], [0.6, 3]]
    assert best_by_rank(values, ["max", "min"], [0, 3, 0, 0, 0], 2, 0) == [0, 3]


def test_best_by_rank_keeps_the_extremes_of_a_crowded_front():
    front = [[i / 10, i / 10] for i in range(11)]  # all non-dominated (max, max trade-off)
    front = [[x, 1 - y] for x, y in front]
    chosen = best_by_rank(front, ["max", "max"], [0] * 11, 3, 0)
    assert 0 in chosen and 10 in chosen and len(chosen) == 3
