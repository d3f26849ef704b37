"""The evidence sections of one call's prompt, each held to its token budget.

task (in the cached part), then, in this call's part: the scores of the seed and the
parents, the run's notebook, the block's earlier attempts and the best individuals'
versions of the block. Each section is a template under prompts/sections/ filled here;
one that would pass its budget ([prompt.tokens], estimated at 4 characters a token)
loses its oldest attempts (its lowest-ranked versions) first, or is cut at the end,
and says so. Nothing here reads git: the same Evidence gives the same text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gitevo.config import Config
from gitevo.store.hints import Hint
from gitevo.variation.evidence import Attempt, Evidence, Scores
from gitevo.variation.prompts import PromptLibrary, format_fitness, movement, number

CHARS_PER_TOKEN = 4
SECTION = "sections/"
ORDER = ("hints", "scores", "notebook", "history", "inspiration")  # in this call's part


def tokens(text: str) -> int:
    """The estimate every budget is held to: 4 characters a token, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Version:
    """One of the best individuals' version of the block, for the inspiration section."""

    scores: Scores
    text: str


@dataclass(frozen=True)
class Sections:
    """One call's rendered sections ("" for one that has nothing to say)."""

    task: str = ""
    hints: str = ""
    scores: str = ""
    notebook: str = ""
    history: str = ""
    inspiration: str = ""

    @property
    def evidence(self) -> str:
        """This call's sections, in order, as one piece of the variable part."""
        return "\n\n".join(t for t in (getattr(self, n) for n in ORDER) if t)

    def as_dict(self) -> dict[str, str]:
        return {"task": self.task, **{n: getattr(self, n) for n in ORDER}}


def task_section(lib: PromptLibrary, config: Config, task: str) -> str:
    """The task text in its section, cut at the end to its budget."""
    if not task.strip():
        return ""
    return _cut_to(lib, "task", config.prompt.tokens["task"], "task", task)


def hints_section(lib: PromptLibrary, config: Config, hints: list[Hint]) -> str:
    """The person's hints for this call, newest last, within their budget."""
    if not hints:
        return ""
    items = [f"- hint {h.number} (from {h.author or 'the person running this'}, for "
             f"{h.scope}): {h.text}" for h in hints]
    return _listed(lib, "hints", "hints", items, "\n", "more hint",
                   config.prompt.tokens["hints"])


def build(lib: PromptLibrary, config: Config, evidence: Evidence, *, task: str, block: str,
          parents: list[str], versions: list[Version], hints: list[Hint] = ()) -> Sections:
    """The sections of one call on `block` ("path::Name") of `parents` (the individual
    edited first, a crossover's other parent second)."""
    name = block.rpartition("::")[2]
    budgets = config.prompt.tokens
    notebook = ""
    if evidence.notebook and config.prompt.notebook:  # switched off: no longer shown
        notebook = _cut_to(lib, "notebook", budgets["notebook"], "notebook", evidence.notebook,
                           generation=evidence.notebook_generation)
    return Sections(task=task_section(lib, config, task),
                    hints=hints_section(lib, config, list(hints)),
                    scores=_scores(lib, config, evidence, parents),
                    notebook=notebook,
                    history=_history(lib, config, evidence.attempts.get(block, []), name),
                    inspiration=_inspiration(lib, config, versions, name))


# ---- scores ---------------------------------------------------------------------------------


def _scores(lib: PromptLibrary, config: Config, evidence: Evidence, parents: list[str]) -> str:
    senses = {o.name: o.sense for o in config.objectives}
    words = {"max": "higher is better", "min": "lower is better"}
    objectives = "; ".join(f"{n}: {words[s]}" for n, s in senses.items())
    roles = ["the individual you are changing", "the other parent"] if len(parents) > 1 \
        else ["the individual you are changing"]
    lines = [_score_line("the seed", evidence.seed, None, senses, config)]
    for role, ident in zip(roles, parents, strict=False):
        scores = evidence.members.get(ident)
        if scores is not None:
            lines.append(_score_line(role, scores, evidence.seed, senses, config))
    text = lib.render(f"{SECTION}scores", objectives=objectives, lines="\n".join(lines))
    return _fit_lines(text, config.prompt.tokens["scores"])


def _score_line(role: str, scores: Scores, seed: Scores | None, senses: dict[str, str],
                config: Config) -> str:
    parts = []
    for name, value in scores.objectives.items():
        moved = movement(seed.objectives.get(name), value, senses.get(name)) if seed else ""
        parts.append(f"{name} {number(value)}" + (f" ({moved} vs the seed)" if moved else ""))
    line = f"- {role}, {scores.id}: {', '.join(parts) or 'not measured'}"
    if config.evolution.constraints:
        limits = ", ".join(str(c) for c in config.evolution.constraints)
        line += ("; meets every constraint" if scores.violation == 0 else
                 f"; breaks the constraints ({limits}) by {number(scores.violation)}")
    shown = scores.fidelity not in ("", "default")  # a run without fidelities has one
    return line + (f"; fidelity {scores.fidelity}" if shown else "")


