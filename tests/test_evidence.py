"""Prompts that carry the evidence: the task, the scores, the block's history, inspiration
and the run notebook, read from a real guided toy run through the `command` provider."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from gitevo import config as gitevo_config
from gitevo.pipeline import replay
from gitevo.store import ledger
from gitevo.store.gitstore import Store, ledger_ref, llm_notes_ref
from gitevo.store.individuals import load_all
from gitevo.variation import sections, task
from gitevo.variation.prompts import PromptLibrary
from tests.conftest import cli, committed_repo, git

RESPONDER = Path(__file__).with_name("responder.py")
PROMPT = """
[prompt]
history = 6
inspiration = 2
notebook = true
[prompt.tokens]
history = 420
inspiration = 400
notebook = 200
"""


def evidence_toy(tmp_path: Path, prompt: str = PROMPT) -> Path:
    """The toy template driven by the scripted responder: some first answers are prose
    (refused: no repair turn), some are code that fails its check (invalid)."""
    repo = tmp_path / "evidence"
    cli("init", str(repo), "--template", "toy")
    text = (repo / "gitevo.toml").read_text()
    command = (f"GITEVO_RESPONDER_SLOPPY=5 GITEVO_RESPONDER_BROKEN=4 {sys.executable} "
               f"{RESPONDER}")
    text = text.replace('provider = "offline"',
                        f'provider = "command"\ncommand = "{command}"\nconcurrency = 3\n'
                        'repair_turns = 0\nprices = { input = 3.0, output = 15.0 }')
    text = text.replace("prob_eot = 0.0", "prob_eot = 0.3").replace("prob_mutation = 0.7",
                                                                      "prob_mutation = 0.4")
    (repo / "gitevo.toml").write_text(text + prompt)
    git(repo, "commit", "-qam", "evolve with a (scripted) LLM, with evidence in the prompts")
    return repo


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    repo = evidence_toy(tmp_path_factory.mktemp("evidence"))
    cli("-C", str(repo), "run", "--generations", "3", "--n", "8")
    return repo


def _records(repo: Path, generation: int | None = None) -> dict[str, dict]:
    store = Store(repo)
    return {ind.id: json.loads(store.read_note(llm_notes_ref("main"), ind.commit))
            for ind in load_all(store, "main").values()
            if ind.generation and (generation is None or ind.generation == generation)}


def _config(repo: Path) -> gitevo_config.Config:
    return gitevo_config.load(repo / "gitevo.toml")


def test_third_generation_prompts_carry_the_parents_and_the_seeds_scores(run):
    store = Store(run)
    everyone = load_all(store, "main")
    for ident, record in _records(run, 3).items():
        user = record["turns"][0]["user"]
        seed = everyone["g000-000"].evaluation.objectives
        assert f"- the seed, g000-000: accuracy {seed['accuracy']:.4g}" in user
        for parent in record["spec"]["parents"]:
            values = everyone[parent].evaluation.objectives
            assert re.search(rf", {parent}: accuracy {values['accuracy']:.4g} .*l1 "
                             rf"{values['l1']:.4g}", user), (ident, parent)
        assert "meets every constraint" in user or "breaks the constraints" in user


def test_history_shows_earlier_attempts_on_the_block_failures_with_their_reasons(run):
    store = Store(run)
    history_of = ledger.history(store, "main")
    rows = [row for gen in history_of[1:3] for row in gen.offspring]
    failed = {row["id"]: row for row in rows if row["status"] in ("rejected", "invalid")}
    assert {r["status"] for r in failed.values()} == {"rejected", "invalid"}, \
        "the scripted answers should leave both kinds of failure before generation 3"
    seen = set()
    for generation in (2, 3):  # which blocks a generation's children edit is the plan's draw
        before = [row for gen in history_of[1:generation] for row in gen.offspring]
        for record in _records(run, generation).values():
            history = record["sections"]["history"]
            block = record["spec"]["block"]
            earlier = [r["id"] for r in reversed(before) if r["block"] == block]
            listed = re.findall(r"^- (g00[12]-\d{3}) ", history, flags=re.M)
            assert listed == earlier[:len(listed)], "newest first, the same block only"
            assert listed or not earlier
            for ident in set(listed) & set(failed):
                row = failed[ident]
                line = history.split(f"- {ident} ", 1)[1].split("\n- ", 1)[0]
                if row["status"] == "rejected":
                    assert "rejected before any evaluation: " + row["error"][:40] in line
                else:
                    assert "invalid: " in line and "undefined_gain" in line
                seen.add(row["status"])
            if history:
                assert "failures are here on purpose" in history
    assert seen == {"rejected", "invalid"}, "later prompts show both kinds of failure"


def test_sections_stay_within_their_budgets_and_say_what_they_left_out(run):
    budgets = _config(run).prompt.tokens
    left_out = 0
    for record in _records(run).values():
        for name, text in record["sections"].items():
            assert sections.tokens(text) <= budgets[name], (name, sections.tokens(text))
        left_out += "left out to keep this section within its budget" in \
            record["sections"]["history"]
    assert left_out, "a 420-token history budget over three generations must drop some"


def test_the_stable_prefix_is_identical_across_every_call_of_the_run(run):
    records = _records(run)
    assert len({r["stable"] for r in records.values()}) == 1
    assert len({r["system"] for r in records.values()}) == 1
    stable = next(iter(records.values()))["stable"]
    assert "<task>" in stable and "l1 <= 10" in stable  # the task, filled from the config


def test_prompts_rebuild_byte_for_byte_from_refs_and_notes(run):
    store, config = Store(run), _config(run)
    text = task.render(store, config, None)
    for ident, record in _records(run).items():
        prompt = replay.rebuild(store, config, "main", ident, task_text=text)
        assert prompt.stable == record["stable"], ident
        assert prompt.variable == record["turns"][0]["user"], ident


def test_inspiration_shows_better_versions_of_the_block_with_their_scores(run):
    shown = [r["sections"]["inspiration"] for r in _records(run, 3).values()]
    assert any(shown)
    for text in filter(None, shown):
        assert "```python" in text and re.search(r"^g\d{3}-\d{3} \(accuracy ", text, re.M)


def test_the_notebook_is_on_the_ledger_in_the_next_prompts_and_its_cost_counted(run):
    store = Store(run)
    history = ledger.history(store, "main")
    for gen in history[1:]:
        assert f"Lessons after generation {gen.generation}" in gen.notebook
    head = store.resolve_ref(ledger_ref("main"))
    note = json.loads(store.read_note(llm_notes_ref("main"), head))
    assert note["kind"] == "notebook" and note["generation"] == 3
    turn = note["turns"][0]
    assert "What the children of generation 3 tried" in turn["user"]
    for record in _records(run, 3).values():
        assert "Lessons after generation 2" in record["sections"]["notebook"]
        assert "Lessons after generation 2" in record["turns"][0]["user"]
    # the generation's LLM usage: every child's turns, every refusal's, and the notebook's
    gen = history[-1]
    turns = [t for r in _records(run, 3).values() for t in r["turns"]]
    turns += [t for row in gen.offspring if row["status"] == "rejected" for t in row["turns"]]
    children = sum(t["usage"]["input_tokens"] for t in turns)
    assert gen.stats["llm"]["input_tokens"] == children + turn["usage"]["input_tokens"]
    assert gen.stats["llm_calls"]["ok"] == len(turns) + 1
    assert turn["usage"]["cost"] > 0 and gen.stats["cost"] == pytest.approx(
        sum(t["usage"]["cost"] for t in turns) + turn["usage"]["cost"])


def test_show_prompt_lists_every_section_and_confirms_the_rebuild(run):
    ident = sorted(_records(run, 3))[0]
    out = cli("-C", str(run), "show", ident, "--prompt")
    assert re.search(r"sections \(estimated tokens / budget\): task \d+/1200, scores "
                     r"\d+/300, notebook \d+/200, history \d+/420", out)
    for name in ("task (cached part)", "scores (this call's part)",
                 "notebook (this call's part)", "history (this call's part)"):
        assert f"=== section: {name} ===" in out
    assert "rebuilt from refs and notes: identical to the recorded prompt" in out


# ---- the task file ----------------------------------------------------------------------------


def test_a_task_placeholder_it_does_not_know_stops_the_run_in_one_line(tmp_path):
    repo = evidence_toy(tmp_path)
    (repo / ".gitevo" / "task.md").write_text("Train for {epochs} epochs.\n")
    out = cli("-C", str(repo), "generation", "--n", "2", expect=2)
    assert "task.md: unknown placeholder {epochs} (known: " in out
    assert len(out.strip().splitlines()) == 1
    assert git(repo, "branch", "--list", "gitevo/main/g001-*") == ""


def test_recipe_without_a_command_is_named(tmp_path):
    repo = evidence_toy(tmp_path)
    (repo / ".gitevo" / "task.md").write_text("{recipe}\n")
    out = cli("-C", str(repo), "generation", "--n", "2", expect=2)
    assert "{recipe} needs a command in [prompt] recipe" in out


def test_the_recipe_command_runs_on_the_seed_and_fills_its_placeholder(tmp_path):
    repo = evidence_toy(tmp_path, PROMPT.replace(
        "[prompt]\n", '[prompt]\nrecipe = "echo trained at {fidelity} on $(ls fitness.py)"\n'))
    (repo / ".gitevo" / "task.md").write_text("Recipe: {recipe}\nCascade: {cascade}\n")
    git(repo, "commit", "-qam", "task with a recipe")
    text = task.render(Store(repo), _config(repo), Store(repo).resolve_ref(
        "refs/heads/gitevo/main/g000-000"))
    assert text == ("Recipe: trained at default on fitness.py\nCascade: Every child is "
                    "trained and measured in full at fidelity 'default'.")


def test_a_failing_recipe_command_is_one_line(tmp_path):
    repo = evidence_toy(tmp_path, PROMPT.replace("[prompt]\n",
                                                 '[prompt]\nrecipe = "echo no such fidelity >&2; '
                                                 'exit 3"\n'))
    (repo / ".gitevo" / "task.md").write_text("{recipe}\n")
    git(repo, "commit", "-qam", "a broken recipe")
    out = cli("-C", str(repo), "generation", "--n", "2", expect=2)
    assert "[prompt] recipe exited 3: no such fidelity" in out
    assert git(repo, "branch", "--list", "gitevo/main/g001-*") == ""


@pytest.mark.parametrize(("text", "error"), [
    ('[prompt]\nhistory = -1\n', "prompt.history: must be >= 0"),
    ('[prompt]\ntask = "/etc/passwd"\n', "prompt.task: must be a path inside the repository"),
    ('[prompt]\nrecipe = "describe {budget}"\n', "prompt.recipe: unknown placeholder {budget}"),
    ('[prompt.tokens]\nhistroy = 10\n', "prompt.tokens.histroy: unknown key"),
    ('[prompt.tokens]\nhistory = 5\n', "prompt.tokens.history: must be >= 50"),
])
def test_bad_prompt_settings_are_one_line_errors(text, error):
    base = ('[genes]\nfiles = ["m.py"]\n[fitness]\ncommand = "true {metrics}"\n'
            '[objectives]\nacc = "max"\n')
    with pytest.raises(gitevo_config.ConfigError, match=re.escape(error)):
        gitevo_config.parse(base + text, "gitevo.toml")


# ---- budgets, one section at a time -----------------------------------------------------------


def test_a_long_task_is_cut_at_a_line_and_says_so(tmp_path):
    config = gitevo_config.parse('[genes]\nfiles = ["m.py"]\n[fitness]\ncommand = "x {metrics}"'
                                 '\n[objectives]\nacc = "max"\n[prompt.tokens]\ntask = 100\n')
    lib = PromptLibrary.load(None)
    text = "\n".join(f"line {i}: " + "words " * 8 for i in range(40))
    cut = sections.task_section(lib, config, text)
    assert sections.tokens(cut) <= 100
    assert "[cut here to keep this section within its budget of 100 tokens]" in cut
    assert "line 0:" in cut and "line 39:" not in cut
    assert sections.task_section(lib, config, "short").endswith("short\n</task>")


def test_init_says_where_the_task_goes_and_checks_a_template_task(tmp_path):
    out = cli("init", str(tmp_path / "toy"), "--template", "toy", "--no-eval")
    assert "task.md" not in out  # the template ships a usable one
    repo = committed_repo(tmp_path / "own", {"m.py": "def f(x):\n    return x\n"})
    out = cli("-C", str(repo), "init", "--files", "m.py", "--fitness",
              "python -c 'print(1)' {metrics}", "--objective", "acc:max", "--no-eval")
    assert "gitevo: no .gitevo/task.md yet: with an LLM, describe the task there" in out
