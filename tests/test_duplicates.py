"""No child trained twice: rewrites that change nothing are refused (and the LLM asked
again), and a child with the tree of an individual evaluated before carries its note."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from gitevo.variation.normalize import normal_form
from tests.conftest import cli, git

SEED = '''"""A module."""

import math


def wave(x, scale=1.0):
    """A sine."""
    y = math.sin(scale * x)  # the fast part
    return y


class Net:
    width = 3

    def forward(self, z, bias=0.1):
        total = 0.0
        for i in range(self.width):
            total += z * i
        return total + bias
'''


@pytest.mark.parametrize("rewrite", [
    lambda s: s.replace("  # the fast part", ""),  # a comment
    lambda s: s.replace('    """A sine."""\n', ""),  # a docstring
    lambda s: s.replace('"""A module."""', '"""Another text."""'),
    lambda s: s.replace("math.sin(scale * x)", "math.sin(\n        scale*x\n    )"),  # layout
    lambda s: s.replace("y = ", "value = ").replace("return y", "return value"),  # locals
    lambda s: s.replace("total", "acc").replace("for i in", "for k in").replace("z * i",
                                                                               "z * k"),
])
def test_rewrites_that_change_nothing_share_the_normal_form(rewrite):
    assert normal_form(rewrite(SEED)) == normal_form(SEED)


NESTED = """
def build(sizes, scale=2):
    layers = []

    def block(n):
        layers = [n * scale]
        return layers

    for size in sizes:
        layers += block(size)
    return lambda x: [x * w for w in layers]
