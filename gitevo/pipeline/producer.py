"""Steps 2-3 with an LLM: run the planned proposals beside the evaluations, keep what comes.

The proposals run in a process of their own (gitevo/pipeline/proposer.py), so the pipeline can
evaluate each child while other LLM calls are still in flight, and neither half waits
for the other's turn on the interpreter lock. Every settled proposal comes out of
`Proposals.settled()` as it is kept. Children are written as they arrive (the ones that
arrived together in one provenance notes commit, whose ref moves in the transaction that
creates their branches), and each refusal is saved in the plan with its conversation, so a
killed run never pays twice for an answer it already has.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gitevo.core.events import Events
from gitevo.llm import LLMSettings, Usage
from gitevo.pipeline.errors import EvolutionError
from gitevo.pipeline.notewriter import PACE
from gitevo.pipeline.plan import SEED_ID, Plan
from gitevo.pipeline.proposer import FATAL, Settled, Setup
from gitevo.store import hints
from gitevo.store.gitstore import Store, individual_ref, llm_notes_ref
from gitevo.store.ledger import Generation, Member
from gitevo.variation.guided import Outcome
from gitevo.variation.spec import Spec

if TYPE_CHECKING:
    from gitevo.config import Config
    from gitevo.store.fitness import Evaluation
    from gitevo.variation.evidence import Evidence
from gitevo.variation.prompts import PromptLibrary

# gitevo's own sys.path, so that the process runs this very gitevo, wherever it came from
_MAIN = ("import json, sys; sys.path[:] = json.loads(sys.argv[3]); "
         "from gitevo.pipeline.proposer import main; sys.exit(main(sys.argv))")

_DONE = None  # the queue's last item: every proposal has settled (or the process failed)

Child = tuple[str, bool | None]  # (child id, validated when proposed; None: refused)


class Generating(Protocol):
    """What the producer uses of the generation it serves (pipeline.evolution.Evolution);
    named here so that the producer does not import the module that imports it."""

    store: Store
    config: Config
    run: str
    library: PromptLibrary | None
    events: Events
    plan_path: Path
    budget_exhausted: bool

    def commit_of(self, ident: str) -> str | None: ...

    def evaluation(self, commit: str) -> Evaluation | None: ...

    def evidence(self, generation: int) -> Evidence: ...

    def task_text(self) -> str: ...


class ProposerProcess:
    """The proposals' process (gitevo/pipeline/proposer.py), started with the models'
    settings; once made, its providers exist, so a missing key has already been reported."""

    def __init__(self, models: tuple[LLMSettings, ...]):
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        try:
            # stdout goes to stderr: gitevo's own stdout may be the JSON Lines of --json
            self._proc = subprocess.Popen(
                # -I: nothing from the user's folder (a json.py) before sys.path is set
                [sys.executable, "-I", "-c", _MAIN, str(down_r), str(up_w),
                 json.dumps(sys.path)],
                pass_fds=(down_r, up_w), stdin=subprocess.DEVNULL, stdout=2)
        finally:
            os.close(down_r)
            os.close(up_w)
        self.down = Connection(down_w, readable=False)
        self.up = Connection(up_r, writable=False)
        self.down.send(models)
        first = self.receive()
        if first[0] != "ready":
            self.close()
            raise EvolutionError(first[2] if first[0] == "failed" else str(first))

    def send(self, message: object) -> None:
        with contextlib.suppress(OSError):  # it is gone: receive() says so
            self.down.send(message)

    def receive(self) -> tuple:
        """The next message; an exit before "done" is an EvolutionError."""
        try:
            return self.up.recv()
        except (EOFError, OSError):
            status = self._proc.wait()
            raise EvolutionError(f"the proposals' process exited unexpectedly (status "
                                 f"{status}); rerun to resume the generation") from None

    def pending(self, within: float) -> bool:
        """Whether a message comes within `within` seconds."""
        return self.up.poll(max(0.0, within))

    def close(self) -> None:
        """End it: it exits once the pipe from us closes (at once if it had no work)."""
        self.down.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self.up.close()


class Proposals:
    """The plan's pending proposals, run by the proposals' process.

    Start it with `start()`, read children with `settled()` as they are committed, and
    call `finish()` at the end (it re-raises what stopped the proposals, e.g. a fatal LLM
    error). `stop()` starts no more proposals; the ones in flight still settle.
    """

    def __init__(self, evo: Generating, plan: Plan, current: Generation,
                 proposer: ProposerProcess):
        self.evo, self.plan, self.current, self.proposer = evo, plan, current, proposer
        self.pending = [s for s in plan.specs if not s.rejected and not evo.commit_of(s.id)]
        self.finished_at: float | None = None  # time.monotonic() when the last one settled
        self._specs = {s.id: s for s in self.pending}
        self._queue: queue.SimpleQueue[Child | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gitevo-proposals", daemon=True)

    def start(self) -> None:
        if not self.pending:
            self.finished_at = time.monotonic()
            self._queue.put(_DONE)
            return
        seed = self.evo.commit_of(SEED_ID)
        self.proposer.send(Setup(
            root=self.evo.store.root, config=self.evo.config, run=self.evo.run,
            library=self.evo.library, seed=seed,
            seed_objectives=self.evo.evaluation(seed).objectives,
            generation=self.plan.generation,
            members={m.id: m for m in self.current.population}, pending=self.pending,
            spent=spent_so_far(self.evo, self.plan, self.current),
            evidence=self.evo.evidence(self.plan.generation), task=self.evo.task_text(),
            fingerprints=fingerprints(self.evo, self.current.population),
            hints=hints.load(self.evo.store, self.evo.run)))
        self._thread.start()

    def settled(self) -> Iterator[Child]:
        """Each proposal as it settles: (id, validated) for a child, (id, None) for a refusal.
        Ends when all have settled, or when the proposals stopped on an error."""
        while (item := self._queue.get()) is not _DONE:
            yield item

    def stop(self) -> None:
        if self._thread.ident is not None:  # started: the process has its Setup
            self.proposer.send("stop")

    def wait(self) -> None:
        """Until the proposals in flight have settled (after `stop`) or all have."""
        if self._thread.ident is not None:  # started
            self._thread.join()

    def finish(self) -> None:
        """Wait for the thread and raise what stopped the proposals, if anything did."""
        self.wait()
        if self._error is not None:
            raise self._error

    # ---- the background thread: what the proposals' process reports -----------------------

    def _run(self) -> None:
        try:
            # a Store of its own: pygit2 repositories are not shared between threads
            self._settle_as_reported(Store(self.evo.store.root))
        except BaseException as exc:  # handed to the caller by finish()
            self._error = exc
            self.proposer.send("stop")  # nobody keeps what it would still make
        finally:
            self.finished_at = time.monotonic()
            self._queue.put(_DONE)

    def _settle_as_reported(self, store: Store) -> None:
        """Keep children in the groups they arrive in: one group, one notes commit.

        After a fatal error no proposal starts, but the ones in flight still settle and
        their children are kept (the rerun must not pay for them again); then the error
        is raised."""
        fatal: BaseException | None = None
        last = 0.0  # time.monotonic() when the last group was taken
        while True:
            group = self._gather(last + PACE)
            last = time.monotonic()
            kept: list[tuple[Spec, Outcome]] = []
            for message in group:
                try:
                    outcome = self._handle(message)
                except Exception as exc:  # noqa: BLE001 - raised once the rest settled
                    fatal = fatal or exc
                    continue
                if outcome is not None:
                    kept.append((self._specs[message[1]], outcome))
            self._keep(store, kept)
            if group[-1][0] in ("done", "lost"):
                break
        if fatal is not None:
            raise fatal

    def _gather(self, until: float) -> list[tuple]:
        """The next message, and what else comes before `until` (at most one provenance
        notes commit per PACE, as for fitness notes); "done" ends it at once. A process
        that died ends it with ("lost", error), after what it sent before dying."""
        group: list[tuple] = []
        try:
            group.append(self.proposer.receive())
            while group[-1][0] != "done" and self.proposer.pending(until - time.monotonic()):
                group.append(self.proposer.receive())
        except EvolutionError as exc:
            group.append(("lost", exc))
        return group

    def _handle(self, message: tuple) -> Outcome | None:
        """One message: an event to pass on, a settled proposal, or the end."""
        if message[0] == "event":
            self.evo.events.emit(message[1], **message[2])
            return None
        if message[0] == "lost":
            raise message[1]
        if message[0] == "done":
            if message[1] is not None:
                raise EvolutionError(f"the proposals failed:\n{message[1]}")
            return None
        return self._outcome(self._specs[message[1]], message[2])

    def _outcome(self, spec: Spec, settled: Settled) -> Outcome | None:
        """The child to keep, or None after recording why there is none."""
        if settled.cancelled:
            return None  # stopped before it started: the rerun proposes it
        if settled.crash is not None:
            raise EvolutionError(f"{spec.id}: the proposal failed:\n{settled.crash}")
        if settled.error is not None:
            kind, message, spec.turns = settled.error
            if settled.budget:
                self.evo.budget_exhausted = True
                # the budget words its message as a refusal reason: "budget: 0 of ..."
                spec.rejected = message
            elif kind in FATAL:
                self.plan.save(self.evo.plan_path)
                raise EvolutionError(f"{spec.id}: {message}")
            else:
                spec.rejected = f"llm-{kind}: {message}"
        elif settled.outcome.commit is not None:
            return settled.outcome
        else:
            outcome = settled.outcome
            spec.rejected, spec.turns = outcome.reason, outcome.provenance.get("turns", [])
        self.plan.save(self.evo.plan_path)
        self.evo.events.emit("rejected", id=spec.id, operator=spec.operator,
                             reason=spec.rejected.splitlines()[0])
        self._queue.put((spec.id, None))
        return None

    def _keep(self, store: Store, kept: list[tuple[Spec, Outcome]]) -> None:
        """Provenance and branches together: a branch never exists without its conversation.
        Whether a child passed its checks when proposed is in its note (its last turn has
        no error), so the plan need not be saved for it."""
        if not kept:
            return
        ids = ", ".join(spec.id for spec, _ in kept)
        # one transaction moves the notes ref and creates the branches: all or none
        store.write_notes(llm_notes_ref(self.evo.run),
                          {o.commit: _provenance(o) for _, o in kept},
                          f"gitevo: generation {self.plan.generation} offspring {ids}",
                          with_refs=[(individual_ref(self.evo.run, s.id), o.commit, None)
                                     for s, o in kept])
        for spec, outcome in kept:
            self.evo.events.emit("committed", id=spec.id, commit=outcome.commit,
                                 operator=spec.operator, template=spec.template,
                                 turns=len(outcome.provenance.get("turns", [])))
            self._queue.put((spec.id, outcome.validated))


def _provenance(outcome: Outcome) -> str:
    return json.dumps({**outcome.provenance, "usage": asdict(outcome.usage)}, indent=2) + "\n"


def validated_when_proposed(store: Store, run: str, commit: str) -> bool:
    """Whether a child passed its checks on its last turn (read from its provenance note):
    then its evaluation may skip them. No note (an offline child): False."""
    note = store.read_note(llm_notes_ref(run), commit)
    turns = json.loads(note).get("turns", []) if note else []
    return bool(turns) and turns[-1].get("error") is None


def fingerprints(evo: Generating, members: list[Member]) -> dict[str, str]:
    """What each member's check reported it does: from its fitness note, or, for a child
    whose checks ran when it was proposed, from its provenance note's last turn."""
    found = {}
    for member in members:
        note = evo.evaluation(member.commit)
        value = note.fingerprint if note else None
        if value is None:
            text = evo.store.read_note(llm_notes_ref(evo.run), member.commit)
            turns = json.loads(text).get("turns", []) if text else []
            value = turns[-1].get("fingerprint") if turns else None
        if value:
            found[member.id] = value
    return found


