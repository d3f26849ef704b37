"""The fitness note's record: one measurement of one commit, as JSON in
refs/notes/gitevo/<run>. Executors produce it, the note writers store it, and every
reader of a run (status, plots, selection) reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# suspect: scored, but trained far past its parent's time (pipeline/overrun); screened: a
# cascade's screening rung did not promote it to the full evaluation (pipeline/cascade);
# stopped: its learning curve fell clearly behind its parent's (execution/progress).
# None of them is selected.
STATUSES = ("ok", "invalid", "timeout", "crashed", "suspect", "screened", "stopped")
VALID = ("ok", "suspect", "screened", "stopped")  # the code ran as it should: a valid child


@dataclass
class Evaluation:
    """One fitness measurement of one commit, as stored in its note."""

    status: str
    objectives: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    fidelity: str = "default"
    seconds: float = 0.0
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds: validate, fitness
    # with a [fitness.cascade]: each screening rung this individual reached, in order
    rungs: list[dict[str, Any]] = field(default_factory=list)
    # the fitness command's learning curve ({progress}), as it reported it
    curve: list[dict[str, float]] = field(default_factory=list)
    # the earlier individual ({"id", "commit"}) whose tree this one has, and whose
    # evaluation it carries instead of being trained again
    reused: dict[str, str] | None = None
    # what the check command reported the code does (a hash of its behaviour), if it did:
    # children that behave the same are duplicates. Candidate-written, so it is only ever
    # used to refuse a child, never to hand it anyone's score.
    fingerprint: str | None = None
    # what confined the evaluation: isolation tool, Landlock ABI, network, filesystem
    isolation: dict[str, Any] | None = None
    # keys this version does not know (newer gitevo, other tools): kept as they were read
    unknown: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for optional in ("rungs", "curve", "reused", "fingerprint", "isolation"):
            if not data[optional]:
                del data[optional]  # notes of runs without them read as they always did
        return {**data.pop("unknown"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        names = {f.name for f in fields(cls)} - {"unknown"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   unknown={k: v for k, v in data.items() if k not in names})
