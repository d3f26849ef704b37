"""A guided run on the flagship target: ExquisiteNetV2 at smoke fidelity, real PyTorch
training per individual, the `command` provider answering through the scripted responder;
and one generation under the template's own cascade.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from tests.conftest import RESPONDER, cli, git

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

BLOCKS = {"get_optimizer", "SE", "SE_LN", "DFSEBV2", "FCT", "EVE", "ME", "DW", "ExquisiteNetV2"}


@pytest.fixture
def evolved(exquisite_run) -> Path:
    return exquisite_run


def test_two_generations_make_every_kind_of_child(evolved):
    store = Store(evolved)
    everyone = load_all(store, "main")
    children = [i for i in everyone.values() if i.generation]
    refused = [r for g in ledger.history(store, "main")[1:] for r in g.offspring
               if r["status"] == "rejected"]
    assert len(children) + len(refused) == 12 and len(children) >= 9
    assert {"mutation", "crossover"} <= {i.operator for i in children}
    # EoT is planned from generation 2; the responder may apply the elite's lesson to the
    # very block the elite changed, which behaves as the elite and is refused as such
    assert "eot" in {i.operator for i in children} | {r["operator"] for r in refused}
    assert all(r.get("error") for r in refused)  # every refusal says why
    assert not any(i.operator == "eot" for i in children if i.generation == 1)
    for ind in children:
        note = json.loads(store.read_note("refs/notes/gitevo/main", ind.commit))
        assert note["status"] in ("ok", "invalid", "failed")
        if ind.operator == "crossover":
            assert len(store.parents(ind.commit)) == 2  # a real merge commit
        trailers = store.trailers(ind.commit)
        assert trailers["Gitevo-Block"].split("::")[1] in BLOCKS
        assert trailers["Gitevo-Model"] == "command"
        record = json.loads(store.read_note("refs/notes/gitevo/main-llm", ind.commit))
        assert record["turns"][0]["response"] and '<seed-file path="model.py">' in \
            record["stable"]


def test_children_are_really_trained_and_scored(evolved):
    store = Store(evolved)
    scored = [i for i in load_all(store, "main").values() if i.status == "ok"]
    assert len(scored) >= 8
    for ind in scored:
        metrics = json.loads(store.read_note("refs/notes/gitevo/main", ind.commit))["metrics"]
        assert metrics["fidelity"] == "smoke" and metrics["trainer"]["epochs"] == 3
        assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["params"] > 1000
        # scored apart, from the exported graph: the trainer's report is not the score
        assert metrics["scorer"]["apart"] is True and "accuracy" not in metrics["trainer"]
    assert len({json.dumps(store.read_note("refs/notes/gitevo/main", i.commit))
                for i in scored}) > 1  # offspring differ from each other, not copies


def test_ledger_and_repository_stay_consistent(evolved):
    gens = ledger.history(Store(evolved), "main")
    assert [g.generation for g in gens] == [0, 1, 2]
    assert all(g.stats["tokens"] > 0 for g in gens[1:])
    assert "valid offspring" in cli("-C", str(evolved), "status")
    git(evolved, "fsck", "--strict")
    assert git(evolved, "worktree", "list").count("\n") == 1  # no exported tree left behind


@pytest.fixture(scope="module")
def cascaded(tmp_path_factory, _session_identity) -> Store:
    """One guided generation of 4 under the template's shipped cascade (every child
    screened at an eighth of the training, the best quarter trained in full), two
    evaluations at a time: promotions are asynchronous, children come from the LLM."""
    repo = tmp_path_factory.mktemp("cascaded") / "enet"
    cli("init", str(repo), "--template", "exquisitenetv2", "--fidelity", "smoke",
        "--llm", "provider=command", "--llm", f"command={sys.executable} {RESPONDER}")
    text = (repo / "gitevo.toml").read_text().replace("workers = 1", "workers = 2")
    (repo / "gitevo.toml").write_text(text)
    git(repo, "commit", "-qam", "evaluate two at a time")
    cli("-C", str(repo), "generation", "--n", "4")
    return Store(repo)


def test_the_shipped_cascade_screens_every_child_and_trains_the_best_quarter(cascaded):
    store = cascaded
    screens = {c: json.loads(t) for c, t in store.read_notes(
        "refs/notes/gitevo/main-rung1").items()}
    promoted = store.read_notes("refs/notes/gitevo/main-rung1-promoted")
    gen = ledger.read(store, "main")
    rows = [r for r in gen.offspring if r.get("commit")]
    assert rows and all(r["commit"] in screens for r in rows)
    for row in rows:
        screen = screens[row["commit"]]
        if screen["status"] == "ok":  # trained at the screening budget: 1 of 3 epochs
            assert screen["metrics"]["trainer"]["epochs"] == 1
        final = json.loads(store.read_note("refs/notes/gitevo/main", row["commit"]))
        assert final["rungs"][0]["vars"] == {"budget": "screen"}
        went_on = final["status"] != "screened" and screen["status"] == "ok"
        assert (row["commit"] in promoted) == went_on, (row, final)
        if went_on and final["status"] == "ok":  # trained in full: all 3 epochs
            assert final["metrics"]["trainer"]["epochs"] == 3
    scored = sum(screens[r["commit"]]["status"] == "ok" for r in rows)
    rung = gen.stats["cascade"][0]
    assert rung["promoted"] == len([r for r in rows if r["commit"] in promoted]) == (
        -(-scored // 4))  # a quarter, rounded up: exactly whom waiting would promote
    assert rung["screened"] == len(rows) - rung["promoted"] and rung["training_seconds"] > 0
    assert all(m.id == "g000-000" or m.commit in promoted for m in gen.population)
    assert "screened" in cli("-C", str(store.root), "status")