def start_proposer(config: Config) -> ProposerProcess:
    """The proposals' process for this configuration; a missing key is an EvolutionError."""
    return ProposerProcess(config.ensemble)


def spent_so_far(evo: Generating, plan: Plan, current: Generation) -> Usage:
    """The run's LLM usage before this process: the ledger's total plus this generation's."""
    total = Usage(**current.stats.get("llm_total", {}))
    return total + generation_usage(evo, plan)


def generation_usage(evo: Generating, plan: Plan) -> Usage:
    """Usage of this generation's proposals: children's provenance notes and refusals."""
    total = Usage()
    for turn in _turns(evo, plan):
        total = total + Usage(**turn.get("usage", {}))
    return total


def generation_calls(evo: Generating, plan: Plan) -> dict[str, int]:
    """This generation's LLM calls: answered (one per recorded turn) and failed outright."""
    failed = sum(1 for s in plan.specs if (s.rejected or "").startswith("llm-"))
    return {"ok": sum(1 for _ in _turns(evo, plan)), "failed": failed}


def _turns(evo: Generating, plan: Plan) -> Iterator[dict]:
    """Every recorded turn of this generation: in children's provenance notes, in refusals."""
    for spec in plan.specs:
        yield from spec_turns(evo, spec)


def spec_turns(evo: Generating, spec: Spec) -> list[dict]:
    """The recorded turns of one planned child: in its provenance note, or its refusal's."""
    commit = evo.commit_of(spec.id)
    note = evo.store.read_note(llm_notes_ref(evo.run), commit) if commit else None
    record = json.loads(note) if note else {"turns": spec.turns}
    return record.get("turns", [])
