"""What a run has learned so far, read back from git for the next generation's prompts.

Everything comes from refs and notes, and only from generations before the one being
proposed: the ledger's offspring rows (refusals included, which have no commit), the
children's commit messages (summary and rationale) and fitness notes, their parents'
notes, and the notebook on the ledger. The same refs therefore give the same Evidence,
and the same prompts, however often and whenever it is gathered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from gitevo.config import Config
from gitevo.store import ledger
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import Store, notes_ref, rung_ref
from gitevo.store.ledger import Generation, Member
from gitevo.variation import operators

SUMMARY_CHARS = 220  # a one-line summary of an attempt, at most
REASON_CHARS = 240  # a failure's one-line reason, at most


@dataclass(frozen=True)
class Scores:
    """One individual's measured result, as a prompt states it."""

    id: str
    objectives: dict[str, float]
    violation: float = 0.0
    fidelity: str = ""


@dataclass(frozen=True)
class Attempt:
    """One earlier child on a block: what was tried and what came of it."""

    id: str
    generation: int
    block: str  # "path::Name"
    operator: str
    prompt: str  # template, or template+persona
    parent: str  # the individual it changed (a crossover's first parent)
    summary: str  # one line: the commit's summary and the rationale's first sentence
    status: str  # a fitness status, or "rejected" (its answer never made a commit)
    reason: str = ""  # one line, for anything but ok
    objectives: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)  # the parent's, same rung
    rung: int | None = None  # the screening rung its objectives are from, if one
    entered: bool = False  # it was in the population after its generation


@dataclass(frozen=True)
class Evidence:
    """The run so far, as the prompts of generation `generation` may show it."""

    generation: int
    seed: Scores
    members: dict[str, Scores]  # the current population, by id
    ranking: list[str]  # the population's ids, best first by the run's selection
    attempts: dict[str, list[Attempt]]  # block ("path::Name") -> the newest, newest first
    notebook: str = ""  # the notebook's text after the previous generation
    notebook_generation: int | None = None  # the generation that last wrote it


def gather(store: Store, config: Config, run: str, generation: int) -> Evidence:
    """The evidence for generation `generation`'s prompts."""
    generations = [g for g in ledger.history(store, run) if g.generation < generation]
    if not generations:
        raise ValueError(f"run {run!r} has no generation before {generation}")
    reader = _Reader(store, config, run, generations)
    current = generations[-1]
    notebook, written = _notebook(generations)
    # generation 0's population is the seed alone, as evaluated and checked
    return Evidence(generation=generation, seed=reader.scores(generations[0].population[0]),
                    members={m.id: reader.scores(m) for m in current.population},
                    # the ledger keeps each population best first, as selection ranked it
                    ranking=[m.id for m in current.population], attempts=reader.attempts(),
                    notebook=notebook, notebook_generation=written)


def outcomes(store: Store, config: Config, run: str,
             generations: list[Generation]) -> list[Attempt]:
    """What each child of the last of `generations` (finished, or about to be recorded)
    tried and how it did, in plan order."""
    return _Reader(store, config, run, generations).children(generations[-1])


def _notebook(generations: list[Generation]) -> tuple[str, int | None]:
    """The latest notebook text on the ledger, and the generation that wrote it."""
    for gen in reversed(generations):
        text = gen.notebook
        if text is not None:
            return text.strip(), gen.generation
    return "", None


class _Reader:
    """Notes and messages of one run, each read once."""

    def __init__(self, store: Store, config: Config, run: str, generations: list[Generation]):
        self.store, self.config, self.run = store, config, run
        self.generations = generations
        self.notes = store.read_notes(notes_ref(run))
        self._rungs: dict[int, dict[str, str]] = {}
        self.commits = {row["id"]: row["commit"] for g in generations for row in g.offspring
                        if row.get("commit")}

    def evaluation(self, commit: str | None, rung: int | None = None) -> Evaluation | None:
        if commit is None:
            return None
        if rung is None:
            text = self.notes.get(commit)
        else:
            if rung not in self._rungs:
                self._rungs[rung] = self.store.read_notes(rung_ref(self.run, rung))
            text = self._rungs[rung].get(commit)
        return Evaluation.from_dict(json.loads(text)) if text else None

    def scores(self, member: Member) -> Scores:
        note = self.evaluation(member.commit)
        return Scores(member.id, dict(member.objectives), member.violation,
                      note.fidelity if note else "")

    def attempts(self) -> dict[str, list[Attempt]]:
        """Per block, its newest attempts, as many as a prompt shows ([prompt] history):
        older ones are never read, however long the run."""
        wanted = self.config.prompt.history
        found: dict[str, list[Attempt]] = {}
        for gen in reversed(self.generations[1:]):
            entered = {m.id for m in gen.population}
            for row in reversed(gen.offspring):
                shown = found.setdefault(row.get("block", ""), [])
                if len(shown) < wanted:
                    shown.append(self.attempt(gen.generation, row, row["id"] in entered))
        return {block: items for block, items in found.items() if items}

    def children(self, gen: Generation) -> list[Attempt]:
        entered = {m.id for m in gen.population}
        return [self.attempt(gen.generation, row, row["id"] in entered)
                for row in gen.offspring]

    def attempt(self, generation: int, row: dict, entered: bool) -> Attempt:
        parent = (row.get("parents") or [""])[0]
        base = {"id": row["id"], "generation": generation, "block": row.get("block", ""),
                "operator": row.get("operator", ""), "parent": parent, "entered": entered,
                "prompt": operators.prompt_label(row.get("template", ""), row.get("persona"))}
        commit = row.get("commit")
        if row.get("status") == "rejected" or commit is None:
            return Attempt(**base, summary="(its answer never applied, so nothing was "
                           "committed)", status="rejected", reason=_cut(row.get("error", ""),
                                                                          REASON_CHARS))
        summary = self.summary(commit)
        note = self.evaluation(commit)
        if note is None:
            return Attempt(**base, summary=summary, status=row.get("status", "missing"))
        rung, objectives = None, dict(note.objectives)
        if not objectives and note.rungs:  # screened, or failed at a rung: its last result
            last = note.rungs[-1]
            rung, objectives = last.get("rung"), dict(last.get("objectives") or {})
        baseline = self.evaluation(self.commits.get(parent), rung)
        return Attempt(**base, summary=summary, status=note.status,
                       reason="" if note.ok else _cut(note.error or "", REASON_CHARS),
                       objectives=objectives,
                       baseline=dict(baseline.objectives) if baseline else {}, rung=rung)

    def summary(self, commit: str) -> str:
        """The commit subject's summary, then the first sentence of its rationale (one of
        them alone where the subject is that sentence, whole or cut short)."""
        message = self.store.message(commit)
        subject = message.strip().partition("\n")[0].split("): ", 1)[-1]
        body = " ".join(line.strip() for line in operators.rationale(message).splitlines()
                        if line.strip())
        first = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0] if body else ""
        if not first or _plain(first).startswith(_plain(subject)):
            return _cut(first or subject, SUMMARY_CHARS)
        return _cut(f"{subject}: {first}", SUMMARY_CHARS)


def _plain(text: str) -> str:
    """Text compared without quotes, backticks, a trailing ellipsis or full stop."""
    return text.replace("`", "").rstrip(".").removesuffix("...").strip()


def _cut(text: str, limit: int) -> str:
    """The first non-empty line of `text`, at most `limit` characters."""
    line = next((t.strip() for t in text.splitlines() if t.strip()), "")
    return line if len(line) <= limit else line[:limit - 3].rstrip() + "..."
