"""`gitevo status`, `log` and `show` on the shared runs: what a researcher reads first."""

from __future__ import annotations

import re

import pytest

from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from tests.conftest import cli


def _crossover(repo) -> str:
    everyone = load_all(Store(repo), "main")
    return next(i.id for i in everyone.values() if i.operator == "crossover" and i.status == "ok")


def test_status_shows_population_and_hall_of_fame_best_first(toy_run):
    out = cli("-C", str(toy_run), "status")
    assert "population" in out and "hall of fame" in out
    assert "accuracy ↑" in out and "l1 ↓" in out
    rows = re.findall(r"│ (g\d{3}-\d{3}) │.*?│\s+([\d.]+) │", out.split("hall of fame")[0])
    accuracies = [float(acc) for _ident, acc in rows]
    assert len(accuracies) >= 2 and accuracies == sorted(accuracies, reverse=True)
    assert re.search(r"g\d{3}-\d{3}\+g\d{3}-\d{3}", out)  # a crossover's two parents


def test_log_of_a_crossover_shows_both_parents_with_deltas(toy_run):
    ident = _crossover(toy_run)
    out = cli("-C", str(toy_run), "log", ident)
    first = out.splitlines()[0]
    assert first.startswith(ident) and "crossover" in first
    assert re.search(r"from g\d{3}-\d{3}", first)  # the subject names the donor
    assert "parent 1: g" in out and "parent 2: g" in out
    assert re.search(r"accuracy=[\d.]+ \([+-][\d.e-]+\)", first)
    assert "g000-000" in out and "seed" in out


@pytest.mark.torch
def test_guided_run_shows_prompts_in_status_log_and_show(exquisite_run):
    out = cli("-C", str(exquisite_run), "status")
    assert "prompt" in out and re.search(r"mutation/\w+|eot|crossover", out)
    assert "LLM" in out and "tokens" in out
    ident = _crossover(exquisite_run)
    lineage = cli("-C", str(exquisite_run), "log", ident)
    assert "via crossover" in lineage.splitlines()[0]
    assert "parent 2:" in lineage
    shown = cli("-C", str(exquisite_run), "show", ident, "--prompt")
    assert len(re.findall(r"─ diff against g\d{3}-\d{3} ", shown)) == 2  # one per parent
    assert "=== turn 1: response" in shown
    assert '"status"' in shown and "Gitevo-Temperature:" in shown
