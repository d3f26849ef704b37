"""The run notebook: lessons carried across the whole run, rewritten after each generation.

With `[prompt] notebook = true` and an LLM, one call after each generation reads what
every child of it tried and how it did against its parent, with the notebook as it
stood, and writes the notebook anew ("what helped, what hurt, what to try next"). The
text goes on the ledger (`notebook.md` in the generation's commit), the conversation
into a provenance note on that ledger commit, written in the same transaction, and the
call's tokens and cost into the generation's LLM usage, so the run's budget counts it.
A call that fails leaves the notebook as it was and the generation is recorded anyway:
lessons are worth a call, not a lost generation.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from gitevo.config import Config
from gitevo.core.events import Events
from gitevo.llm import Client, LLMError, Message, Request, Usage, make_provider
from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.store.ledger import Generation
from gitevo.variation import evidence, sections
from gitevo.variation.prompts import PromptLibrary

EMPTY = "(empty: nothing has been written yet)"
_FENCED = re.compile(r"^```[\w-]*\n(.*)\n```$", re.S)


@dataclass
class Entry:
    """The notebook to keep after a generation, and the call that wrote it (if any)."""

    text: str
    provenance: str | None = None  # the note for the ledger commit
    usage: Usage = field(default_factory=Usage)

    @property
    def calls(self) -> int:
        """The LLM calls it made: one wherever a conversation was recorded."""
        return int(self.provenance is not None)


def update(store: Store, config: Config, run: str, library: PromptLibrary, gen: Generation,
           task: str, spent: Usage, events: Events) -> Entry:
    """The notebook after `gen` (not recorded yet); `spent`: the run's LLM usage so far,
    which the budget counts from."""
    before = ledger.history(store, run)
    previous = next((g.notebook for g in reversed(before) if g.notebook is not None), "")
    senses = {o.name: o.sense for o in config.objectives}
    lines = [sections.attempt_line(a, senses, with_block=True)
             for a in evidence.outcomes(store, config, run, [*before, gen])]
    budget = config.prompt.tokens["notebook"]
    user = library.render("notebook", task=sections.task_section(library, config, task),
                          generation=gen.generation, notebook=previous.strip() or EMPTY,
                          outcomes="\n".join(lines) or "(no children)", tokens=budget)
    settings = config.llm
    request = Request(library.render("notebook_system"), [Message("user", user)],
                      settings.temperature[0] if settings.temperature else None,
                      min(settings.max_output_tokens[1], max(512, 2 * budget)))
    try:
        with Client(settings, make_provider(settings)) as client:
            client.carry_over(spent)
            reply = client.complete(request)
    except LLMError as exc:
        events.emit("notice", message=f"the notebook was not updated after generation "
                                       f"{gen.generation}: {exc.kind}: {exc.message}")
        return Entry(previous)
    text = _clean(reply.text)
    record = {"kind": "notebook", "generation": gen.generation, "model": client.model,
              "provider": client.name, "temperature": request.temperature,
              "max_tokens": request.max_tokens, "system": request.system, "stable": "",
              "turns": [{"user": user, "response": reply.text, "stop_reason": reply.stop_reason,
                         "attempts": reply.attempts, "usage": asdict(reply.usage),
                         "seconds": reply.seconds, "error": None if text else "empty answer"}],
              "usage": asdict(reply.usage)}
    if not text:
        events.emit("notice", message=f"the notebook call after generation {gen.generation} "
                                       "answered nothing: the notebook stays as it was")
    return Entry(text or previous, json.dumps(record, indent=2) + "\n", reply.usage)


def _clean(answer: str) -> str:
    """The notebook text of an answer: fences around the whole of it removed."""
    text = answer.strip()
    fenced = _FENCED.match(text)
    return (fenced.group(1) if fenced else text).strip()
