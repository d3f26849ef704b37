"""Training past the budget: when a child's trainer time marks it suspect, and the
[fitness.budget] table that sets the rule. The whole path (a real generation whose child
trains far longer than its parent) runs in tests/test_forgery.py."""

from __future__ import annotations

import pytest

from gitevo import config as cfg
from gitevo.config import Budget, ConfigError
from gitevo.pipeline.overrun import SUSPECT, marked, overrun
from gitevo.store.fitness import STATUSES, Evaluation


def result(seconds: float, params: float = 100.0, status: str = "ok",
           fidelity: str = "demo") -> Evaluation:
    return Evaluation(status, objectives={"accuracy": 0.5, "params": params},
                      fidelity=fidelity, timings={"validate": 1.0, "fitness": seconds})


RULE = Budget(ratio=2.0, grace=10.0, size="params")


@pytest.mark.parametrize("child, parents, suspect", [
    (result(109.0), [result(50.0)], False),  # 2 x 50 + 10 is allowed
    (result(111.0), [result(50.0)], True),
    (result(190.0), [result(50.0)], True),
    (result(190.0), [result(50.0, params=50.0)], False),  # twice the size: 2 x 2 x 50 + 10
    (result(190.0, params=100.0), [result(50.0, params=200.0)], True),  # smaller: no excuse
    (result(190.0), [result(50.0), result(90.0)], False),  # a crossover: the slower parent
    (result(190.0), [result(50.0, fidelity="smoke")], False),  # no parent at this fidelity
    (result(190.0), [result(50.0, status="invalid")], False),  # nothing trustworthy to compare
    (result(190.0), [], False),  # the seed
    (result(190.0, status="invalid"), [result(50.0)], False),
])
def test_overrun(child, parents, suspect):
    assert (overrun(child, parents, RULE) is not None) == suspect


def test_a_suspect_keeps_its_scores_and_says_why():
    child = marked(result(300.0), [result(50.0)], RULE)
    assert child.status == SUSPECT and SUSPECT in STATUSES and not child.ok
    assert child.objectives == {"accuracy": 0.5, "params": 100.0}  # browsable, not selected
    assert child.error == ("training ran 300s, 6.0x its parent's 50s at fidelity demo "
                           "(allowed 110s): suspected of training past its budget, so it "
                           "is not selected")
    bigger = marked(result(300.0, params=150.0), [result(50.0)], RULE)
    assert "and 1.50x its params (allowed 160s)" in bigger.error
    assert marked(result(60.0), [result(50.0)], RULE) == result(60.0)


def test_without_a_size_metric_only_time_counts():
    rule = Budget(ratio=2.0, grace=10.0, size="")
    assert overrun(result(190.0), [result(50.0, params=50.0)], rule) is not None


def write(tmp_path, budget: str):
    path = tmp_path / cfg.CONFIG_NAME
    path.write_text('[genes]\nfiles = ["m.py"]\n[fitness]\ncommand = "true"\n'
                    f'[fitness.budget]\n{budget}\n[objectives]\nacc = "max"\n')
    return path


def test_the_budget_table(tmp_path):
    assert cfg.load(write(tmp_path, "")).fitness.budget == Budget()
    got = cfg.load(write(tmp_path, 'ratio = 3\ngrace = 0\nsize = "flops"')).fitness.budget
    assert got == Budget(ratio=3.0, grace=0.0, size="flops")


@pytest.mark.parametrize("budget, message", [
    ("ratio = 0.5", "fitness.budget.ratio: must be >= 1, got 0.5"),
    ("grace = -1", "fitness.budget.grace: must be >= 0, got -1"),
    ("size = 3", "fitness.budget.size: expected a string, got 3"),
    ("ratios = 2", "fitness.budget.ratios: unknown key"),
])
def test_bad_budget_is_one_line_naming_the_key(tmp_path, budget, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as info:
        cfg.load(write(tmp_path, budget))
    assert "\n" not in str(info.value) and cfg.CONFIG_NAME in str(info.value)
