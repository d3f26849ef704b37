"""Steps 2-3 with an LLM: run the planned proposals concurrently and keep what comes back.

Each finished child is written as soon as it arrives (provenance note first, then its
branch), and each refusal is saved in the plan with its conversation, so a killed run
never pays twice for an answer it already has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict
from typing import TYPE_CHECKING

from gitevo.gitstore import individual_ref, llm_notes_ref
from gitevo.guided import Guide, Outcome
from gitevo.ledger import Generation
from gitevo.llm import BudgetExceeded, Client, LLMError, Usage, make_provider
from gitevo.plan import Plan, Spec

if TYPE_CHECKING:
    from gitevo.evolution import Evolution

# errors that no other proposal would escape either: stop and let the user fix them
FATAL = ("auth", "missing-key", "unreachable")


def produce_guided(evo: Evolution, plan: Plan, current: Generation) -> None:
    pending = [s for s in plan.specs if not s.rejected and not evo.commit_of(s.id)]
    if not pending:
        return
    client = _client(evo, plan, current)
    seed = evo.commit_of("g000-000")
    guide = Guide(evo.store.root, evo.config, evo.run, client, evo.library, seed,
                  evo.evaluation(seed).objectives, evo.events)
    members = {m.id: m for m in current.population}
    with client, ThreadPoolExecutor(client.settings.concurrency) as pool:
        futures = {pool.submit(guide.propose, s, plan.generation, members): s for s in pending}
        try:
            for future in as_completed(futures):
                _settle(evo, plan, futures[future], future)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # keep what is in flight, start no more
            raise


def _client(evo: Evolution, plan: Plan, current: Generation) -> Client:
    from gitevo.evolution import EvolutionError

    try:
        client = Client(evo.config.llm, make_provider(evo.config.llm))
    except LLMError as exc:
        raise EvolutionError(exc.message) from None
    client.carry_over(spent_so_far(evo, plan, current))
    return client


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


def _settle(evo: Evolution, plan: Plan, spec: Spec, future: Future) -> None:
    try:
        outcome: Outcome = future.result()
    except BudgetExceeded as exc:
        evo.budget_exhausted = True
        spec.rejected, spec.turns = f"budget: {exc.message}", exc.turns
    except LLMError as exc:
        spec.turns = exc.turns
        if exc.kind in FATAL:
            plan.save(evo.plan_path)
            from gitevo.evolution import EvolutionError

            raise EvolutionError(f"{spec.id}: {exc.message}") from None
        spec.rejected = f"llm-{exc.kind}: {exc.message}"
    else:
        if outcome.commit is not None:
            _keep(evo, plan, spec, outcome)
            return
        spec.rejected, spec.turns = outcome.reason, outcome.provenance.get("turns", [])
    plan.save(evo.plan_path)
    evo.events.emit("rejected", id=spec.id, operator=spec.operator,
                    reason=spec.rejected.splitlines()[0])


def _keep(evo: Evolution, plan: Plan, spec: Spec, outcome: Outcome) -> None:
    """Provenance first, branch second: a branch never exists without its conversation."""
    record = {**outcome.provenance, "usage": asdict(outcome.usage)}
    evo.store.write_notes(llm_notes_ref(evo.run),
                          {outcome.commit: json.dumps(record, indent=2) + "\n"},
                          f"gitevo: provenance of {spec.id}")
    evo.store.update_refs([(individual_ref(evo.run, spec.id), outcome.commit, None)],
                          f"gitevo: generation {plan.generation} offspring {spec.id}")
    # only a child whose last turn passed the checks may skip them at evaluation (lost in a
    # crash before the save, the checks just run again)
    spec.validated = outcome.validated
    plan.save(evo.plan_path)
    evo.events.emit("committed", id=spec.id, commit=outcome.commit, operator=spec.operator,
                    template=spec.template, turns=len(outcome.provenance.get("turns", [])))
