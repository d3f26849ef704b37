"""What one planned child is: its operator, parents, block and prompt, and, once known,
what became of its proposal. The plan (pipeline.plan) draws these; the operators and
the LLM-guided proposals take one each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MUTATION, CROSSOVER, EOT = "mutation", "crossover", "eot"
OFFLINE = "offline"


@dataclass
class Spec:
    """One planned offspring and, once known, what became of it."""

    id: str
    operator: str  # mutation | crossover | eot
    parents: list[str]
    block: str  # "file::Name", the one block this child may change
    seed: int
    template: str = OFFLINE  # prompt template, e.g. "mutation/reduce_params"
    persona: str = "none"
    model: str | None = None  # which model of the ensemble answers (its name); None: the first
    hints: list[int] = field(default_factory=list)  # the person's hints its prompt shows
    temperature: float | None = None
    max_tokens: int | None = None
    elite: str | None = None  # EoT: the elite whose change is the lesson
    lesson: str | None = None  # EoT: the block where the elite differs from the seed
    rejected: str | None = None  # the reason, when the proposal could not be applied
    turns: list[dict] = field(default_factory=list)  # provenance of a rejected proposal
    # unused since the provenance note tells (its last turn has no error); kept so that
    # plans saved by earlier versions still load
    validated: bool = False
