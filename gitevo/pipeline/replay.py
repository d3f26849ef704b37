"""An LLM child's prompt, built again from refs and notes alone.

Its provenance note says what was asked (operator, block, parents, template, persona,
an EoT's elite and lesson); the ledger holds the population and the outcomes before its
generation; the task file and the prompt templates are read as they are now. Built
again, the prompt must equal the recorded one byte for byte, unless the task file or the
templates changed since: `gitevo show ID --prompt` says which.
"""

from __future__ import annotations

import json

from gitevo.config import Config
from gitevo.pipeline.plan import SEED_ID
from gitevo.store import hints, ledger
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import Store, individual_ref, llm_notes_ref, notes_ref
from gitevo.variation import evidence, task
from gitevo.variation.guided import Guide
from gitevo.variation.prompts import Prompt, PromptLibrary
from gitevo.variation.spec import Spec


class ReplayError(ValueError):
    """The individual has no recorded prompt to build again; the message is one line."""


def rebuild(store: Store, config: Config, run: str, ident: str,
            task_text: str | None = None) -> Prompt:
    """The prompt of individual `ident`, built again (`task_text`: the task as rendered
    for its run, to skip running the recipe command again)."""
    return _build(store, config, run, ident, *_recorded(store, run, ident), task_text)


def same_as_recorded(store: Store, config: Config, run: str, ident: str) -> bool:
    """Whether the prompt built again equals the one the note recorded."""
    commit, record = _recorded(store, run, ident)
    prompt = _build(store, config, run, ident, commit, record, None)
    return (prompt.system, prompt.stable, prompt.variable) == (
        record["system"], record["stable"], record["turns"][0]["user"])


def _recorded(store: Store, run: str, ident: str) -> tuple[str, dict]:
    """The individual's commit and its provenance note, which must record its spec."""
    commit = store.resolve_ref(individual_ref(run, ident))
    note = store.read_note(llm_notes_ref(run), commit) if commit else None
    if note is None:
        raise ReplayError(f"{ident}: no LLM prompt was recorded for it in run {run!r}")
    record = json.loads(note)
    if not record.get("spec"):
        raise ReplayError(f"{ident}: its provenance note predates recorded prompt specs")
    return commit, record


def _build(store: Store, config: Config, run: str, ident: str, commit: str, record: dict,
           task_text: str | None) -> Prompt:
    asked = record["spec"]
    generation = int(store.trailers(commit)["Gitevo-Generation"])
    before = [g for g in ledger.history(store, run) if g.generation < generation]
    members = {m.id: m for m in before[-1].population}
    seed = store.resolve_ref(individual_ref(run, SEED_ID))
    seed_note = Evaluation.from_dict(json.loads(store.read_note(notes_ref(run), seed)))
    if task_text is None:
        task_text = task.render(store, config, seed)
    library = PromptLibrary.for_config(store.root, config)
    guide = Guide(store.root, config, run, None, library, seed, seed_note.objectives,
                  evidence=evidence.gather(store, config, run, generation),
                  task=task_text, hints=hints.load(store, run))
    spec = Spec(id=ident, operator=asked["operator"], parents=asked["parents"],
                block=asked["block"], seed=0, template=record["template"],
                persona=record.get("persona") or "none", elite=asked.get("elite"),
                lesson=asked.get("lesson"), hints=asked.get("hints") or [])
    prompt, _shown = guide.prompt_for(store, spec, [members[p].commit for p in spec.parents],
                                      members)
    return prompt
