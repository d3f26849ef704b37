"""Prompts for the LLM-guided operators, built from the plain-text templates in prompts/.

A prompt set is what fits the task: prompts/common/ holds the templates every task
shares, prompts/model/ and prompts/program/ the role, rules, directions and personas of
one kind of task (`[llm] prompts` chooses; a path names a user's own set, a complete
folder with the same layout). The run's objectives and constraints go into every call
(`sections/objectives`), and a direction whose template names `{objective}` is drawn
once per objective ("improve:sum_radii"), so the allocation learns which pays off.

Every prompt has three parts. The system prompt and the `stable` part (the rules and
the seed version of the gene file) are the same for every call of a run, so they come
first and a provider can cache them; the `variable` part (persona, goal, the current
text of the block, EoT or crossover material) is this call's own. A persona therefore
goes into the variable part: in the system prompt it would break the cached prefix.

Templates use `{placeholder}` fields (str.format_map). Each template may use only the
fields listed for it in FIELDS; a file that names another field, a required template
that is missing, or an unknown file among the overrides is a ValueError that names
the file. A repository overrides any template, or adds directions and personas, with
a file at the same relative path under `.gitevo/prompts/`.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitevo.config import Config
from gitevo.core import resources

OVERRIDE_DIR = Path(".gitevo") / "prompts"
NO_PERSONA = "none"
DIRECTIONS, PERSONAS = "mutation", "personas"

_BLOCK = {"path", "block_name", "block_text", "evidence"}
SECTIONS = "sections"
# The fields each template may use; a name ending in "/" covers the files of that folder.
FIELDS: dict[str, frozenset[str]] = {
    "system": frozenset(),
    "rules": frozenset({"path"}),
    "stable": frozenset({"path", "seed_source", "rules", "task", "objectives"}),
    "mutation": frozenset(_BLOCK | {"direction"}),
    "eot": frozenset(_BLOCK | {"lesson_block", "elite_id", "seed_block_text",
                               "elite_block_text", "objective_changes", "rationales"}),
    "crossover": frozenset({"path", "block_name", "id_a", "id_b", "text_a", "text_b",
                            "fitness_a", "fitness_b", "evidence"}),
    "repair": frozenset({"error", "objectives"}),
    f"{SECTIONS}/objectives": frozenset({"objectives", "constraints"}),
    f"{SECTIONS}/task": frozenset({"task"}),
    f"{SECTIONS}/scores": frozenset({"objectives", "lines"}),
    f"{SECTIONS}/history": frozenset({"block_name", "attempts", "omitted"}),
    f"{SECTIONS}/inspiration": frozenset({"block_name", "versions", "omitted"}),
    f"{SECTIONS}/notebook": frozenset({"generation", "notebook"}),
    f"{SECTIONS}/hints": frozenset({"hints", "omitted"}),
    "notebook_system": frozenset(),
    "notebook": frozenset({"task", "generation", "notebook", "outcomes", "tokens"}),
    f"{DIRECTIONS}/": frozenset({"path", "block_name", "objective", "better"}),
    f"{PERSONAS}/": frozenset(),
}
REQUIRED = ("system", "rules", "stable", "mutation", "eot", "crossover", "repair",
            f"{SECTIONS}/task", f"{SECTIONS}/objectives", f"{SECTIONS}/scores",
            f"{SECTIONS}/history", f"{SECTIONS}/inspiration", f"{SECTIONS}/notebook",
            "notebook_system", "notebook")


SETS = ("model", "program")  # shipped; anything else names a folder
SENSE_WORDS = {"max": "to be maximised (higher is better)",
               "min": "to be minimised (lower is better)"}


@dataclass
class Prompt:
    """One call's prompt; `template` and `persona` are recorded in the commit trailers."""

    system: str
    stable: str  # identical across a run's calls: send it first, mark it cacheable
    variable: str  # this call's part
    template: str  # e.g. "mutation/reduce_params", "eot", "crossover"
    persona: str  # a persona name, or "none"

    @property
    def user(self) -> str:
        """The first user message: the stable part, then this call's part."""
        return f"{self.stable}\n\n{self.variable}"

    @property
    def text(self) -> str:
        """The whole prompt as plain text, system prompt first."""
        return f"{self.system}\n\n{self.user}"


@dataclass
class Lesson:
    """What Evolution of Thought shows: how one block of an elite moved away from the seed."""

    block: str  # the elite's changed block: "Name" or "path::Name"
    seed_text: str
    elite_text: str
    seed_objectives: dict[str, float]
    elite_objectives: dict[str, float]
    senses: dict[str, str]  # objective -> "max" | "min"
    rationales: list[str]  # commit-message bodies along `git log seed..elite`, oldest first
    elite_id: str


