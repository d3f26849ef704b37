"""A fidelity cascade on the toy template, in real repositories: every child is screened
on a few points of the curve, the best half goes on to the full grid, the rest is kept
with a `screened` note and never enters the population; a rerun after kill -9 runs no
rung twice and takes the same decisions. With two workers, promotion is asynchronous:
a child goes on as soon as it is certain to (or, by ASHA's rule, as soon as enough
siblings are in to place it)."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest

from gitevo import config as cfg
from gitevo.config import ConfigError, Rung
from gitevo.pipeline import cascade, selection
from gitevo.pipeline.plan import SEED_ID
from gitevo.store import ledger
from gitevo.store.fitness import VALID, Evaluation
from gitevo.store.gitstore import Store, individual_ref, notes_ref, rung_ref
from tests.conftest import cli, git, gitevo_process, load_bench

faults = load_bench("faults")  # its check of promotions against their rules

RUNG = "refs/notes/gitevo/main-rung1"
PROMOTED = "refs/notes/gitevo/main-rung1-promoted"
CASCADE = '''
[fitness.vars]
points = "121"
[fitness.cascade]
rungs = [{ vars = { points = "15" }, promote = 0.5 }]
'''


def cascaded(repo, extra: str = "", promotion: str = "async") -> None:
    toml = repo / "gitevo.toml"
    text = toml.read_text().replace("python fitness.py --metrics {metrics}",
                                    "python fitness.py --points {points} --metrics {metrics}")
    cascade = CASCADE + f'promotion = "{promotion}"\n'
    text = text.replace("timeout = 30", "timeout = 30" + extra + cascade)
    toml.write_text(text)
    git(repo, "commit", "-qam", "screen children on 15 points before the full grid")


def start_slowed(repo, promotion: str, pause: str):
    """A cascaded generation of 8 as a process to kill, `pause` before each evaluation."""
    cascaded(repo, promotion=promotion)
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace('command = "python fitness.py --points',
                                             f'command = "{pause}python fitness.py --points'))
    git(repo, "commit", "-qam", "evaluations take a while")
    return gitevo_process("generation", "--json", "--n", "8", cwd=repo, start_new_session=True)


def notes(store: Store, ref: str) -> dict[str, dict]:
    return {c: json.loads(t) for c, t in store.read_notes(ref).items()}


@pytest.fixture
def run(toy) -> Store:
    cascaded(toy, promotion="sync")
    cli("-C", str(toy), "generation", "--n", "8")
    return Store(toy)


def test_rung_ref_sits_beside_the_fitness_notes():
    assert rung_ref("main", 1) == RUNG and notes_ref("main") == "refs/notes/gitevo/main"


def test_children_are_screened_then_the_best_half_trained_in_full(run):
    generation = ledger.read(run, "main")
    config = cfg.load(run.root / cfg.CONFIG_NAME)
    screen = notes(run, RUNG)
    final = notes(run, notes_ref("main"))
    rows = [r for r in generation.offspring if r.get("commit")]
    assert rows and all(r["commit"] in screen for r in rows)  # every child was screened
    scored = [r for r in rows if screen[r["commit"]]["status"] == "ok"]
    # the promoted ones are exactly the best half of the screen, by rank and crowding
    values = [[screen[r["commit"]]["objectives"][n] for n in config.objective_names]
              for r in scored]
    violations = [max(0.0, screen[r["commit"]]["metrics"]["l1"] - 10) for r in scored]
    best = selection.best_by_rank(values, config.senses, violations,
                                  math.ceil(0.5 * len(scored)), 0 * 100_003 + 1 * 101 + 1)
    promoted = {scored[i]["id"] for i in best}
    for row in rows:
        note, first = final[row["commit"]], screen[row["commit"]]
        assert note["rungs"][0]["rung"] == 1 and note["rungs"][0]["vars"] == {"points": "15"}
        assert note["rungs"][0]["objectives"] == first["objectives"]
        if row["id"] in promoted:
            assert note["status"] in ("ok", "suspect", "invalid", "crashed"), note
            assert row["status"] == note["status"]
        elif first["status"] == "ok":
            assert note["status"] == row["status"] == "screened", note
            assert note["objectives"] == {}  # never measured in full
            assert note["error"].startswith("screened out at rung 1 (default): "
                                            f"{len(promoted)} of the {len(scored)}")
        else:  # failed the screen: its own failure, not a screening
            assert note["status"] == first["status"] != "screened"
    assert {r["status"] for r in rows} >= {"screened"}
    # selection saw only children measured in full
    kept = {m.id for m in generation.population}
    assert kept <= promoted | {"g000-000"}
    stats = generation.stats["cascade"]
    assert len(stats) == 1
    rung = stats[0]
    assert (rung["evaluated"], rung["scored"], rung["promoted"]) == (
        len(rows), len(scored), len(promoted))
    assert rung["screened"] == len(rows) - len(promoted) and rung["training_seconds"] > 0
    # a screened child was valid: its code ran and was measured, at the screen
    assert generation.stats["valid"] == sum(r["status"] in VALID for r in rows)


def test_status_shows_where_the_training_went(run):
    out = cli("-C", str(run.root), "status")
    assert "rung 1 (default): " in out and " promoted, " in out and " screened, " in out


def test_the_html_report_shows_each_rung(run, tmp_path):
    cli("-C", str(run.root), "report", "--html", str(tmp_path / "report"))
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<th>cascade</th>" in page and "rung 1 (default): " in page


def test_without_a_cascade_notes_and_stats_are_as_before(toy):
    cli("-C", str(toy), "generation", "--n", "4")
    store = Store(toy)
    assert store.resolve_ref(RUNG) is None
    assert all("rungs" not in n for n in notes(store, notes_ref("main")).values())
    assert "cascade" not in ledger.read(store, "main").stats


@pytest.mark.slow
def test_a_rerun_after_kill_9_runs_no_rung_twice(toy):
    """Killed while the promoted children train in full: the rerun finishes the full
    evaluations, screens the same children and writes no screening note again."""
    # the full evaluation takes seconds, the screen none: the kill lands in the full stage
    slow = "python -c 'import sys, time; time.sleep(3 * (sys.argv[1] != \\\"15\\\"))' {points} && "
    proc = start_slowed(toy, "sync", slow)
    stages = 0
    for line in proc.stdout:
        event = json.loads(line)
        stages += event["kind"] == "evaluating"
        if event["kind"] == "evaluation_started" and stages >= 2:
            break  # the screen is done, the full stage has begun
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store(toy)
    screened_before = notes(store, RUNG)
    assert screened_before and ledger.read(store, "main").generation == 0
    cli("-C", str(toy), "generation")
    store = Store(toy)
    assert notes(store, RUNG) == screened_before  # the screen was not run again
    written = faults.written_notes(toy, RUNG)
    assert len(written) == len(set(written)) == len(screened_before)  # each note once
    generation = ledger.read(store, "main")
    assert generation.generation == 1
    final = notes(store, notes_ref("main"))
    rows = [r for r in generation.offspring if r.get("commit")]
    assert rows and all(r["commit"] in final for r in rows)
    assert {r["status"] for r in rows} >= {"screened", "ok"}


def test_a_margin_holds_back_children_behind_their_parent_at_the_rung(tmp_path):
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy", "--no-eval")
    cascaded(repo)
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace("promote = 0.5 }",
                                             "promote = 1.0, margin = 0.0 }"))
    git(repo, "commit", "-qam", "promote every child that keeps up with its parent")
    cli("-C", str(repo), "seed")
    cli("-C", str(repo), "generation", "--n", "8")
    store = Store(repo)
    screen, final = notes(store, RUNG), notes(store, notes_ref("main"))
    seed = store.resolve_ref(individual_ref("main", SEED_ID))
    assert screen[seed]["status"] == "ok"  # the seed is measured at the rung too
    held = went = 0
    for row in ledger.read(store, "main").offspring:
        first = screen.get(row.get("commit"))
        if first is None or first["status"] != "ok":
            continue
        parent = screen[store.parents(row["commit"])[0]]
        mine, theirs = first["objectives"]["accuracy"], parent["objectives"]["accuracy"]
        note = final[row["commit"]]
        if mine < theirs:
            held += 1
            assert note["status"] == "screened", note
            assert note["error"] == (f"screened out at rung 1 (default): accuracy {mine:.6g} "
                                     f"is behind its parent's {theirs:.6g} at this rung by "
                                     "more than 0")
        else:
            went += 1
            assert note["status"] != "screened" and "objectives" in note
    assert held and went


# ---- asynchronous promotion -------------------------------------------------------------------

def result(accuracy: float, l1: float) -> Evaluation:
    return Evaluation("ok", objectives={"accuracy": accuracy, "l1": l1},
                      metrics={"accuracy": accuracy, "l1": l1})


@pytest.fixture
def toy_config(toy):
    return cfg.load(toy / cfg.CONFIG_NAME)  # accuracy max, l1 min, l1 <= 10


def test_a_child_is_certain_once_too_few_siblings_could_pass_it(toy_config):
    rung = Rung(vars={"points": "15"}, promote=0.5)
    results = {"a": result(0.9, 1.0), "b": result(0.5, 2.0), "c": result(0.8, 0.5),
               "d": result(0.4, 3.0)}
    # 4 still to come, 4 places of 8: only `c` might be ahead of `a`, yet with the 4 that
    # makes 5: nobody is certain
    assert cascade.certain(results, 4, rung, toy_config, {}) == []
    # 1 to come, 3 places of 5: a and c (each passed by the other at most, and the one to
    # come) are certain; b, dominated by both, is not
    assert cascade.certain(results, 1, rung, toy_config, {}) == ["a", "c"]
    # the whole rung: the rule's own picks
    assert cascade.due(results, 0, rung, toy_config, 1, {}, {"a"}) == ["c"]
    assert cascade.due(results, None, rung, toy_config, 1, {}, set()) == []
    # infeasible (l1 over 10): behind every feasible child, so never in its way
    results["e"] = result(0.99, 20.0)
    assert cascade.certain(results, 1, rung, toy_config, {}) == ["a", "c"]
    # ASHA's rule: the best half, rounded down, of those scored
    assert cascade.due(results, 3, rung, toy_config, 1, {}, set(), "asha") == ["a", "c"]


def test_asynchronous_promotion_picks_whom_waiting_would_have(toy):
    cascaded(toy)  # two workers: asynchronous, sure promotions only
    cli("-C", str(toy), "generation", "--n", "8")
    assert faults.promotion_problems(toy, {}) == []  # no more, no fewer than the rule's


def test_asha_promotion_trains_in_full_before_the_rung_ends(toy):
    cascaded(toy, promotion="asha")
    out = cli("-C", str(toy), "generation", "--n", "8", "--json")
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    store = Store(toy)
    assert faults.promotion_problems(toy, {}) == []
    records = notes(store, PROMOTED)
    assert any(r["early"] for r in records.values())
    kinds = [e["kind"] for e in events]
    first = kinds.index("promoted")
    ident = events[first]["id"]
    # a promoted child starts its full evaluation while siblings are still screened
    starts = [k for k, e in enumerate(events)
              if e["kind"] == "evaluation_started" and e["id"] == ident]
    finished = [k for k, e in enumerate(events) if e["kind"] == "evaluation_finished"]
    screens = len(notes(store, RUNG)) - 1  # the seed's screen is generation 0's
    assert len(starts) == 2 and starts[1] < finished[screens - 1]
    out = cli("-C", str(toy), "status")
    assert " early), " in out


@pytest.mark.slow
def test_asha_promotions_survive_kill_9(toy):
    """Killed right after an early promotion, while siblings are still screened: the
    rerun keeps every recorded promotion, writes no screening note or promotion twice,
    and ends with every child settled by the rules."""
    # every evaluation takes a moment, so the kill lands with screens still running
    proc = start_slowed(toy, "asha", "python -c 'import time; time.sleep(0.5)' && ")
    for line in proc.stdout:
        if json.loads(line)["kind"] == "promoted":
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store(toy)
    decided = notes(store, PROMOTED)
    assert decided and len(notes(store, RUNG)) < 9  # screens were still to come
    cli("-C", str(toy), "generation")
    store = Store(toy)
    after = notes(store, PROMOTED)
    assert {c: after[c] for c in decided} == decided  # no decision changed
    for ref in (RUNG, PROMOTED):
        written = faults.written_notes(toy, ref)
        assert len(written) == len(set(written)), ref
    assert ledger.read(store, "main").generation == 1
    assert faults.promotion_problems(toy, decided) == []


# ---- [fitness.cascade] in gitevo.toml ---------------------------------------------------------

def write(tmp_path, cascade: str):
    path = tmp_path / cfg.CONFIG_NAME
    path.write_text('[genes]\nfiles = ["m.py"]\n[fitness]\ncommand = "run {n}"\n'
                    f'[fitness.vars]\nn = "9"\n[fitness.cascade]\n{cascade}\n'
                    '[objectives]\nacc = "max"\n')
    return path


def test_rungs_are_read_in_order(tmp_path):
    got = cfg.load(write(tmp_path, 'rungs = [{ fidelity = "smoke", promote = 0.25 },'
                                   ' { vars = { n = "3" } }]')).fitness.rungs
    assert got == (Rung(fidelity="smoke", promote=0.25), Rung(vars={"n": "3"}))
    margin = cfg.load(write(tmp_path, 'rungs = [{ fidelity = "s", margin = 0.02 }]'))
    assert margin.fitness.rungs == (Rung(fidelity="s", margin=0.02),)
    assert cfg.load(write(tmp_path, "")).fitness.rungs == ()


@pytest.mark.parametrize("cascade, message", [
    ("rungs = [{ promote = 0.5 }]", "rungs[0].fidelity: a rung needs a fidelity or vars"),
    ('rungs = [{ fidelity = "x", promote = 0 }]', "rungs[0].promote: must be above 0"),
    ('rungs = [{ fidelity = "x", promote = 1.5 }]', "rungs[0].promote: must be between 0"),
    ('rungs = [{ vars = { m = "1" } }]', "rungs[0].vars.m: not a key of [fitness.vars]"),
    ('rungs = [{ vars = { n = 1 } }]', "rungs[0].vars.n: expected a string"),
    ('rungs = ["smoke"]', "rungs[0]: expected a table"),
    ('rungs = [{ fidelity = "x", keep = 1 }]', "rungs[0].keep: unknown key"),
    ('rungs = [{ fidelity = "x", margin = -0.1 }]', "rungs[0].margin: must be >= 0"),
    ("steps = 2", "fitness.cascade.steps: unknown key"),
    ('promotion = "eager"', 'fitness.cascade.promotion: must be "async", "asha" or "sync"'),
])
def test_bad_cascades_are_one_line_naming_the_key(tmp_path, cascade, message):
    with pytest.raises(ConfigError) as info:
        cfg.load(write(tmp_path, cascade))
    assert message in str(info.value) and "\n" not in str(info.value)