"""


def test_each_nested_scope_renames_its_own_locals():
    """The outer `layers` and the inner one are different variables: renaming only one
    of them (as a careful rewrite may) changes nothing; swapping what one reads does."""
    inner = NESTED.replace("        layers = [n * scale]\n        return layers",
                           "        out = [n * scale]\n        return out")
    outer = NESTED.replace("    layers = []", "    acc = []").replace(
        "        layers += block", "        acc += block").replace("in layers]", "in acc]")
    assert normal_form(inner) == normal_form(NESTED) == normal_form(outer)
    assert normal_form(NESTED.replace("[n * scale]", "[n * sizes]")) != normal_form(NESTED)
    assert normal_form(NESTED.replace("x * w for w", "x + w for w")) != normal_form(NESTED)


@pytest.mark.parametrize("change", [
    lambda s: s.replace("scale=1.0", "scale=1.5"),  # one hyperparameter
    lambda s: s.replace("bias=0.1", "bias=0.2"),
    lambda s: s.replace("width = 3", "width = 4"),  # a class attribute
    lambda s: s.replace("math.sin", "math.cos"),
    lambda s: s.replace("def forward(self, z,", "def forward(self, w,").replace(
        "z * i", "w * i"),  # a parameter's name: callers may pass it by keyword
    lambda s: s.replace("total += z * i", "total -= z * i"),
    lambda s: s.replace("self.width", "self.height"),
])
def test_a_change_of_behaviour_changes_the_normal_form(change):
    assert normal_form(change(SEED)) != normal_form(SEED)


# ---- through a run ----------------------------------------------------------------------------

NO_OP_FIRST = '''
import re, sys
prompt = sys.stdin.read()
if "lab notebook" in prompt.split("=== user ===")[0]:
    print("## What helped\\n- nothing yet")
    sys.exit(0)
name = re.search(r"(?:block to change is|same idea to|two versions of) `(\\w+)`", prompt)[1]
block = re.findall(r"```python\\n(.*?)\\n```", prompt.split("=== user ===")[1], re.S)[-1]
head, _, body = block.partition("\\n")
if prompt.count("=== user ===") == 1:  # first turn: the same code, dressed differently
    print(f"Tidied.\\n\\n```python\\n{{head}}\\n    \\"\\"\\"Documented now.\\"\\"\\"\\n"
          f"    # reformatted\\n{{body.replace(' * ', '*')}}\\n```")
else:  # asked again: a real change, {change}
    print(f"Scaled.\\n\\n```python\\n{{head}}\\n{{body.replace('x', '({change} * x)', 1)}}\\n```")
'''


def _scripted(tmp_path: Path, change: str = "1.5") -> Path:
    script = tmp_path / "no_op_first.py"
    script.write_text(NO_OP_FIRST.format(change=change))
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy", "--llm", "provider=command",
        "--llm", f"command={sys.executable} {script}")
    return repo


def test_a_no_op_answer_is_refused_and_the_llm_asked_again_with_the_reason(tmp_path):
    repo = _scripted(tmp_path)
    cli("-C", str(repo), "generation", "--n", "3")
    store = Store(repo)
    children = [i for i in load_all(store, "main").values() if i.generation == 1]
    assert children
    for child in children:
        record = json.loads(store.read_note("refs/notes/gitevo/main-llm", child.commit))
        first, second = record["turns"]
        assert first["error"].startswith("duplicate: ")
        assert "the result is the same code as its parent g000-000" in first["error"]
        assert "the change does nothing new" in second["user"]  # the reason went back
        assert second["error"] is None and "1.5 *" in store.diff(
            store.parents(child.commit)[0], child.commit)


def test_siblings_with_the_same_code_are_not_both_kept(tmp_path):
    repo = _scripted(tmp_path)
    cli("-C", str(repo), "generation", "--n", "8")
    store = Store(repo)
    gen = ledger.read(store, "main")
    kept = [r for r in gen.offspring if r["status"] != "rejected"]
    trees = [store.tree_id(r["commit"]) for r in kept]
    assert len(trees) == len(set(trees)), "two children with one tree were both kept"
    refused = [r for r in gen.offspring if r["status"] == "rejected"]
    assert refused, "8 children of one seed on 3 blocks: some make the same change"
    assert all(r["error"].startswith("duplicate: ") for r in refused)
    assert gen.stats["rejected"].get("duplicate", 0) == len(refused)


def test_a_child_with_an_earlier_individuals_tree_reuses_its_evaluation(tmp_path):
    """Population 1: the seed stays (the scripted change makes things worse), so the
    same change made again a generation later has the tree of a child that died."""
    repo = _scripted(tmp_path, change="9.0")
    text = (repo / "gitevo.toml").read_text()
    text = text.replace("population = 8", "population = 1").replace("prob_crossover = 0.3",
                                                                     "prob_crossover = 0.0")
    text = text.replace("prob_mutation = 0.7", "prob_mutation = 1.0")
    (repo / "gitevo.toml").write_text(text)
    git(repo, "commit", "-qam", "one survivor, mutations only")
    cli("-C", str(repo), "run", "--generations", "3", "--n", "3")
    store = Store(repo)
    everyone = load_all(store, "main")
    assert [m.id for m in ledger.read(store, "main").population] == ["g000-000"]
    reused = [i for i in everyone.values() if i.evaluation and i.evaluation.reused]
    assert reused, "a later child repeating a dead child's change must reuse its note"
    for child in reused:
        match = everyone[child.evaluation.reused["id"]]
        assert store.tree_id(child.commit) == store.tree_id(match.commit)
        assert child.evaluation.objectives == match.evaluation.objectives
        assert child.evaluation.seconds == 0 and child.evaluation.timings == {}
        assert match.generation < child.generation and match.evaluation.reused is None
    stats = [g.stats.get("reused", 0) for g in ledger.history(store, "main")[1:]]
    assert sum(stats) == len(reused)


def test_dedupe_off_trains_every_child(tmp_path):
    repo = _scripted(tmp_path, change="9.0")
    text = (repo / "gitevo.toml").read_text().replace("seed = 0", "seed = 0\ndedupe = false")
    (repo / "gitevo.toml").write_text(text)
    git(repo, "commit", "-qam", "no dedupe")
    cli("-C", str(repo), "generation", "--n", "3")
    store = Store(repo)
    children = [i for i in load_all(store, "main").values() if i.generation == 1]
    record = json.loads(store.read_note("refs/notes/gitevo/main-llm", children[0].commit))
    assert len(record["turns"]) == 1  # the no-op was taken as it was


# the operands of one product swapped: new text, a new normal form, the same function
SWAPPED_FIRST = NO_OP_FIRST.split("if prompt.count")[0] + '''
if prompt.count("=== user ===") == 1:
    swapped = re.sub(r"([0-9.]+) [*] (wave[(]x[)]|x)", r"\\2 * \\1", body, count=1)
    print(f"Swapped.\\n\\n```python\\n{head}\\n{swapped}\\n```")
else:
    print(f"Scaled.\\n\\n```python\\n{head}\\n{body.replace('x', '(1.5 * x)', 1)}\\n```")
'''


def test_an_answer_that_behaves_as_its_parent_is_refused_by_the_checks_fingerprint(
        tmp_path):
    script = tmp_path / "swapped_first.py"
    script.write_text(SWAPPED_FIRST.replace("{{", "{").replace("}}", "}"))
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy", "--llm", "provider=command",
        "--llm", f"command={sys.executable} {script}")
    store = Store(repo)
    seed = load_all(store, "main")["g000-000"]
    assert json.loads(store.read_note("refs/notes/gitevo/main", seed.commit))["fingerprint"]
    cli("-C", str(repo), "generation", "--n", "3")
    children = [i for i in load_all(store, "main").values() if i.generation == 1]
    assert children
    by_behaviour = 0
    for child in children:
        record = json.loads(store.read_note("refs/notes/gitevo/main-llm", child.commit))
        first, second = record["turns"]
        assert "Swapped" in first["response"] and first["error"].startswith("duplicate: ")
        # a sibling that swapped the same product first makes this one the same text
        by_behaviour += "its check reports the same behaviour as g000-000" in first["error"]
        assert "the change does nothing new" in second["user"]
        assert second["error"] is None and second["fingerprint"] != \
            json.loads(store.read_note("refs/notes/gitevo/main", seed.commit))["fingerprint"]
    assert by_behaviour >= 1