class _Fields(dict):
    """format_map values that turn an unknown placeholder into a clear error."""

    def __init__(self, origin: str, values: Mapping[str, str]):
        super().__init__(values)
        self.origin = origin

    def __missing__(self, key: str) -> str:
        known = ", ".join(f"{{{k}}}" for k in sorted(self)) or "none"
        raise ValueError(f"{self.origin}: unknown placeholder {{{key}}} (known here: {known})")


def _allowed(name: str) -> frozenset[str] | None:
    """The fields template `name` may use, or None when gitevo has no such template."""
    if name in FIELDS:
        return FIELDS[name]
    folder, _, leaf = name.rpartition("/")
    if folder == SECTIONS:
        return None  # the sections are a fixed set: no new ones
    return FIELDS.get(f"{folder}/") if leaf and "/" not in folder else None


def placeholders(text: str, origin: str) -> set[str]:
    """The field names a template uses; malformed braces are a ValueError naming the file."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{origin}: {exc} (write {{{{ and }}}} for literal braces)") from exc
    names = set()
    for _literal, field, _spec, _conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(f"{origin}: placeholder {{{field}}} must be a plain name")
        names.add(field)
    return names


def _read_tree(root: Path) -> dict[str, Path]:
    """Template name (relative path without .txt) -> file, for every .txt under root."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).with_suffix("").as_posix(): p
            for p in sorted(root.rglob("*.txt")) if p.is_file()}


@dataclass(frozen=True)
class PromptLibrary:
    """The prompt templates in force for one repository: a set (gitevo's, or the user's
    own folder), with the repository's overrides, for one run's objectives."""

    texts: dict[str, str]  # template name -> text
    origins: dict[str, Path]  # template name -> the file it was read from
    root: Path = Path()  # the set's own folder, where a missing template belongs
    objectives: tuple[tuple[str, str], ...] = ()  # (name, "max" | "min"), in config order
    constraints: tuple[str, ...] = ()  # "l1 <= 10"

    @classmethod
    def load(cls, repo_root: Path | None = None, prompt_set: str = "model", *,
             objectives: tuple[tuple[str, str], ...] = (),
             constraints: tuple[str, ...] = ()) -> PromptLibrary:
        """The set `prompt_set` ("model", "program", or a folder, relative to
        `repo_root`), then the repository's overrides; a missing template, an unknown
        file or placeholder is a ValueError naming the file."""
        folders = set_folders(prompt_set, repo_root)
        files: dict[str, Path] = {}
        for folder in folders:
            files.update(_read_tree(folder))
        if repo_root is not None:
            overrides = _read_tree(Path(repo_root) / OVERRIDE_DIR)
            for name, path in overrides.items():
                if _allowed(name) is None:
                    raise ValueError(f"{path}: not a gitevo prompt template (known: "
                                     f"{', '.join(REQUIRED)}, {DIRECTIONS}/*, {PERSONAS}/*)")
            files.update(overrides)
        texts = {}
        for name, path in files.items():
            if _allowed(name) is None:
                continue  # a stray file in a set's folder is not a template
            text = path.read_text(encoding="utf-8").strip()
            unknown = placeholders(text, str(path)) - _allowed(name)
            if unknown:
                raise ValueError(f"{path}: unknown placeholder "
                                 f"{', '.join(f'{{{u}}}' for u in sorted(unknown))} (allowed: "
                                 f"{', '.join(f'{{{a}}}' for a in sorted(_allowed(name)))})")
            texts[name] = text
        library = cls(texts, {n: files[n] for n in texts}, folders[-1], tuple(objectives),
                      tuple(constraints))
        library._check_complete()
        return library

    @classmethod
    def for_config(cls, repo_root: Path | None, config: Config) -> PromptLibrary:
        """The library a run of `config` uses: its set, objectives and constraints."""
        return cls.load(repo_root, config.llm.prompts,
                        objectives=tuple((o.name, o.sense) for o in config.objectives),
                        constraints=tuple(str(c) for c in config.evolution.constraints))

    def _check_complete(self) -> None:
        for name in REQUIRED:
            if name not in self.texts:
                raise ValueError(f"{self.root / (name + '.txt')}: required prompt template is "
                                 "missing")
        if not self._folder(DIRECTIONS):
            raise ValueError(f"{self.root / DIRECTIONS}: no mutation direction templates (*.txt)")

    @functools.cached_property  # asked for by every mutation prompt; the texts are fixed
    def directions(self) -> list[str]:
        """Mutation direction names, e.g. "reduce_params" (template "mutation/reduce_params"),
        and "improve:accuracy" for each objective of a template that names `{objective}`."""
        out = []
        for name in self._folder(DIRECTIONS):
            if "objective" in self._fields(f"{DIRECTIONS}/{name}"):
                out += [f"{name}:{objective}" for objective, _ in self.objectives]
            else:
                out.append(name)
        return out

    def _fields(self, name: str) -> set[str]:
        return placeholders(self.texts[name], self.origin(name))

    @functools.cached_property  # the same in every prompt and repair of a run
    def objectives_section(self) -> str:
        """The objectives section: each objective with its direction, the constraints."""
        lines = [f"- {name}: {SENSE_WORDS.get(sense, sense)}" for name, sense in self.objectives]
        return self.render(f"{SECTIONS}/objectives",
                           objectives="\n".join(lines) or "- (none configured)",
                           constraints="\n".join(f"- {c}" for c in self.constraints)
                           or "- (none)")

    @property
    def personas(self) -> list[str]:
        """Persona names; "none" (no persona) is always possible as well."""
        return self._folder(PERSONAS)

    def _folder(self, folder: str) -> list[str]:
        prefix = f"{folder}/"
        return sorted(n[len(prefix):] for n in self.texts if n.startswith(prefix))

    def origin(self, name: str) -> str:
        return str(self.origins.get(name, self.root / f"{name}.txt"))

    def render(self, name: str, **values: Any) -> str:
        """Template `name` filled in; a missing template or placeholder is a ValueError."""
        if name not in self.texts:
            raise ValueError(f"{self.origin(name)}: no such prompt template {name!r}")
        fields = _Fields(self.origin(name), {k: str(v) or _EMPTY for k, v in values.items()})
        return _without_empty(self.texts[name].format_map(fields))

    def persona_text(self, persona: str | None) -> tuple[str, str]:
        """(name, text) of a persona; no persona gives ("none", "")."""
        if persona in (None, "", NO_PERSONA):
            return NO_PERSONA, ""
        name = f"{PERSONAS}/{persona}"
        if name not in self.texts:
            raise ValueError(f"{self.origin(name)}: unknown persona {persona!r} "
                             f"(known: {', '.join(self.personas) or 'none'})")
        return persona, self.render(name)


