"""The proposals' own process: LLM calls, answers made into commits, and their checks.

gitevo's main process evaluates children and keeps the books (notes, refs, the plan,
selection). What makes a child runs here, beside it, so that the two halves do not take
turns on one interpreter lock: with instant answers and fitness, each half is a few
milliseconds of Python per child, and on a machine of few cores that is the pace of a run.

`main(argv)` runs it, with argv[1:3] the descriptors IN and OUT of two pipes that
carry `multiprocessing.connection` messages. From gitevo: the models' settings, then a
`Setup`, then at most "stop". To gitevo:
    ("ready",) or ("failed", kind, message)   once the provider exists (a key is found)
    ("event", kind, fields)                   an llm_call or validated event
    ("settled", id, Settled)                  each proposal, as it settles
    ("done", None | traceback)                last
When IN closes (gitevo ended, even by SIGKILL) this process exits at once: nobody is
left to keep what it would make.
"""

from __future__ import annotations

import os
import signal
import threading
import traceback
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from gitevo.config import Config
from gitevo.core.events import Events
from gitevo.llm import BudgetExceeded, LLMError, LLMSettings, Usage, make_provider
from gitevo.llm.ensemble import Ensemble
from gitevo.store.hints import Hint
from gitevo.store.ledger import Member
from gitevo.variation.evidence import Evidence
from gitevo.variation.guided import Guide, Outcome
from gitevo.variation.prompts import PromptLibrary
from gitevo.variation.spec import Spec

# errors that no other proposal would escape either: stop and let the user fix them
FATAL = ("auth", "missing-key", "unreachable")


@dataclass
class Setup:
    """What one generation's proposals need, sent by gitevo once the plan is written."""

    root: Path
    config: Config
    run: str
    library: PromptLibrary
    seed: str
    seed_objectives: dict[str, float]
    generation: int
    members: dict[str, Member]
    pending: list[Spec]
    spent: Usage  # the run's LLM usage so far: the budget counts from there
    evidence: Evidence | None = None  # what the prompts show of the run so far
    task: str = ""  # the task text, filled from the config
    fingerprints: dict[str, str] = field(default_factory=dict)  # members' check fingerprints
    hints: list[Hint] = field(default_factory=list)  # the person's hints, by number


@dataclass
class Settled:
    """How one proposal ended: a child or a refusal (`outcome`), a failed LLM call
    (`error`: kind, message, the turns it had), or `cancelled` before it started."""

    outcome: Outcome | None = None
    error: tuple[str, str, list] | None = None
    budget: bool = False  # error is the budget's refusal to send
    cancelled: bool = False
    crash: str | None = None  # anything else (a bug): its traceback


class Worker:
    """Runs a Setup's proposals on a thread pool and reports each on `out`."""

    def __init__(self, setup: Setup, llm: Ensemble, out: Connection,
                 stopping: threading.Event):
        self.setup, self.llm, self.out, self.stopping = setup, llm, out, stopping
        self._send_lock = threading.Lock()

    def send(self, message: tuple) -> None:
        with self._send_lock:
            self.out.send(message)

    def run(self) -> None:
        s = self.setup
        events = Events(lambda e: self.send(("event", e.kind, e.fields)))
        guide = Guide(s.root, s.config, s.run, self.llm, s.library, s.seed,
                      s.seed_objectives, events, evidence=s.evidence, task=s.task,
                      fingerprints=s.fingerprints, hints=s.hints)
        with self.llm, ThreadPoolExecutor(self.llm.concurrency) as pool:
            futures = {pool.submit(self._propose, guide, spec): spec for spec in s.pending}
            try:
                # one waiter on all of them: wait(FIRST_COMPLETED) in a loop locks every
                # pending future on each call, quadratic in the generation's size
                for future in as_completed(futures):
                    self.send(("settled", futures[future].id, _settled(future)))
            except BaseException:
                self.stopping.set()  # what is queued settles as cancelled, unasked
                raise

    def _propose(self, guide: Guide, spec: Spec) -> Outcome:
        """One proposal in a pool thread, unless proposing has stopped: then it settles as
        cancelled. A fatal error stops the rest at once, here, so that the thread that met
        it does not go on to its next proposal before anyone has read the error."""
        if self.stopping.is_set():
            raise CancelledError
        try:
            return guide.propose(spec, self.setup.generation, self.setup.members)
        except LLMError as exc:
            if exc.kind in FATAL:
                self.stopping.set()
            raise


def _settled(future: Future) -> Settled:
    try:
        return Settled(outcome=future.result())
    except CancelledError:
        return Settled(cancelled=True)
    except BudgetExceeded as exc:
        return Settled(error=(exc.kind, exc.message, exc.turns), budget=True)
    except LLMError as exc:
        return Settled(error=(exc.kind, exc.message, exc.turns))
    except Exception:  # noqa: BLE001 - the others still settle; gitevo raises it after
        return Settled(crash=traceback.format_exc())


def _watch(source: Connection, stopping: threading.Event, done: threading.Event) -> None:
    """gitevo's later messages: "stop" (no new proposals; those in flight settle), or the
    pipe closing. Closed before "done", gitevo is gone: nobody would keep what we make."""
    try:
        while True:
            if source.recv() == "stop":
                stopping.set()
    except (EOFError, OSError):
        if not done.is_set():
            os._exit(1)  # the fork server, seeing us gone, kills the checks we started


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches gitevo, which says stop
    source = Connection(int(argv[1]), writable=False)
    out = Connection(int(argv[2]), readable=False)
    models: tuple[LLMSettings, ...] = source.recv()
    try:
        llm = Ensemble(models, make_provider)
    except LLMError as exc:
        out.send(("failed", exc.kind, exc.message))
        return 1
    out.send(("ready",))
    try:
        setup: Setup | None = source.recv()
    except EOFError:
        setup = None  # the generation needed no proposals (or stopped before)
    if setup is None:
        llm.close()
        return 0
    stopping, done = threading.Event(), threading.Event()
    threading.Thread(target=_watch, args=(source, stopping, done), daemon=True).start()
    error = None
    try:
        llm.carry_over(setup.spent)
        Worker(setup, llm, out, stopping).run()
    except BaseException:  # noqa: BLE001 - reported to gitevo, which raises it
        error = traceback.format_exc()
    done.set()
    out.send(("done", error))
    return 0

