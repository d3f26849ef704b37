"""LLM-guided generations end to end: the command provider with a scripted responder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from tests.conftest import cli, git

RESPONDER = Path(__file__).with_name("responder.py")


def guided_toy(tmp_path: Path, sloppy: int = 0, extra: str = "") -> Path:
    repo = tmp_path / "guided"
    cli("init", str(repo), "--template", "toy")
    text = (repo / "gitevo.toml").read_text()
    command = f"GITEVO_RESPONDER_SLOPPY={sloppy} {sys.executable} {RESPONDER}"
    text = text.replace('provider = "offline"',
                        f'provider = "command"\ncommand = "{command}"\nconcurrency = 3{extra}')
    text = text.replace("prob_eot = 0.0", "prob_eot = 0.4").replace("prob_mutation = 0.7",
                                                                      "prob_mutation = 0.3")
    (repo / "gitevo.toml").write_text(text)
    git(repo, "commit", "-qam", "evolve with a (scripted) LLM")
    return repo


@pytest.fixture(scope="module")
def guided(tmp_path_factory) -> Path:
    repo = guided_toy(tmp_path_factory.mktemp("guided"), sloppy=4)
    cli("-C", str(repo), "run", "--generations", "3", "--n", "8")
    return repo


def test_guided_run_makes_mutation_eot_and_crossover_children(guided):
    store = Store(guided)
    everyone = load_all(store, "main")
    operators = {i.operator for i in everyone.values()}
    assert {"mutation", "eot", "crossover"} <= operators
    for ind in everyone.values():
        if ind.operator == "crossover":
            assert len(store.parents(ind.commit)) == 2
        if ind.generation == 0:
            continue
        trailers = store.trailers(ind.commit)
        assert trailers["Gitevo-Model"] == "command"
        assert 0.05 <= float(trailers["Gitevo-Temperature"]) <= 0.4
        assert trailers["Gitevo-Prompt"].split("+")[0] in ("eot", "crossover") or \
            trailers["Gitevo-Prompt"].startswith("mutation/")
        record = json.loads(store.read_note("refs/notes/gitevo/main-llm", ind.commit))
        assert record["turns"] and record["stable"] and record["system"]
        assert '<seed-file path="model.py">' in record["stable"]
        assert record["turns"][-1]["error"] is None or ind.status != "ok"


def test_eot_prompt_carries_the_elites_lesson(guided):
    store = Store(guided)
    eot = [i for i in load_all(store, "main").values() if i.operator == "eot"]
    record = json.loads(store.read_note("refs/notes/gitevo/main-llm", eot[0].commit))
    first = record["turns"][0]["user"]
    assert "Seed version of" in first and "How the objectives moved" in first
    assert "accuracy" in first


def test_repair_turns_rescue_sloppy_answers_and_are_recorded(guided):
    store = Store(guided)
    repaired = []
    for ind in load_all(store, "main").values():
        if ind.generation:
            record = json.loads(store.read_note("refs/notes/gitevo/main-llm", ind.commit))
            if len(record["turns"]) > 1:
                repaired.append(record)
    assert repaired, "GITEVO_RESPONDER_SLOPPY=4 should force some repair turns"
    first, second = repaired[0]["turns"][:2]
    assert first["error"].startswith("no-diff") and second["user"].startswith(
        "Your answer could not be used")


def test_show_prompt_prints_the_exact_conversation(guided):
    store = Store(guided)
    ident = next(i.id for i in load_all(store, "main").values() if i.operator == "mutation"
                 and i.generation)
    out = cli("-C", str(guided), "show", ident, "--prompt")
    record = json.loads(store.read_note("refs/notes/gitevo/main-llm",
                                        store.resolve(f"gitevo/main/{ident}")))
    assert record["turns"][0]["response"].strip().splitlines()[0] in out
    assert "=== turn 1: user ===" in out and "diff against g" in out


def test_ledger_counts_tokens_and_valid_rate(guided):
    gens = ledger.history(Store(guided), "main")
    assert all(g.stats["tokens"] > 0 for g in gens[1:])
    assert gens[-1].stats["llm_total"]["input_tokens"] == sum(
        g.stats["llm"]["input_tokens"] for g in gens[1:])
    status = cli("-C", str(guided), "status")
    assert "valid offspring" in status


def test_budget_stops_proposing_cleanly(tmp_path):
    repo = guided_toy(tmp_path, extra="\nmax_tokens = 6000")
    out = cli("-C", str(repo), "run", "--generations", "5", "--n", "4")
    assert "LLM budget spent" in out
    last = ledger.read(Store(repo), "main")
    assert last.generation < 5 and last.stats["llm_total"]["input_tokens"] > 0
    total = sum(last.stats["llm_total"].values()) - last.stats["llm_total"]["cost"]
    assert total <= 6000
    assert any(r["status"] == "rejected" and r["error"].startswith("budget")
               for r in last.offspring)


def test_missing_server_is_one_line_and_resumable(tmp_path):
    repo = tmp_path / "openai"
    cli("init", str(repo), "--template", "toy")
    text = (repo / "gitevo.toml").read_text().replace(
        'provider = "offline"', 'provider = "openai"\nmodel = "local"\n'
        'base_url = "http://127.0.0.1:9/v1"\nretries = 0')
    (repo / "gitevo.toml").write_text(text)
    git(repo, "commit", "-qam", "a server that is not there")
    import subprocess

    out = subprocess.run([sys.executable, "-m", "gitevo", "generation", "--n", "2"], cwd=repo,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "cannot reach http://127.0.0.1:9/v1" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert (repo / ".git" / "gitevo" / "runs" / "main" / "plan.json").exists()
    assert not (repo / ".git" / "gitevo" / "lock").exists()


def test_refused_proposals_keep_their_conversation_in_the_ledger(tmp_path):
    repo = guided_toy(tmp_path, sloppy=1, extra="\nrepair_turns = 0")  # every answer is prose
    cli("-C", str(repo), "generation", "--n", "3")
    gen = ledger.read(Store(repo), "main")
    assert [r["status"] for r in gen.offspring] == ["rejected"] * 3
    assert gen.stats["rejected"] == {"no-diff": 3} and gen.stats["valid_rate"] == 0
    for row in gen.offspring:
        assert row["turns"][0]["response"].startswith("I would change the constants")
        assert row["template"] != "offline"


def test_children_checked_when_proposed_are_not_checked_again(tmp_path):
    repo = guided_toy(tmp_path)
    log = tmp_path / "checks.log"
    text = (repo / "gitevo.toml").read_text().replace(
        'check = "python fitness.py --check --metrics {metrics}"',
        f'check = "pwd >> {log} && python fitness.py --check --metrics {{metrics}}"')
    # the log outside the worktree is this test's instrument; a confined check could not
    # write it
    (repo / "gitevo.toml").write_text(text + '\n[sandbox]\nisolation = "none"\nlandlock = false\n')
    git(repo, "commit", "-qam", "log every check")
    cli("-C", str(repo), "generation", "--n", "4")
    gen = ledger.read(Store(repo), "main")
    kept = [r for r in gen.offspring if r["status"] != "rejected"]
    lines = log.read_text().splitlines()
    assert kept and all(r["status"] == "ok" for r in kept)
    # once each, in its own tree, when proposed: the evaluations ran no check
    assert len(lines) == len(gen.offspring) == len(set(lines))


def _with_commands(repo: Path, check: str, command: str) -> None:
    text = (repo / "gitevo.toml").read_text()
    for old, new in (('check = "python fitness.py --check --metrics {metrics}"', check),
                     ('command = "python fitness.py --metrics {metrics}"', command)):
        assert old in text  # else the test would run the template's own commands
        text = text.replace(old, f"{old.split(' = ')[0]} = {json.dumps(new)}")
    (repo / "gitevo.toml").write_text(text + '\n[sandbox]\nisolation = "none"\nlandlock = false\n')
    git(repo, "commit", "-qam", "instrumented commands")


def test_the_tree_checked_when_proposed_is_the_one_evaluated(tmp_path):
    repo = guided_toy(tmp_path)
    seen = tmp_path / "mtimes.log"
    # the check stamps a file's time (its content stays): an evaluation in that very tree
    # sees the stamp, one in a tree exported again would not
    _with_commands(repo, "touch -d @1000000000 fitness.py && "
                         "python fitness.py --check --metrics {metrics}",
                   f"stat -c %Y fitness.py >> {seen} && python fitness.py --metrics {{metrics}}")
    cli("-C", str(repo), "generation", "--n", "4")
    gen = ledger.read(Store(repo), "main")
    kept = [r for r in gen.offspring if r["status"] != "rejected"]
    assert kept and all(r["status"] == "ok" for r in kept)
    assert seen.read_text().split() == ["1000000000"] * len(kept)


def test_a_check_that_rewrites_the_tree_does_not_reach_the_evaluation(tmp_path):
    repo = guided_toy(tmp_path)
    tampered = tmp_path / "tampered.log"
    _with_commands(repo, f"echo '# tampered' >> model.py && echo x >> {tampered} && "
                         "python fitness.py --check --metrics {metrics}",
                   "! grep -q tampered model.py && python fitness.py --metrics {metrics}")
    cli("-C", str(repo), "generation", "--n", "4")
    gen = ledger.read(Store(repo), "main")
    kept = [r for r in gen.offspring if r["status"] != "rejected"]
    # every child was checked in a tree that the check then changed: each evaluation
    # got a fresh export of the commit instead
    assert len(tampered.read_text().split()) == len(gen.offspring)
    assert kept and all(r["status"] == "ok" for r in kept)


BROKEN_BLOCK = '''
import re, sys
prompt = sys.stdin.read()
if prompt.count("=== user ===") > 1 and "{mode}" == "fail-repair":
    sys.exit(3)  # the repair turn's call fails outright
if "{mode}" == "fail-repair":
    print("I would tweak the constants, but here is no code.")
    sys.exit(0)
name = re.search(r"(?:block to change is|same idea to|two versions of) `(\\w+)`", prompt)[1]
print(f"```python\\ndef {{name}}(x):\\n    return undefined_name * 2\\n```")
'''


def _scripted(tmp_path: Path, mode: str) -> Path:
    script = tmp_path / f"{mode}.py"
    script.write_text(BROKEN_BLOCK.format(mode=mode))
    repo = tmp_path / mode
    cli("init", str(repo), "--template", "toy", "--llm", "provider=command",
        "--llm", f"command={sys.executable} {script}")
    text = (repo / "gitevo.toml").read_text().replace('provider = "command"',
                                                      'provider = "command"\nretries = 0')
    (repo / "gitevo.toml").write_text(text)
    git(repo, "commit", "-qam", "no retries: the scripted failures are final")
    return repo


def test_a_child_still_invalid_after_its_last_repair_turn_is_evaluated_as_invalid(tmp_path):
    repo = _scripted(tmp_path, "always-broken")
    cli("-C", str(repo), "generation", "--n", "3")
    children = [i for i in load_all(Store(repo), "main").values() if i.generation == 1]
    # the same broken code twice (two children drew one block) is one child: the other
    # is refused as its duplicate
    refused = [r for r in ledger.read(Store(repo), "main").offspring
               if r["status"] == "rejected"]
    assert children and len(children) + len(refused) == 3
    assert all(r["error"].startswith("duplicate: ") for r in refused)
    # committed as data, but its evaluation reran the check that it failed at proposal
    assert {c.status for c in children} == {"invalid"}
    assert all("check failed" in c.evaluation.error for c in children)


def test_a_repair_call_that_fails_keeps_the_turns_already_paid_for(tmp_path):
    repo = _scripted(tmp_path, "fail-repair")
    cli("-C", str(repo), "generation", "--n", "2")
    gen = ledger.read(Store(repo), "main")
    rows = [r for r in gen.offspring if r["status"] == "rejected"]
    assert len(rows) == 2 and all(r["error"].startswith("llm-server") for r in rows)
    assert all(len(r["turns"]) == 1 and r["turns"][0]["usage"]["input_tokens"] > 0
               for r in rows)
    assert gen.stats["llm"]["input_tokens"] == sum(r["turns"][0]["usage"]["input_tokens"]
                                                   for r in rows)