def set_folders(prompt_set: str, repo_root: Path | None) -> list[Path]:
    """The folders a prompt set is read from, later ones on top: gitevo's common
    templates and its set for "model" and "program"; a user's folder alone otherwise."""
    if prompt_set in SETS:
        return [resources.prompts_dir() / "common", resources.prompts_dir() / prompt_set]
    folder = Path(prompt_set).expanduser()
    if not folder.is_absolute() and repo_root is not None:
        folder = Path(repo_root) / folder
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such prompt set folder (llm.prompts is "
                         f"{prompt_set!r}; use {' or '.join(SETS)}, or a folder laid out as "
                         f"{resources.prompts_dir()}/common with a set's files beside)")
    return [folder]


# ------------------------------------------------------------------------ formatting

_EMPTY = "\x00"  # stands for an empty field until the paragraph around it is removed


def _without_empty(text: str) -> str:
    """An empty field that stood alone in its paragraph leaves no blank paragraph."""
    text = re.sub(f"\n\n{_EMPTY}(?=\n\n)", "", text)
    text = re.sub(f"^{_EMPTY}\n\n|\n\n{_EMPTY}$", "", text)
    return text.replace(_EMPTY, "")


def _display(code: str) -> str:
    """Source as shown in a prompt: "\\n" line ends, no trailing blank lines."""
    return code.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:,.4f}".rstrip("0").rstrip(".")


def format_fitness(fitness: Mapping[str, Any]) -> str:
    """"accuracy 0.9252, params 518,230"; "not measured" for an empty mapping."""
    return ", ".join(f"{k} {number(v)}" for k, v in fitness.items()) or "not measured"


def movement(old: Any, new: Any, sense: str | None) -> str:
    """"+0.012, +1.5%, better" for a move from `old` to `new` ("" unless both are numbers)."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
    if not numeric or not all(math.isfinite(v) for v in (old, new)):
        return ""
    delta = new - old
    if delta == 0:
        return "unchanged"
    parts = [("+" if delta >= 0 else "-") + number(abs(delta))]
    if old:
        parts.append(f"{100 * delta / abs(old):+.1f}%")
    if sense in ("max", "min"):
        parts.append("better" if (delta > 0) == (sense == "max") else "worse")
    return ", ".join(parts)


def _change(name: str, old: Any, new: Any, sense: str | None) -> str:
    line = f"- {name}: {number(old)} -> {number(new)}"
    moved = movement(old, new, sense)
    if moved and sense in ("max", "min"):
        moved += f", {sense}imised"
    return f"{line} ({moved})" if moved else line


def objective_changes(lesson: Lesson) -> str:
    """One line per objective: seed value -> elite value, with the change and its direction."""
    names = list(dict.fromkeys([*lesson.seed_objectives, *lesson.elite_objectives]))
    lines = [_change(n, lesson.seed_objectives.get(n, "?"), lesson.elite_objectives.get(n, "?"),
                     lesson.senses.get(n)) for n in names]
    return "\n".join(lines) or "- (no objective values were recorded)"


def _rationales(items: list[str]) -> str:
    """The elite's recorded reasons as a numbered list, continuation lines indented."""
    kept = [r.strip() for r in items if r and r.strip()]
    if not kept:
        return "(none were recorded)"
    out = []
    for i, text in enumerate(kept, 1):
        first, *rest = text.splitlines()
        out.append(f"{i}. {first}" + "".join("\n" + f"   {line}".rstrip() for line in rest))
    return "\n".join(out)


