"""Prompt sets chosen by the task: `init` picks "model" for code that builds a torch
module and "program" otherwise; the program set's prompts, sent through the `command`
provider on a repository that is no neural network, speak of programs, never of models
or training, and name the run's objectives and constraints in every call (repairs
too); a direction per objective; a user's own set with a missing file or an unknown
placeholder is refused in one line at init and at the start of a run."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from gitevo import config as cfg
from gitevo.core import resources
from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from gitevo.variation.prompts import PromptLibrary, mutation
from tests.conftest import RESPONDER, cli, git
from tests.test_bad_input import run_gitevo

SOLVER = '''"""Approximate the golden ratio by iterating a continued fraction."""


def guess(n):
    x = 1.0
    for _ in range(n):
        x = 1.0 + 1.0 / x
    return x


def steps():
    return 3
'''
SCORER = '''import json, math, sys
import solver
n = solver.steps()
value = solver.guess(n)
if not isinstance(n, int) or not math.isfinite(value):
    sys.exit("steps() must be an int and guess() finite")
json.dump({"error": abs(value - (1 + 5 ** 0.5) / 2), "cost": n}, open(sys.argv[1], "w"))
'''
# words of the model set that have no place in prompts about a program
ML_WORDS = re.compile(r"\b(models?|tensors?|train(ed|ing)?|pytorch|torch|neural|"
                      r"accuracy|layers?|epochs?)\b", re.I)
OBJECTIVES = ("- error: to be minimised (lower is better)",
              "- cost: to be minimised (lower is better)", "- cost <= 50")


def program_repo(tmp_path: Path, *flags: str) -> tuple[Path, str]:
    """A repository that is no neural network, set up by `gitevo init --files`."""
    repo = tmp_path / "golden"
    repo.mkdir()
    (repo / "solver.py").write_text(SOLVER)
    (repo / "score.py").write_text(SCORER)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "a program to evolve")
    out = cli("-C", str(repo), "init", "--files", "solver.py", "--fitness",
              "python score.py {metrics}", "--objective", "error:min", "--objective",
              "cost:min", "--no-eval", *flags)
    return repo, out


def guided(repo: Path, sloppy: int) -> None:
    command = f"GITEVO_RESPONDER_SLOPPY={sloppy} {sys.executable} {RESPONDER}"
    toml = repo / "gitevo.toml"
    text = toml.read_text().replace('provider = "offline"', 'provider = "command"\n'
                                    f'command = {json.dumps(command)}')
    text = re.sub(r"^constraints = .*$", 'constraints = ["cost <= 50"]', text, flags=re.M)
    toml.write_text(text)
    git(repo, "commit", "-qam", "an LLM answers, and steps are bounded")


def conversations(repo: Path) -> list[dict]:
    """Each child's recorded LLM call: its system prompt and turns, first prompt first."""
    store = Store(repo)
    found = []
    for ind in load_all(store, "main").values():
        note = store.read_note("refs/notes/gitevo/main-llm", ind.commit)
        if note:
            found.append(json.loads(note))
    return found


def test_init_picks_a_set_from_the_gene_files_and_says_how_to_change_it(tmp_path):
    _, out = program_repo(tmp_path)
    assert "prompts: 'program' (the gene files build no torch module)" in out
    assert '[llm] prompts in gitevo.toml changes it' in out
    for template, expected in (("toy", "program"), ("exquisitenetv2", "model")):
        out = cli("init", str(tmp_path / template), "--template", template, "--no-eval")
        assert f"prompts: {expected!r} (the gene files build" in out
        conf = cfg.load(tmp_path / template / "gitevo.toml")
        assert conf.llm.prompts == expected
    out = cli("init", str(tmp_path / "forced"), "--template", "toy", "--no-eval",
              "--llm", "prompts=model")
    assert "prompts: 'model' (as gitevo.toml sets)" in out


