"""The planner: which parents, operator and block each child of a generation gets."""

from __future__ import annotations

import dataclasses

from gitevo import config as cfg
from gitevo.pipeline.plan import make_plan
from gitevo.store.gitstore import Store
from gitevo.store.ledger import Member
from gitevo.variation.spec import CROSSOVER, MUTATION
from tests.conftest import git


def _crossover_only(repo) -> cfg.Config:
    config = cfg.load(repo / "gitevo.toml")
    evolution = dataclasses.replace(config.evolution, prob_crossover=1.0, prob_mutation=0.0)
    return dataclasses.replace(config, evolution=evolution)


def test_crossover_finds_a_partner_that_differs(toy):
    store = Store(toy)
    seed = store.head_commit()
    (toy / "model.py").write_text((toy / "model.py").read_text().replace("0.2 * x", "0.3 * x"))
    git(toy, "commit", "-qam", "a different trend", "--no-verify")
    other = store.head_commit()
    # the best member twice (same code, as after a no-op mutation) and one that differs;
    # tournaments mostly pair the two copies, which have nothing to exchange
    population = [Member("g001-000", seed, {"accuracy": 0.9, "l1": 3.0}),
                  Member("g001-001", seed, {"accuracy": 0.9, "l1": 3.0}),
                  Member("g001-002", other, {"accuracy": 0.1, "l1": 9.0})]
    plan = make_plan(store, _crossover_only(toy), 2, population, 24, seed)
    commits = {m.id: m.commit for m in population}
    assert {s.operator for s in plan.specs} == {CROSSOVER}
    for spec in plan.specs:
        first, second = (commits[p] for p in spec.parents)
        assert first != second and spec.block == "model.py::trend"


def test_without_diversity_crossover_becomes_mutation(toy):
    store = Store(toy)
    seed = store.head_commit()
    scores = {"accuracy": 0.5, "l1": 1.0}
    population = [Member("g000-000", seed, scores), Member("g001-000", seed, scores)]
    plan = make_plan(store, _crossover_only(toy), 1, population, 6, seed)
    assert {s.operator for s in plan.specs} == {MUTATION}


def test_every_generation_gets_its_share_of_each_operator(toy):
    store = Store(toy)
    seed = store.head_commit()
    (toy / "model.py").write_text((toy / "model.py").read_text().replace("0.2 * x", "0.3 * x"))
    git(toy, "commit", "-qam", "a different trend", "--no-verify")
    population = [Member("g000-000", seed, {"accuracy": 0.5, "l1": 2.0}),
                  Member("g001-000", store.head_commit(), {"accuracy": 0.6, "l1": 2.0})]
    config = cfg.load(toy / "gitevo.toml")  # prob_crossover 0.3, prob_mutation 0.7
    counts = []
    for generation in range(1, 41):
        plan = make_plan(store, config, generation, population, 8, seed)
        counts.append(sum(s.operator == CROSSOVER for s in plan.specs))
    assert set(counts) == {2, 3}  # 0.3 x 8 = 2.4: never none, never a glut
    assert 2.2 < sum(counts) / len(counts) < 2.6
    again = make_plan(store, config, 7, population, 8, seed)
    assert again.specs == make_plan(store, config, 7, population, 8, seed).specs