# -------------------------------------------------------------------------- builders


def _stable(lib: PromptLibrary, path: str, seed_source: str, task: str) -> str:
    return lib.render("stable", path=path, seed_source=_display(seed_source),
                      rules=lib.render("rules", path=path), task=task,
                      objectives=lib.objectives_section)


def _with_persona(persona_text: str, body: str) -> str:
    return f"{persona_text}\n\n{body}" if persona_text else body


def mutation(lib: PromptLibrary, *, path: str, seed_source: str, block_name: str,
             block_text: str, direction: str, persona: str | None, task: str = "",
             evidence: str = "") -> Prompt:
    """A mutation prompt: one direction (e.g. "reduce_params"), optionally in a persona.
    `task` (the rendered task section) goes into the stable part, `evidence` (scores,
    notebook, the block's history, inspiration) into this call's part."""
    template = f"{DIRECTIONS}/{direction}"
    goal = _direction(lib, direction, path=path, block_name=block_name)
    body = lib.render("mutation", path=path, block_name=block_name,
                      block_text=_display(block_text), direction=goal, evidence=evidence)
    name, persona_text = lib.persona_text(persona)
    return Prompt(lib.render("system"), _stable(lib, path, seed_source, task),
                  _with_persona(persona_text, body), template, name)


def _direction(lib: PromptLibrary, direction: str, **values: str) -> str:
    """The goal of `direction`; "improve:l1" fills template "improve" for objective l1."""
    if direction not in lib.directions:
        template = f"{DIRECTIONS}/{direction.partition(':')[0]}"
        raise ValueError(f"{lib.origin(template)}: unknown mutation direction {direction!r} "
                         f"(known: {', '.join(lib.directions)})")
    base, _, objective = direction.partition(":")
    if objective:
        values |= {"objective": objective,
                   "better": SENSE_WORDS.get(dict(lib.objectives)[objective], "")}
    return lib.render(f"{DIRECTIONS}/{base}", **values)


def eot(lib: PromptLibrary, *, path: str, seed_source: str, block_name: str, block_text: str,
        lesson: Lesson, persona: str | None, task: str = "", evidence: str = "") -> Prompt:
    """Evolution of Thought: explain why an elite's change helped, then reuse the idea."""
    body = lib.render("eot", path=path, block_name=block_name, block_text=_display(block_text),
                      lesson_block=lesson.block.rpartition("::")[2],  # "path::Name" ok
                      elite_id=lesson.elite_id,
                      seed_block_text=_display(lesson.seed_text),
                      elite_block_text=_display(lesson.elite_text),
                      objective_changes=objective_changes(lesson),
                      rationales=_rationales(lesson.rationales), evidence=evidence)
    name, persona_text = lib.persona_text(persona)
    return Prompt(lib.render("system"), _stable(lib, path, seed_source, task),
                  _with_persona(persona_text, body), "eot", name)


def crossover(lib: PromptLibrary, *, path: str, seed_source: str, block_name: str,
              text_a: str, text_b: str, fitness_a: Mapping[str, Any],
              fitness_b: Mapping[str, Any], ids: tuple[str, str], task: str = "",
              evidence: str = "") -> Prompt:
    """Merge two parents' versions of one block; the diff goes against parent A's file."""
    body = lib.render("crossover", path=path, block_name=block_name, id_a=ids[0], id_b=ids[1],
                      text_a=_display(text_a), text_b=_display(text_b),
                      fitness_a=format_fitness(fitness_a), fitness_b=format_fitness(fitness_b),
                      evidence=evidence)
    return Prompt(lib.render("system"), _stable(lib, path, seed_source, task), body,
                  "crossover", NO_PERSONA)


def repair(error: str, lib: PromptLibrary | None = None) -> str:
    """The follow-up user message after a failed apply or validation, quoting the error."""
    lib = lib or PromptLibrary.load(None)
    return lib.render("repair", error=error.strip() or "(no error message)",
                      objectives=lib.objectives_section)
