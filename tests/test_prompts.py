"""Prompt templates: the shipped library, per-repository overrides, and the four builders."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from gitevo.core import resources
from gitevo.variation import genome
from gitevo.variation.prompts import (
    NO_PERSONA,
    Lesson,
    Prompt,
    PromptLibrary,
    crossover,
    eot,
    format_fitness,
    mutation,
    objective_changes,
    repair,
)

SEED = (resources.templates()["exquisitenetv2"] / "model.py").read_text()
DIRECTIONS = ["hyperparameters", "raise_accuracy", "rare_enhancement", "reduce_params",
              "restructure", "unusual_hyperparameters"]
PERSONAS = ["expert", "innovator", "researcher"]


@pytest.fixture(scope="module")
def lib() -> PromptLibrary:
    return PromptLibrary.load(None)


def block(name: str, source: str = SEED) -> str:
    return genome.get_block(source, name).text


def mutate(lib: PromptLibrary, name: str = "SE", direction: str = "reduce_params",
           persona: str | None = None, source: str = SEED) -> Prompt:
    return mutation(lib, path="model.py", seed_source=SEED, block_name=name,
                    block_text=block(name, source), direction=direction, persona=persona)


def override(repo: Path, name: str, text: str) -> Path:
    path = repo / ".gitevo" / "prompts" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ library


def test_shipped_library_has_six_directions_and_three_personas(lib):
    assert lib.directions == DIRECTIONS
    assert lib.personas == PERSONAS
    for name in ("system", "rules", "stable"):
        assert lib.origins[name] == resources.prompts_dir() / "model" / f"{name}.txt"
    for name in ("mutation", "eot", "crossover", "repair"):
        assert lib.origins[name] == resources.prompts_dir() / "common" / f"{name}.txt"


def test_twenty_four_distinct_mutation_prompts(lib):
    prompts = [mutate(lib, direction=d, persona=p)
               for d, p in itertools.product(DIRECTIONS, [None, *PERSONAS])]
    assert len({p.variable for p in prompts}) == 24
    assert {p.template for p in prompts} == {f"mutation/{d}" for d in DIRECTIONS}
    assert {p.persona for p in prompts} == {NO_PERSONA, *PERSONAS}


def test_stable_part_is_identical_across_calls_and_comes_first(lib):
    a = mutate(lib, "SE", "reduce_params", "expert")
    b = mutate(lib, "DW", "restructure", None)
    c = eot(lib, path="model.py", seed_source=SEED, block_name="ME", block_text=block("ME"),
            lesson=_lesson(), persona="innovator")
    d = crossover(lib, path="model.py", seed_source=SEED, block_name="SE", text_a=block("SE"),
                  text_b=block("SE"), fitness_a={}, fitness_b={}, ids=("g001-000", "g001-001"))
    assert a.stable == b.stable == c.stable == d.stable
    assert a.system == d.system
    # the stable part carries the rules and the whole seed file, and nothing call-specific
    assert "Rules that apply to every answer" in a.stable
    assert SEED.rstrip("\n") in a.stable
    assert "reduce" not in a.stable.lower().split("<seed-file")[0]
    assert a.user == f"{a.stable}\n\n{a.variable}"
    assert a.text.startswith(a.system) and a.text.endswith(a.variable)


def test_mutation_prompt_shows_the_current_block_and_the_goal(lib):
    current = genome.replace_block(SEED, "SE", block("SE").replace("ratio: int = 3",
                                                                   "ratio: int = 5"))
    prompt = mutate(lib, "SE", "reduce_params", "researcher", source=current)
    assert "ratio: int = 5" in prompt.variable  # the parent's block, not the seed's
    assert "```python\nclass SE(nn.Module):" in prompt.variable
    assert "Reduce the number of trainable parameters in `SE`" in prompt.variable
    assert prompt.variable.startswith(lib.texts["personas/researcher"])
    assert prompt.template == "mutation/reduce_params" and prompt.persona == "researcher"
    assert "{" not in prompt.variable.replace("{}", "")  # every placeholder was filled


def test_rules_ask_for_a_diff_and_say_line_numbers_do_not_matter(lib):
    rules = lib.render("rules", path="model.py")
    assert "--- a/model.py\n   +++ b/model.py" in rules
    assert "line numbers and counts in the @@ headers do not need to be right" in rules
    assert "```python fence" in rules  # the full-block fallback
    for must in ("signature", "shapes", "default arguments", "Edit only the named block",
                 "No demo, test or setup code", "no prints"):
        assert must in rules


def test_restructure_direction_keeps_helpers_inside_the_block(lib):
    prompt = mutate(lib, "DFSEBV2", "restructure")
    assert "must live inside the block" in prompt.variable


def test_prompt_shows_crlf_blocks_with_plain_newlines(lib):
    crlf = SEED.replace("\n", "\r\n")
    prompt = mutation(lib, path="model.py", seed_source=crlf, block_name="SE",
                      block_text=block("SE", crlf), direction="hyperparameters", persona=None)
    assert "\r" not in prompt.text


# ---------------------------------------------------------------------------- overrides


def test_repository_overrides_replace_and_add_templates(tmp_path):
    override(tmp_path, "mutation/reduce_params", "Make `{block_name}` tiny.")
    override(tmp_path, "mutation/prune", "Prune {block_name} in {path}.")
    override(tmp_path, "personas/pirate", "Answer as a pirate would.")
    lib = PromptLibrary.load(tmp_path)
    assert lib.directions == sorted([*DIRECTIONS, "prune"])
    assert lib.personas == sorted([*PERSONAS, "pirate"])
    prompt = mutate(lib, "SE", "reduce_params", "pirate")
    assert "Goal: Make `SE` tiny." in prompt.variable
    assert prompt.variable.startswith("Answer as a pirate would.")
    assert "Prune DW in model.py." in mutate(lib, "DW", "prune").variable
    assert lib.origins["mutation/prune"] == tmp_path / ".gitevo/prompts/mutation/prune.txt"


def test_override_with_literal_braces(tmp_path):
    override(tmp_path, "repair", "Failed: {error}. Return JSON like {{\"diff\": ...}}.")
    assert repair("boom", PromptLibrary.load(tmp_path)) == 'Failed: boom. Return JSON like ' \
        '{"diff": ...}.'


@pytest.mark.parametrize(("name", "text", "message"), [
    ("mutation/reduce_params", "Shrink {block} now.", "unknown placeholder {block}"),
    ("eot", "Explain {elite_id} {fitness_a}.", "unknown placeholder {fitness_a}"),
    ("crossover", "Merge {text_a} and {text_b", "write {{ and }} for literal braces"),
    ("rules", "Keep {path.upper}.", "must be a plain name"),
    ("mutaton", "typo in the file name", "not a gitevo prompt template"),
    ("personas/deep/odd", "nested too deep", "not a gitevo prompt template"),
])
def test_bad_override_is_a_value_error_naming_the_file(tmp_path, name, text, message):
    path = override(tmp_path, name, text)
    with pytest.raises(ValueError, match="prompt|placeholder|brace") as info:
        PromptLibrary.load(tmp_path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_unknown_direction_persona_and_template(lib):
    with pytest.raises(ValueError, match=r"mutation/shrink\.txt: unknown mutation direction"):
        mutate(lib, direction="shrink")
    with pytest.raises(ValueError, match=r"personas/pirate\.txt: unknown persona 'pirate'"):
        mutate(lib, persona="pirate")
    with pytest.raises(ValueError, match=r"nothing\.txt: no such prompt template"):
        lib.render("nothing")


def test_missing_placeholder_value_names_the_file(lib):
    with pytest.raises(ValueError, match=r"repair\.txt: unknown placeholder \{error\}"):
        lib.render("repair", mistake="x")


# ---------------------------------------------------------------------- EoT, crossover


def _lesson() -> Lesson:
    seed = block("DFSEBV2")
    elite = seed.replace("F.hardswish(self.bn2", "F.silu(self.bn2")
    return Lesson(block="model.py::DFSEBV2", seed_text=seed, elite_text=elite,
                  seed_objectives={"accuracy": 0.9252, "params": 518230},
                  elite_objectives={"accuracy": 0.9334, "params": 301000},
                  senses={"accuracy": "max", "params": "min"},
                  rationales=["Smooth activation in the second stage.\n\nSiLU for hard-swish.",
                              "", "Narrower last stage."], elite_id="g004-002")


def test_eot_prompt_shows_the_lesson_and_asks_for_reasoning_then_a_diff(lib):
    prompt = eot(lib, path="model.py", seed_source=SEED, block_name="ME",
                 block_text=block("ME"), lesson=_lesson(), persona=None)
    text = prompt.variable
    assert prompt.template == "eot" and prompt.persona == NO_PERSONA
    assert "F.hardswish(self.bn2" in text and "F.silu(self.bn2" in text
    assert text.index("Seed version") < text.index("Version of `DFSEBV2` in g004-002")
    assert "- accuracy: 0.9252 -> 0.9334 (+0.0082, +0.9%, better, maximised)" in text
    assert "- params: 518,230 -> 301,000 (-217,230, -41.9%, better, minimised)" in text
    assert "1. Smooth activation in the second stage.\n\n   SiLU for hard-swish.\n" \
           "2. Narrower last stage." in text
    assert "step by step" in text
    assert text.index("step by step") < text.index("```python\nclass ME(nn.Module):")
    assert "unified diff against model.py" in text


def test_objective_changes_cover_worse_missing_and_unchanged():
    lesson = Lesson("SE", "", "", {"accuracy": 0.9, "params": 100.0, "loss": 1.0},
                    {"accuracy": 0.85, "params": 100.0}, {"accuracy": "max", "params": "min"},
                    [], "g001-001")
    lines = objective_changes(lesson).splitlines()
    assert lines[0] == "- accuracy: 0.9 -> 0.85 (-0.05, -5.6%, worse, maximised)"
    assert lines[1] == "- params: 100 -> 100 (unchanged, minimised)"
    assert lines[2] == "- loss: 1 -> ?"


def test_crossover_prompt_shows_both_parents_with_fitness(lib):
    b_text = block("SE").replace("F.relu", "F.silu")
    prompt = crossover(lib, path="model.py", seed_source=SEED, block_name="SE",
                       text_a=block("SE"), text_b=b_text,
                       fitness_a={"accuracy": 0.9252, "params": 518230},
                       fitness_b={"accuracy": 0.931, "params": 518230},
                       ids=("g002-001", "g002-005"))
    text = prompt.variable
    assert prompt.template == "crossover" and prompt.persona == NO_PERSONA
    assert "Parent A is g002-001. Its fitness: accuracy 0.9252, params 518,230" in text
    assert "Parent B is g002-005. Its fitness: accuracy 0.931, params 518,230" in text
    assert text.index("F.relu") < text.index("F.silu")
    assert "write your diff against parent A's text" in text


def test_format_fitness():
    assert format_fitness({}) == "not measured"
    assert format_fitness({"accuracy": 93.34, "params": 518230.0, "status": "ok"}) == \
        "accuracy 93.34, params 518,230, status ok"


def test_repair_quotes_the_exact_error(lib):
    error = "model.py: hunk 1 matches nowhere; its old line 3 is not in the file: " \
            "'        hidden = cin // ratio'"
    message = repair(error)
    assert error in message
    assert "still exactly as shown in my first message" in message
    assert repair("   ", lib).count("(no error message)") == 1
