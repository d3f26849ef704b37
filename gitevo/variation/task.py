"""The task as the LLM is told it: the repository's task file, filled from the config.

A repository describes what its code is for in a file (`[prompt] task`, by default
`.gitevo/task.md`): the data, how a child is trained and measured, which way each
objective should move. Its placeholders come from gitevo.toml, so the text follows the
config: `{fidelity}` and every [fitness.vars] key, `{objectives}`, `{constraints}`,
`{genes}` and `{cascade}`, written here; and `{recipe}`, the output of the
`[prompt] recipe` command, which lets the harness describe its own training recipe
from the table it trains by, so that the two cannot disagree. The command runs once
per process on the run's seed, confined like every command, without the network.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from gitevo.config import Config
from gitevo.execution.exported import exported
from gitevo.execution.job import expand, make_job, run_sandboxed
from gitevo.store.gitstore import Store
from gitevo.variation.prompts import placeholders

RECIPE = "recipe"
RECIPE_TIMEOUT = 120.0  # seconds: describing a recipe is reading a table


class TaskError(ValueError):
    """A task file or recipe command that cannot be used; the message is one line."""


def task_path(root: Path, config: Config) -> Path:
    return Path(root) / config.prompt.task


def fields(config: Config) -> dict[str, str]:
    """Every placeholder but {recipe}, filled from the config."""
    senses = {"max": "higher is better (maximise)", "min": "lower is better (minimise)"}
    objectives = "\n".join(f"- {o.name}: {senses[o.sense]}" for o in config.objectives)
    constraints = "; ".join(str(c) for c in config.evolution.constraints) or "none"
    genes = ", ".join(config.genes.files) + (
        f" (blocks: {', '.join(b.split('::', 1)[1] for b in config.genes.blocks)})"
        if config.genes.blocks else " (every top-level class and function)")
    return {**config.fitness.vars, "fidelity": config.fitness.fidelity,
            "objectives": objectives, "constraints": constraints, "genes": genes,
            "cascade": cascade_text(config)}


def cascade_text(config: Config) -> str:
    """How a child's evaluation goes: in full, or screened first."""
    fitness = config.fitness
    if not fitness.rungs:
        return (f"Every child is trained and measured in full at fidelity "
                f"{fitness.fidelity!r}.")
    steps = []
    for number, rung in enumerate(fitness.rungs, start=1):
        cheaper = ", ".join(f"{k}={v}" for k, v in rung.vars.items())
        where = f"fidelity {rung.fidelity or fitness.fidelity!r}" + (f", {cheaper}"
                                                                     if cheaper else "")
        steps.append(f"screening rung {number} ({where}) passes on the best "
                     f"{rung.promote:.0%} of the children it scores")
    return ("Children are screened before full training: " + "; then ".join(steps)
            + f"; only those are trained in full at fidelity {fitness.fidelity!r}, and "
            "selection sees only full results. A child must do well after the short "
            "screening run to be trained in full.")


def check(root: Path, config: Config) -> None:
    """Raise TaskError if the task file uses a placeholder it may not (a missing file is
    no error: the prompts then have no task section)."""
    path = task_path(root, config)
    text = _read(path)
    if text is not None:
        _check_names(path, text, config)


def render(store: Store, config: Config, seed: str | None) -> str:
    """The task text for the prompts ("" without a task file); runs the recipe command
    on `seed` when the file asks for {recipe}."""
    path = task_path(store.root, config)
    text = _read(path)
    if text is None:
        return ""
    names = _check_names(path, text, config)
    values = fields(config)
    if RECIPE in names:
        values[RECIPE] = recipe(store, config, seed)
    try:
        return text.format_map(values).strip()
    except (KeyError, ValueError, IndexError) as exc:  # checked above; belt and braces
        raise TaskError(f"{path}: {exc}") from None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: cannot read the task file: {exc}") from None


def _check_names(path: Path, text: str, config: Config) -> set[str]:
    known = {*fields(config), RECIPE}
    try:
        names = placeholders(text, str(path))
    except ValueError as exc:
        raise TaskError(str(exc)) from None
    unknown = sorted(names - known)
    if unknown:
        raise TaskError(f"{path}: unknown placeholder {{{unknown[0]}}} (known: "
                        f"{', '.join(f'{{{k}}}' for k in sorted(known))})")
    if RECIPE in names and not config.prompt.recipe:
        raise TaskError(f"{path}: {{recipe}} needs a command in [prompt] recipe of "
                        f"{config.path}")
    return names


def recipe(store: Store, config: Config, seed: str | None) -> str:
    """What `[prompt] recipe` prints (its standard output), run on an export of the seed."""
    command = config.prompt.recipe
    if not command or seed is None:
        raise TaskError(f"{config.path}: [prompt] recipe: no command or no seed to run it on")
    with exported(store, seed, "recipe") as (tree, scratch):
        job = dataclasses.replace(make_job(config, "recipe", tree), cache_writable=False)
        out = scratch / "recipe.txt"
        filled = expand(command, job, out)  # config allows it {fidelity} and the vars
        outcome = run_sandboxed(f"( {filled} ) > {shlex.quote(str(out))}", job, scratch,
                                RECIPE_TIMEOUT)
        text = out.read_text(encoding="utf-8", errors="replace") if out.exists() else ""
    if outcome.timed_out or outcome.returncode != 0:
        why = "timed out" if outcome.timed_out else f"exited {outcome.returncode}"
        raise TaskError(f"[prompt] recipe {why}{outcome.reason()}: {outcome.last_line}")
    if not text.strip():
        raise TaskError(f"[prompt] recipe printed nothing: {command}")
    return text.strip()
