"""The sortnet template, a program rather than a model: its seed's scores, the published
optimum for 8 wires reached by Batcher's network (a person's commit, adopted and scored
by the real scorer apart from the candidate), and broken networks refused with reasons
an LLM can act on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from tests.conftest import cli, git

# Batcher's odd-even merge sort for 8 wires, written out: 19 comparators in 6 steps
BATCHER = '''

def sort_wires(wires):
    """Batcher's odd-even merge sort on `wires` (a power of two of them)."""
    if len(wires) < 2:
        return []
    half = len(wires) // 2
    return sort_wires(wires[:half]) + sort_wires(wires[half:]) + merge(wires[:half],
                                                                       wires[half:])


def merge(left, right):
    """Batcher's odd-even merge of two sorted runs of equal, power-of-two length."""
    wires = left + right
    if len(wires) == 2:
        return [(wires[0], wires[1])]
    network = merge(wires[0::2][:len(left) // 2], wires[0::2][len(left) // 2:])
    network += merge(wires[1::2][:len(left) // 2], wires[1::2][len(left) // 2:])
    network += [(wires[k], wires[k + 1]) for k in range(1, len(wires) - 1, 2)]
    return network


def comparators(n):
    return sort_wires(list(range(n)))
'''


@pytest.fixture
def sortnet(tmp_path) -> Path:
    repo = tmp_path / "sortnet"
    out = cli("init", str(repo), "--template", "sortnet")
    assert "prompts: 'program'" in out
    return repo


def note(repo: Path, ident: str) -> dict:
    store = Store(repo)
    return json.loads(store.read_note("refs/notes/gitevo/main",
                                      load_all(store, "main")[ident].commit))


def adopted_id(out: str) -> str:
    return re.search(r"g\d{3}-h\d{3}", out).group(0)


def person_writes(repo: Path, branch: str, source: str) -> None:
    git(repo, "switch", "-q", "-c", branch, "gitevo/main/g000-000")
    (repo / "network.py").write_text(source)
    git(repo, "commit", "-qam", f"{branch}: a network written by hand")
    git(repo, "switch", "-q", "main")


def test_the_seed_scores_and_batchers_network_reaches_the_published_optimum(sortnet):
    seed = note(sortnet, "g000-000")
    assert seed["status"] == "ok" and seed["objectives"] == {"comparators": 34, "depth": 15}
    header = (sortnet / "network.py").read_text().split("\n\n\ndef ")[0]
    person_writes(sortnet, "batcher", header + BATCHER)
    adopted = note(sortnet, adopted_id(cli("-C", str(sortnet), "adopt", "batcher")))
    assert adopted["status"] == "ok", adopted
    assert adopted["objectives"] == {"comparators": 19, "depth": 6}  # Knuth 5.3.4's optimum


@pytest.mark.parametrize(("old", "new", "reason"), [
    # the halves are sorted but never merged
    (" + merge(left, right)", "", "the network does not sort: input"),
    ("(wires[k - 1], wires[k])", "(wires[k], wires[k - 1])", "write the smaller wire first"),
    ("(wires[k - 1], wires[k])", "(wires[k - 1], wires[k] + 100)", "wires are numbered 0 to 7"),
])
def test_a_broken_network_is_refused_with_a_reason_to_act_on(sortnet, old, new, reason):
    source = (sortnet / "network.py").read_text()
    assert old in source
    person_writes(sortnet, "broken", source.replace(old, new, 1))
    refused = note(sortnet, adopted_id(cli("-C", str(sortnet), "adopt", "broken")))
    assert refused["status"] == "invalid" and reason in refused["error"], refused
