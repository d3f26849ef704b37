"""A person's hints to a run, kept in git: `refs/notes/gitevo/<run>-hints`.

Each hint is a note on a blob of its own (its text, when and by whom, and a nonce), so
two clones that each add hints merge them in `gitevo sync` like any notes ref, without a
conflict. A hint holds for the next `generations` generations after it was given (from
`start`), for one block or all; removing one marks it removed and keeps its text, so a
recorded prompt that showed it can still be rebuilt. Hints are numbered 1, 2, ... in the
order they were given, the same in every clone that has the same hints.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

from gitevo.store.gitstore import NOTES_PREFIX, GitError, Store


def hints_ref(run: str) -> str:
    return f"{NOTES_PREFIX}{run}-hints"


@dataclass(frozen=True)
class Hint:
    key: str  # the blob its note annotates
    number: int  # 1, 2, ... by the time it was given
    text: str
    start: int  # the first generation it is shown to
    generations: int  # how many generations, from start
    block: str | None = None  # "path::Name", or None for every block
    created: float = 0.0
    author: str = ""
    removed: bool = False

    def live(self, generation: int, block: str | None = None) -> bool:
        """Whether a call of `generation` on `block` shows it."""
        return (not self.removed and self.start <= generation < self.start + self.generations
                and (self.block is None or block is None or self.block == block))

    @property
    def scope(self) -> str:
        last = self.start + self.generations - 1
        when = f"generation {self.start}" if last == self.start else \
            f"generations {self.start}-{last}"
        return f"{when}, {self.block or 'every block'}"


def load(store: Store, run: str) -> list[Hint]:
    """Every hint of the run, removed ones included, numbered in the order given."""
    found = []
    for key, text in store.read_notes(hints_ref(run)).items():
        try:
            data = json.loads(text)
            found.append((data.get("created", 0.0), key, data))
        except ValueError:
            continue  # not a hint: nothing to show
    return [Hint(key=key, number=i + 1, text=str(data.get("text", "")),
                 start=int(data.get("start", 0)), generations=int(data.get("generations", 1)),
                 block=data.get("block"), created=created, author=str(data.get("author", "")),
                 removed=bool(data.get("removed")))
            for i, (created, key, data) in enumerate(sorted(found))]


def add(store: Store, run: str, text: str, *, start: int, generations: int,
        block: str | None = None, author: str = "") -> Hint:
    """Record a hint shown from generation `start` for `generations` generations."""
    if not text.strip():
        raise GitError("hint: the text is empty")
    created = round(time.time(), 6)
    key = store.repo.create_blob(
        f"gitevo hint\n{created}\n{os.urandom(8).hex()}\n{text}\n".encode())
    record = {"text": text.strip(), "start": start, "generations": generations,
              "block": block, "created": created, "author": author, "removed": False}
    store.write_notes(hints_ref(run), {str(key): json.dumps(record, indent=1) + "\n"},
                      f"gitevo: hint for {run}")
    return next(h for h in load(store, run) if h.key == str(key))


def remove(store: Store, run: str, number: int) -> Hint:
    """Retire hint `number` (its text stays, marked removed)."""
    found = {h.number: h for h in load(store, run)}
    if number not in found:
        raise GitError(f"hint {number}: no such hint in run {run!r} (`gitevo hint --list`)")
    hint = found[number]
    record = {k: v for k, v in asdict(hint).items() if k not in ("key", "number")}
    record["removed"] = True
    store.write_notes(hints_ref(run), {hint.key: json.dumps(record, indent=1) + "\n"},
                      f"gitevo: hint {number} of {run} removed")
    return found[number]