def test_the_program_sets_prompts_speak_of_programs_and_name_the_objectives(tmp_path):
    repo, _ = program_repo(tmp_path)
    guided(repo, sloppy=2)  # every other first answer is prose: repair turns happen
    cli("-C", str(repo), "generation", "--n", "6", "-q")
    calls = conversations(repo)
    assert calls
    repairs = 0
    for call in calls:
        assert "improve programs" in call["system"]
        # the first message is the stable part (cached), then the call's own part; a
        # repair is a message of its own
        _, *later = call["turns"]
        for text in (call["system"], call["stable"], *(t["user"] for t in call["turns"])):
            assert not ML_WORDS.search(text), ML_WORDS.search(text).group(0)
        for text in (call["stable"], *(t["user"] for t in later)):
            assert all(line in text for line in OBJECTIVES), text
        repairs += bool(later)
    assert repairs, "no repair turn was exercised"
    store = Store(repo)
    kinds = {store.trailers(i.commit).get("Gitevo-Prompt", "")
             for i in load_all(store, "main").values() if i.generation == 1}
    # "mutation/improve:cost+mathematician": a direction of the program set, a persona
    drawn = {f"mutation/{d}" for d in library(repo).directions} | {"crossover", "eot"}
    assert kinds and all(k.partition("+")[0] in drawn for k in kinds), kinds


def library(repo: Path) -> PromptLibrary:
    return PromptLibrary.for_config(repo, cfg.load(repo / "gitevo.toml"))


def test_a_direction_per_objective_is_an_arm_of_its_own(tmp_path):
    repo, _ = program_repo(tmp_path)
    guided(repo, sloppy=0)
    lib = library(repo)
    assert lib.directions == ["improve:error", "improve:cost", "restructure", "simplify",
                              "speed_up", "unusual_idea"]
    prompt = mutation(lib, path="solver.py", seed_source=SOLVER, block_name="guess",
                      block_text=SOLVER.split("\n\n\n")[1], direction="improve:cost",
                      persona="mathematician")
    assert prompt.template == "mutation/improve:cost"
    assert "give a better cost: cost is to be minimised (lower is better)" in prompt.variable
    cli("-C", str(repo), "generation", "--n", "4", "-q")
    status = cli("-C", str(repo), "status")  # the allocation's table lists every arm
    assert "improve:error" in status and "improve:cost" in status


def test_the_model_set_names_the_objectives_too(tmp_path):
    cli("init", str(tmp_path / "enet"), "--template", "exquisitenetv2", "--no-eval")
    lib = library(tmp_path / "enet")
    assert "raise_accuracy" in lib.directions and "expert" in lib.personas
    text = lib.objectives_section
    assert "- accuracy: to be maximised (higher is better)" in text
    assert "- params: to be minimised (lower is better)" in text


def own_set(repo: Path) -> Path:
    """A user's prompt set: a copy of the shipped common and program templates."""
    folder = repo / "myprompts"
    shutil.copytree(resources.prompts_dir() / "common", folder)
    shutil.copytree(resources.prompts_dir() / "program", folder, dirs_exist_ok=True)
    return folder


def test_a_users_own_set_is_checked_at_init_and_at_the_start_of_a_run(tmp_path):
    repo = tmp_path / "golden"
    repo.mkdir()
    (repo / "solver.py").write_text(SOLVER)
    (repo / "score.py").write_text(SCORER)
    folder = own_set(repo)
    (folder / "rules.txt").unlink()
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "a program, and prompts of our own")
    args = ("init", "--files", "solver.py", "--fitness", "python score.py {metrics}",
            "--objective", "error:min", "--no-eval", "--llm", "prompts=myprompts")
    refused = run_gitevo(repo, *args)
    assert refused.returncode == 2 and not (repo / "gitevo.toml").exists()
    assert refused.stderr.strip() == (f"gitevo: error: {folder / 'rules.txt'}: required "
                                      "prompt template is missing")
    shutil.copy(resources.prompts_dir() / "program" / "rules.txt", folder / "rules.txt")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "the rules, restored")
    assert "prompts: 'myprompts' (as gitevo.toml sets)" in cli("-C", str(repo), *args)
    guided(repo, sloppy=0)
    bad = folder / "mutation" / "simplify.txt"
    bad.write_text("Simplify `{block_name}` within {budget} seconds.")
    git(repo, "commit", "-qam", "a direction with a placeholder gitevo does not know")
    refused = run_gitevo(repo, "generation", "--n", "2")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert f"{bad}: unknown placeholder {{budget}}" in refused.stderr
    bad.write_text("Simplify `{block_name}`; say which {objective} it helps.")
    lib = library(repo)  # a user's direction may be drawn per objective as well
    assert "simplify:error" in lib.directions and "simplify" not in lib.directions
