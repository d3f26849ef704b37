"""Steps 2-3 with an LLM: run the planned proposals concurrently and keep what comes back.

The proposals run in a background thread (`Proposals`), so the pipeline can evaluate
each child while other LLM calls are still in flight: every settled proposal comes out
of `Proposals.settled()` as it is kept. Children are written as they arrive (provenance
notes first, then their branches; the ones that finished together in one notes commit
and one ref transaction), and each refusal is saved in the plan with its conversation,
so a killed run never pays twice for an answer it already has.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from typing import TYPE_CHECKING

from gitevo.gitstore import Store, individual_ref, llm_notes_ref
from gitevo.guided import Guide, Outcome
from gitevo.ledger import Generation, Member
from gitevo.llm import BudgetExceeded, Client, LLMError, Provider, Usage, make_provider
from gitevo.plan import Plan, Spec

if TYPE_CHECKING:
    from gitevo.config import Config
    from gitevo.evolution import Evolution

# errors that no other proposal would escape either: stop and let the user fix them
FATAL = ("auth", "missing-key", "unreachable")

_DONE = None  # the queue's last item: every proposal has settled (or the thread failed)

Settled = tuple[str, bool | None]  # (child id, validated when proposed; None: refused)


class Proposals:
    """The plan's pending proposals, run in a background thread.

    Start it with `start()`, read children with `settled()` as they are committed, and
    call `finish()` at the end (it re-raises what stopped the thread, e.g. a fatal LLM
    error). `stop()` starts no more proposals; the ones in flight still settle.
    """

    def __init__(self, evo: Evolution, plan: Plan, current: Generation, provider: Provider):
        self.evo, self.plan, self.current, self.provider = evo, plan, current, provider
        self.pending = [s for s in plan.specs if not s.rejected and not evo.commit_of(s.id)]
        self.finished_at: float | None = None  # time.monotonic() when the last one settled
        self._queue: queue.SimpleQueue[Settled | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._client: Client | None = None
        self._seed: tuple[str, dict[str, float]] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gitevo-proposals", daemon=True)

    def start(self) -> None:
        if not self.pending:
            self.finished_at = time.monotonic()
            self._queue.put(_DONE)
            return
        # read here, in the caller's thread, where evo.store belongs; a config error raises
        self._client = Client(self.evo.config.llm, self.provider)
        self._client.carry_over(spent_so_far(self.evo, self.plan, self.current))
        seed = self.evo.commit_of("g000-000")
        self._seed = seed, self.evo.evaluation(seed).objectives
        self._thread.start()

    def settled(self) -> Iterator[Settled]:
        """Each proposal as it settles: (id, validated) for a child, (id, None) for a refusal.
        Ends when all have settled, or when the thread stopped on an error."""
        while (item := self._queue.get()) is not _DONE:
            yield item

    def stop(self) -> None:
        self._stopping.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def wait(self) -> None:
        """Until the proposals in flight have settled (after `stop`) or all have."""
        if self._thread.ident is not None:  # started
            self._thread.join()

    def finish(self) -> None:
        """Wait for the thread and raise what stopped it, if anything did."""
        self.wait()
        if self._error is not None:
            raise self._error

    # ---- the background thread -----------------------------------------------------------

    def _run(self) -> None:
        client = self._client
        try:
            # a Store of its own: pygit2 repositories are not shared between threads
            store = Store(self.evo.store.root)
            guide = Guide(store.root, self.evo.config, self.evo.run, client, self.evo.library,
                          *self._seed, self.evo.events)
            members = {m.id: m for m in self.current.population}
            with client, ThreadPoolExecutor(client.settings.concurrency) as pool:
                self._pool = pool
                if self._stopping.is_set():
                    return
                futures = {pool.submit(self._propose, guide, s, members): s
                           for s in self.pending}
                try:
                    self._settle_as_done(store, futures)
                except BaseException:
                    # a failure to keep children: start no more, let those in flight end
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        except BaseException as exc:  # handed to the caller by finish()
            self._error = exc
        finally:
            self.finished_at = time.monotonic()
            self._queue.put(_DONE)

    def _propose(self, guide: Guide, spec: Spec, members: dict[str, Member]) -> Outcome:
        """One proposal in a pool thread, unless proposing has stopped: then it settles as
        cancelled. A fatal error stops it at once, here, so that the thread that met it
        does not go on to its next proposal before anyone has read the error."""
        if self._stopping.is_set():
            raise CancelledError
        try:
            return guide.propose(spec, self.plan.generation, members)
        except LLMError as exc:
            if exc.kind in FATAL:
                self._stopping.set()
            raise

    def _settle_as_done(self, store: Store, futures: dict[Future, Spec]) -> None:
        """Settle proposals in the groups they finish in: one group, one notes commit.

        After a fatal error no proposal starts (see _propose), but the ones in flight still
        settle and their children are kept (the rerun must not pay for them again); then
        the error is raised.
        """
        waiting = set(futures)
        fatal: BaseException | None = None
        while waiting:
            done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
            kept: list[tuple[Spec, Outcome]] = []
            for future in done:
                try:
                    outcome = self._outcome(futures[future], future)
                except Exception as exc:  # noqa: BLE001 - raised once the rest settled
                    fatal = fatal or exc
                    continue
                if outcome is not None:
                    kept.append((futures[future], outcome))
            self._keep(store, kept)
        if fatal is not None:
            raise fatal

    def _outcome(self, spec: Spec, future: Future) -> Outcome | None:
        """The child to keep, or None after recording why there is none."""
        try:
            outcome: Outcome = future.result()
        except CancelledError:
            return None  # stopped before it started: the rerun proposes it
        except BudgetExceeded as exc:
            self.evo.budget_exhausted = True
            # Budget words its message as a refusal reason: "budget: 0 of max_tokens ..."
            spec.rejected, spec.turns = exc.message, exc.turns
        except LLMError as exc:
            spec.turns = exc.turns
            if exc.kind in FATAL:
                self.plan.save(self.evo.plan_path)
                from gitevo.evolution import EvolutionError

                raise EvolutionError(f"{spec.id}: {exc.message}") from None
            spec.rejected = f"llm-{exc.kind}: {exc.message}"
        else:
            if outcome.commit is not None:
                return outcome
            spec.rejected, spec.turns = outcome.reason, outcome.provenance.get("turns", [])
        self.plan.save(self.evo.plan_path)
        self.evo.events.emit("rejected", id=spec.id, operator=spec.operator,
                             reason=spec.rejected.splitlines()[0])
        self._queue.put((spec.id, None))
        return None

    def _keep(self, store: Store, kept: list[tuple[Spec, Outcome]]) -> None:
        """Provenance first, branches second: a branch never exists without its conversation.
        Whether a child passed its checks when proposed is in its note (its last turn has
        no error), so the plan need not be saved for it."""
        if not kept:
            return
        ids = ", ".join(spec.id for spec, _ in kept)
        store.write_notes(llm_notes_ref(self.evo.run),
                          {o.commit: _provenance(o) for _, o in kept},
                          f"gitevo: provenance of {ids}")
        store.update_refs([(individual_ref(self.evo.run, s.id), o.commit, None)
                           for s, o in kept],
                          f"gitevo: generation {self.plan.generation} offspring {ids}")
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


def provider_for(config: Config) -> Provider:
    """The configured LLM provider; a missing key or server is an EvolutionError."""
    from gitevo.evolution import EvolutionError

    try:
        return make_provider(config.llm)
    except LLMError as exc:
        raise EvolutionError(exc.message) from None


def spent_so_far(evo: Evolution, plan: Plan, current: Generation) -> Usage:
    """The run's LLM usage before this process: the ledger's total plus this generation's."""
    total = Usage(**current.stats.get("llm_total", {}))
    return total + generation_usage(evo, plan)


def generation_usage(evo: Evolution, plan: Plan) -> Usage:
    """Usage of this generation's proposals: children's provenance notes and refusals."""
    total = Usage()
    for turn in _turns(evo, plan):
        total = total + Usage(**turn.get("usage", {}))
    return total


def generation_calls(evo: Evolution, plan: Plan) -> dict[str, int]:
    """This generation's LLM calls: answered (one per recorded turn) and failed outright."""
    failed = sum(1 for s in plan.specs if (s.rejected or "").startswith("llm-"))
    return {"ok": sum(1 for _ in _turns(evo, plan)), "failed": failed}


def _turns(evo: Evolution, plan: Plan) -> Iterator[dict]:
    """Every recorded turn of this generation: in children's provenance notes, in refusals."""
    for spec in plan.specs:
        commit = evo.commit_of(spec.id)
        note = evo.store.read_note(llm_notes_ref(evo.run), commit) if commit else None
        record = json.loads(note) if note else {"turns": spec.turns}
        yield from record.get("turns", [])