# ---- history --------------------------------------------------------------------------------


def _history(lib: PromptLibrary, config: Config, attempts: list[Attempt], name: str) -> str:
    shown = attempts[:config.prompt.history]
    if not shown:
        return ""
    senses = {o.name: o.sense for o in config.objectives}
    return _listed(lib, "history", "attempts", [attempt_line(a, senses) for a in shown],
                   "\n", "older attempt", config.prompt.tokens["history"], block_name=name)


def attempt_line(a: Attempt, senses: dict[str, str], with_block: bool = False) -> str:
    """Two lines: what an attempt tried (on which block, when asked) and what came of it."""
    block = f"{a.block.rpartition('::')[2]}, " if with_block else ""
    head = (f"- {a.id} ({block}generation {a.generation}, {a.prompt or a.operator}, "
            f"on {a.parent}): {a.summary}")
    return f"{head}\n  -> {outcome(a, senses)}"


def outcome(a: Attempt, senses: dict[str, str]) -> str:
    """What came of an attempt, against its parent where both were measured alike."""
    if a.status == "rejected":
        return f"rejected before any evaluation: {a.reason}"
    where = f" at screening rung {a.rung}" if a.rung else ""
    parts = []
    for name, value in a.objectives.items():
        moved = movement(a.baseline.get(name), value, senses.get(name))
        parts.append(f"{name} {number(value)}" + (f" ({moved})" if moved else ""))
    measured = (f"{', '.join(parts)} against its parent{where}" if a.baseline
                else ", ".join(parts) + where)
    if a.status == "ok":
        return measured + ("; it entered the population" if a.entered
                           else "; it did not enter the population")
    reason = f": {a.reason}" if a.reason else ""
    return f"{a.status}{reason}" + (f" ({measured})" if parts else "")


# ---- inspiration ----------------------------------------------------------------------------


def _inspiration(lib: PromptLibrary, config: Config, versions: list[Version],
                 name: str) -> str:
    if not versions:
        return ""
    blocks = [f"{v.scores.id} ({format_fitness(v.scores.objectives)}):\n\n```python\n"
              f"{v.text.rstrip()}\n```" for v in versions]
    return _listed(lib, "inspiration", "versions", blocks, "\n\n", "more version",
                   config.prompt.tokens["inspiration"], block_name=name)


# ---- budgets --------------------------------------------------------------------------------


def _listed(lib: PromptLibrary, section: str, listed: str, items: list[str], sep: str,
            noun: str, budget: int, **fields: object) -> str:
    """The section with `items` in its placeholder `listed`, the last ones left out, and
    counted in {omitted}, until it fits its budget; "" when not even one fits."""
    for keep in range(len(items), 0, -1):
        omitted = len(items) - keep
        note = (f"{sep}({omitted} {noun}{'s' if omitted != 1 else ''} left out to keep this "
                "section within its budget.)") if omitted else ""
        text = lib.render(f"{SECTION}{section}", **fields, **{listed: sep.join(items[:keep])},
                          omitted=note)
        if tokens(text) <= budget:
            return text
    return ""


def _cut_to(lib: PromptLibrary, section: str, budget: int, field: str, value: str,
            **more: object) -> str:
    """The section with `value` cut at a line end (then a word) so that it fits."""
    text = lib.render(f"{SECTION}{section}", **{field: value}, **more)
    if tokens(text) <= budget:
        return text
    note = f"\n[cut here to keep this section within its budget of {budget} tokens]"
    room = len(value) - (len(text) - budget * CHARS_PER_TOKEN) - len(note)
    if room <= 0:
        return ""
    head = value[:room]
    cut = head.rfind("\n") if head.rfind("\n") > room // 2 else head.rfind(" ")
    return lib.render(f"{SECTION}{section}", **{field: head[:max(cut, 1)].rstrip() + note},
                      **more)


def _fit_lines(text: str, budget: int) -> str:
    """A section of a few short lines: whole, or its last lines left out until it fits
    (and a line saying so)."""
    if tokens(text) <= budget:
        return text
    lines, note = text.splitlines(), "(more scores left out to keep within the budget)"
    while lines and tokens("\n".join([*lines, note])) > budget:
        lines.pop()
    return "\n".join([*lines, note]) if lines else ""
