"""One generation as a pipeline of resumable steps: plan, propose+apply, evaluate, select, record.

Each step looks at the refs and notes to see what is already done, so running the
same command again after a crash finishes the generation without redoing work.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from gitevo.config import Config
from gitevo.core.events import Events, summary
from gitevo.execution.executors import Executor, make_executor
from gitevo.execution.job import Job, make_job
from gitevo.execution.sandbox import kill_orphans
from gitevo.llm import Usage
from gitevo.pipeline import arms, cascade, notebook, selection
from gitevo.pipeline.cascade import Stage
from gitevo.pipeline.errors import EvolutionError
from gitevo.pipeline.ladder import Ladder, Steps
from gitevo.pipeline.notewriter import NoteWriter, note_text
from gitevo.pipeline.overrun import marked
from gitevo.pipeline.plan import SEED_ID, Plan, check_genes, make_plan, no_seed, plan_path
from gitevo.pipeline.prepare import prepare_seed
from gitevo.pipeline.producer import (
    Child,
    Proposals,
    ProposerProcess,
    generation_calls,
    generation_usage,
    spec_turns,
    start_proposer,
    validated_when_proposed,
)
from gitevo.pipeline.timesplit import Timeline
from gitevo.store import hints, individuals, ledger
from gitevo.store.fitness import VALID, Evaluation
from gitevo.store.gitstore import Store, individual_ref, notes_ref, promoted_ref
from gitevo.store.ledger import Generation, Member
from gitevo.variation import evidence, operators, task
from gitevo.variation.evidence import Evidence
from gitevo.variation.operators import imports_like_parent
from gitevo.variation.patch import PatchError
from gitevo.variation.prompts import PromptLibrary
from gitevo.variation.spec import OFFLINE, Spec


class Evolution:
    def __init__(self, store: Store, config: Config, run: str = "main",
                 events: Events | None = None):
        self.store, self.config, self.run = store, config, run
        self.events = events or Events()
        self.timeline = Timeline()  # this process's share of each generation's wall time
        self.events.subscribe(self.timeline)
        self.state = store.state_dir / "runs" / run
        self.plan_path = plan_path(store, run)
        self.pid_dir = self.state / "running"
        guided = config.llm.provider != "offline"
        try:  # a bad prompt template or task file stops the run before it starts
            self.library = PromptLibrary.for_config(store.root, config) if guided else None
            if guided:
                task.check(store.root, config)
        except ValueError as exc:
            raise EvolutionError(str(exc)) from None
        self._task: str | None = None  # the task text, rendered once per process
        self.budget_exhausted = False
        self._prepared = False  # [fitness] prepare ran in this process
        self.stages = cascade.stages(config, run)  # screening rungs, then the full evaluation
        self._cascade_stats: list[dict] = []

    # ---- reading state from refs and notes ---------------------------------------------------

    def commit_of(self, ident: str) -> str | None:
        return self.store.resolve_ref(individual_ref(self.run, ident))

    def evaluation(self, commit: str) -> Evaluation | None:
        return _read_note(self.store, notes_ref(self.run), commit)

    def current(self) -> Generation | None:
        return ledger.read(self.store, self.run)

    def evidence(self, generation: int) -> Evidence:
        """What the prompts of `generation` show of the run before it."""
        return evidence.gather(self.store, self.config, self.run, generation)

    def task_text(self) -> str:
        """The task file filled from the config (its recipe command runs once)."""
        if self._task is None:
            try:
                self._task = task.render(self.store, self.config, self.commit_of(SEED_ID))
            except task.TaskError as exc:
                raise EvolutionError(str(exc)) from None
        return self._task

    # ---- entry points ------------------------------------------------------------------------

    def seed(self, commit: str | None = None) -> Generation:
        """Record the seed as g000-000, evaluate it and write generation 0 (idempotent)."""
        with self.store.lock():
            self.recover()
            return self._ensure_seed(commit)

    def generation(self, n: int | None = None) -> Generation:
        """Run (or finish) the next generation and return its ledger entry."""
        with self.store.lock():
            self.recover()
            current = self._ensure_seed(None)
            # a missing key or command stops here, before the plan is written
            proposer = start_proposer(self.config) if self.library is not None else None
            try:
                self._prepare()
                if self.library is not None:
                    self.task_text()  # a task file that cannot be used stops it before the plan
                self.timeline.restart()
                plan = self._plan(current, n or self.config.evolution.offspring)
                started = time.monotonic()
                if proposer is not None:
                    produced = self._produce_and_evaluate(plan, current, proposer)
                else:
                    self._produce(plan, current)
                    produced = time.monotonic()
                    todo = [(ident, False) for ident in self._unevaluated(
                        [s.id for s in plan.specs if not s.rejected], self.stages[0])]
                    if todo:
                        self._evaluate_first(self._reusing(todo), len(todo), plan)
                self._cascade(plan)
            finally:
                if proposer is not None:  # whatever stopped the generation
                    proposer.close()
            evaluated = time.monotonic()
            result = self._select(plan, current, {"produce": produced - started,
                                                  "evaluate": evaluated - produced})
            self.plan_path.unlink(missing_ok=True)
            return result

    def recover(self) -> None:
        """Clean up after a process that died mid-generation: orphans, exported trees."""
        killed = kill_orphans(self.pid_dir)
        if killed:
            self.events.emit("notice", message=f"stopped {killed} fitness process(es) left by "
                                                "an interrupted run")
        for stale in self.store.stale_ref_locks(self.run):
            self.events.emit("notice", message=f"removed {stale}, left by an interrupted run")
        for root in (self.store.worktrees(self.run), self.store.state_dir / "proposals" / self.run):
            for stale in root.iterdir() if root.exists() else ():
                self.store.remove_dir(stale)

    # ---- step 0: the seed ----------------------------------------------------------------------

    def _prepare(self) -> None:
        """[fitness] prepare on the seed (trusted, with the network), once per process."""
        if not self._prepared:
            prepare_seed(self.store, self.config, self.run)
            self._prepared = True

    def _ensure_seed(self, commit: str | None) -> Generation:
        seed = self.commit_of(SEED_ID)
        if seed is None and commit is None:
            # gitevo.toml is here (the config loaded), so init ran, for this run or another
            raise no_seed(self.store.root, self.run)
        # a typo in [genes] stops every entry point here, before any evaluation or plan
        check_genes(self.store, self.config, commit or seed)
        current = self.current()
        if current is not None:
            return current
        if commit is None:  # `generation` or `run` after `init --no-eval`
            self.events.emit("notice", message=f"seed {SEED_ID} ({seed[:10]}) is recorded but "
                             "not evaluated yet: evaluating it first (`gitevo seed` evaluates "
                             "it alone)")
        self.timeline.restart()
        if commit is not None and commit != seed:
            # before generation 0 is recorded the seed may still be replaced (a fixed seed)
            self.store.update_refs([(individual_ref(self.run, SEED_ID), commit, seed)],
                                   "gitevo: record seed")
            seed = commit
        self._prepare()
        for stage in self.stages:  # at each rung too: its children's margin is held to it
            self._evaluate_all([SEED_ID], stage)
        result = self.evaluation(seed)
        if not result.ok:
            raise EvolutionError(f"seed {SEED_ID} ({seed[:10]}) is {result.status}: "
                                 f"{_first_line(result.error)} (fix it, commit, then run "
                                 "`gitevo seed`)")
        member = self._member(SEED_ID, seed, result)
        reference = self._reference(member)
        gen = Generation(0, [member], [member], reference,
                         stats=self._stats([member], None, [], reference, {}),
                         offspring=[{"id": SEED_ID, "commit": seed, "operator": "seed",
                                     "status": "ok", "objectives": result.objectives}],
                         config=self._config_text())
        ledger.record(self.store, self.run, gen, seed, self._ledger_message(gen, None))
        self.events.emit("summary", **summary(0, gen.stats))
        return gen

    def _reference(self, seed: Member) -> list[float]:
        values = [seed.objectives[o.name] for o in self.config.objectives]
        default = selection.default_reference(values, self.config.senses)
        return [o.reference if o.reference is not None else d
                for o, d in zip(self.config.objectives, default, strict=True)]

    # ---- step 1: plan --------------------------------------------------------------------------

    def _plan(self, current: Generation, n: int) -> Plan:
        number = current.generation + 1
        plan = Plan.load(self.plan_path)
        resumed = plan is not None and plan.generation == number
        if not resumed:
            plan = make_plan(self.store, self.config, number, current.population, n,
                             self.commit_of(SEED_ID), self.library, self._allocation(),
                             self._hints(number))
            plan.save(self.plan_path)
        pending = [s for s in plan.specs if not s.rejected and not self.commit_of(s.id)]
        self.events.emit("plan", generation=number, offspring=len(plan.specs),
                         to_propose=len(pending), resumed=resumed,
                         operators=dict(Counter(s.operator for s in plan.specs)))
        return plan

    def _hints(self, generation: int) -> list[hints.Hint]:
        """The person's hints (all; the plan keeps the live ones). The offline operators
        have no prompt to show them in, and say so."""
        found = hints.load(self.store, self.run)
        if self.library is None and any(h.live(generation) for h in found):
            self.events.emit("notice", message="hints are shown to an LLM; the offline "
                                               "operators ignore them")
        return found

    def _allocation(self) -> arms.Allocation | None:
        """What the finished generations taught about models, directions and personas."""
        if self.library is None:
            return None
        return arms.allocation(self.config, self.library.directions, self.library.personas,
                               ledger.history(self.store, self.run))

    # ---- steps 2-4 with an LLM: propose, apply, commit, and evaluate as children come ---------

    def _produce_and_evaluate(self, plan: Plan, current: Generation,
                              proposer: ProposerProcess) -> float:
        """Evaluate each child as soon as it is committed, while other LLM calls are still in
        flight; returns when (time.monotonic()) the last proposal settled."""
        proposals = Proposals(self, plan, current, proposer)
        # children an interrupted process committed but did not evaluate go first
        first = self.stages[0]
        ready = [(ident, validated_when_proposed(self.store, self.run, self.commit_of(ident)))
                 for ident in self._unevaluated([s.id for s in plan.specs if not s.rejected],
                                                first)]
        proposals.start()
        try:
            self._evaluate_first(self._reusing(itertools.chain(ready, proposals.settled())),
                                 len(ready) + len(proposals.pending), plan)
        except BaseException:
            proposals.stop()  # start no more; the ones in flight are kept
            proposals.wait()
            raise
        proposals.finish()  # raises what stopped the proposals (a fatal LLM error)
        return proposals.finished_at or time.monotonic()

    # ---- steps 2-3 offline: propose, apply, commit ---------------------------------------------

    def _produce(self, plan: Plan, current: Generation) -> None:
        commits = {m.id: m.commit for m in current.population}
        forms = operators.Forms(self.store, self.config.genes.files) \
            if self.config.evolution.dedupe else None
        others = dict(commits)  # the population, then each sibling made before
        created = []
        for spec in plan.specs:
            if spec.rejected or self.commit_of(spec.id):
                continue
            parents = [commits[p] for p in spec.parents]
            try:
                child = operators.build_offline(self.store, self.config, self.run,
                                                plan.generation, spec, parents, forms, others)
            except PatchError as exc:
                spec.rejected = f"{exc.reason}: {exc}"
                self.events.emit("rejected", id=spec.id, operator=spec.operator,
                                 reason=spec.rejected.splitlines()[0])
                continue
            created.append((spec, child))
            others[spec.id] = child
        plan.save(self.plan_path)  # rejections first: they are cheap to redo, refs are not
        if created:
            self.store.update_refs([(individual_ref(self.run, spec.id), child, None)
                                    for spec, child in created],
                                   f"gitevo: generation {plan.generation} offspring")
        for spec, child in created:
            self.events.emit("committed", id=spec.id, commit=child, operator=spec.operator,
                             template=spec.template, turns=0)

    # ---- step 4: evaluate ----------------------------------------------------------------------

    def _unevaluated(self, idents: list[str], stage: Stage) -> list[str]:
        """The ones committed and without a note at `stage`, nor a fitness note."""
        return [ident for ident in idents
                if (commit := self.commit_of(ident)) and self.evaluation(commit) is None
                and (stage.final or self._note(stage, commit) is None)]

    def _reusing(self, children: Iterable[Child]) -> Iterator[Child]:
        """The children as they come, but one whose tree an individual evaluated before
        had is not trained again: it gets that evaluation as its note (marked reused) and
        goes on as (id, None), one evaluation fewer to wait for. Runs in whichever thread
        takes the children, so it opens a Store of its own."""
        if not self.config.evolution.dedupe:
            yield from children
            return
        store, known = None, None
        for ident, validated in children:
            if validated is not None:
                if store is None:
                    store = Store(self.store.root)
                    known = _evaluated_trees(store, self.run)
                commit = store.resolve_ref(individual_ref(self.run, ident))
                match = known.get(store.tree_id(commit))
                if match is not None:
                    self._reuse(store, ident, commit, *match)
                    validated = None
            yield ident, validated

    def _reuse(self, store: Store, ident: str, commit: str, match: str, matched: str,
               note: Evaluation) -> None:
        reused = dataclasses.replace(note, seconds=0.0, timings={},
                                     reused={"id": match, "commit": matched})
        store.write_notes(notes_ref(self.run), {commit: note_text(reused)},
                          f"gitevo: {ident} reuses the evaluation of {match}")
        self.events.emit("notice", message=f"{ident} has the tree of {match}: its evaluation "
                                           f"({note.status}) is reused, not run again")

    def _note(self, stage: Stage, commit: str) -> Evaluation | None:
        return _read_note(self.store, stage.ref, commit)

    def _evaluate_all(self, idents: list[str], stage: Stage) -> None:
        """Evaluate at `stage` each individual that has no note there yet."""
        todo = [(ident, False) for ident in self._unevaluated(idents, stage)]
        if todo:
            self._evaluate(todo, len(todo), stage)

    def _evaluate_first(self, children: Iterable[Child], count: int, plan: Plan) -> None:
        """Evaluate a generation's children at the first stage as they come; under an
        asynchronous cascade with workers to spare, every stage after it too, each child
        promoted as soon as its rung can place it."""
        executor = make_executor(self.config, self.store)
        if (len(self.stages) == 1 or self.config.fitness.promotion == "sync"
                or executor.workers < 2):
            return self._evaluate(children, count, self.stages[0], executor)
        finals = NoteWriter(self.store.root, self.stages[-1].ref, self._finished)

        def write(stage: Stage, job: Job, result: Evaluation) -> None:
            if stage.final:
                finals.put(job, self._final(job, result))
            else:
                self._write_rung(stage, job, result)

        steps = Steps(jobs=lambda kids, stage: self._jobs(kids, 0, executor.workers, stage),
                      decide=lambda stage, remaining: self._decide(plan, stage, remaining),
                      write=write, started=self._started)
        try:
            Ladder(self.stages, executor, self.events, steps).run(children, count,
                                                                   self._waiting(plan))
        finally:
            finals.close()

    def _evaluate(self, children: Iterable[Child], count: int, stage: Stage,
                  executor: Executor | None = None) -> None:
        """Evaluate children at `stage` as they come: (id, validated) where validated
        means it passed the parse/import/check steps when proposed (same commit, same
        tree), or (id, None) for a refused proposal, which leaves one evaluation fewer
        to wait for."""
        executor = executor or make_executor(self.config, self.store)
        self.events.emit("evaluating", count=count, workers=executor.workers)
        jobs = self._jobs(children, count, executor.workers, stage)
        notes = NoteWriter(self.store.root, stage.ref, self._finished)
        try:
            for job, result in executor.run(jobs, on_start=self._started):
                notes.put(job, self._final(job, result) if stage.final else result)
        finally:
            notes.close()  # what is queued still gets written, even on the way out

    def _final(self, job: Job, result: Evaluation) -> Evaluation:
        """The full evaluation's note: the rungs it passed, and suspect if it trained far
        longer than its parents did."""
        result = dataclasses.replace(result, rungs=self._history(job.commit, self.stages[-1]))
        if not result.ok:
            return result
        parents = [self.evaluation(c) for c in self.store.parents(job.commit)]
        return marked(result, [p for p in parents if p is not None],
                      self.config.fitness.budget)

    # ---- the cascade: promote from each screening rung to the next -------------------------------

    def _cascade(self, plan: Plan) -> None:
        """Take every screening rung's decision, once all its results are in, and run the
        evaluations it asks for; children that stop get their fitness note here.
        Idempotent: a rerun reads the same notes and honours the recorded promotions
        (after an asynchronous cascade, it only writes the screened children's notes)."""
        self._cascade_stats = []
        for stage, after in zip(self.stages, self.stages[1:], strict=False):
            self._decide(plan, stage, remaining=0)
            reached = self._reached(plan, stage)
            results = self._results_at(stage, reached)
            records = self._promoted(stage, reached)
            chosen = [i for i in results if i in records]
            self._stop_at(stage, results, chosen, self._parents_at(stage, results))
            self._evaluate_all(chosen, after)
            self._cascade_stats.append(self._rung_stats(stage, after, results, records))

    def _reached(self, plan: Plan, stage: Stage) -> list[str]:
        """The children that reach `stage`: every committed one for the first, the ones
        promoted from the rung before for the others."""
        children = [s.id for s in plan.specs if not s.rejected and self.commit_of(s.id)]
        if stage.number == 1:
            return children
        return list(self._promoted(self.stages[stage.number - 2], children))

    def _results_at(self, stage: Stage, idents: list[str]) -> dict[str, Evaluation]:
        return {i: r for i in idents if (r := self._note(stage, self.commit_of(i))) is not None}

    def _decide(self, plan: Plan, stage: Stage, remaining: int | None) -> list[str]:
        """Promote from screening `stage` whoever is due (`cascade.due`) with `remaining`
        children still to come in there, recording each promotion before anyone acts on
        it; returns the ids promoted now."""
        reached = self._reached(plan, stage)
        results = self._results_at(stage, reached)
        seed = self.config.evolution.seed * 100_003 + plan.generation * 101 + stage.number
        due = cascade.due(results, remaining, stage.rung, self.config, seed,
                          self._parents_at(stage, results),
                          set(self._promoted(stage, reached)), self.config.fitness.promotion)
        # a child whose fitness note is written is settled: no rule may reopen it
        new = [i for i in due if self.evaluation(self.commit_of(i)) is None]
        if new:
            scored = sorted(i for i, r in results.items() if r.ok)
            early = remaining != 0
            record = json.dumps({"rung": stage.number, "early": early, "among": scored,
                                 "remaining": remaining}, sort_keys=True) + "\n"
            self.store.write_notes(promoted_ref(self.run, stage.number),
                                   {self.commit_of(i): record for i in new},
                                   f"gitevo: rung {stage.number} promotes {', '.join(new)}")
            for ident in new:
                self.events.emit("promoted", id=ident, rung=stage.number, early=early)
        return new

    def _promoted(self, stage: Stage, idents: list[str]) -> dict[str, dict]:
        """The recorded promotions from `stage` among `idents`."""
        ref = promoted_ref(self.run, stage.number)
        return {i: json.loads(text) for i in idents
                if (text := self.store.read_note(ref, self.commit_of(i))) is not None}

    def _waiting(self, plan: Plan) -> list[tuple[str, Stage]]:
        """Children promoted by an earlier process and not yet evaluated where they go."""
        return [(ident, after) for stage, after in zip(self.stages, self.stages[1:],
                                                       strict=False)
                for ident in self._unevaluated(self._reached(plan, after), after)]

    def _write_rung(self, stage: Stage, job: Job, result: Evaluation) -> None:
        """A screening result, written before any decision reads it."""
        self.store.write_notes(stage.ref, {job.commit: note_text(result)},
                               f"gitevo: rung {stage.number} result of {job.ident}")
        self.store.remove_dir(job.workdir)
        self._finished(job, result)

    def _parents_at(self, stage: Stage, results: dict[str, Evaluation]
                    ) -> dict[str, Evaluation]:
        """Each child's first parent's result at `stage`, where it has one."""
        return {ident: note for ident in results
                if (note := _parent_note(self.store, self.commit_of(ident), stage)) is not None}

    def _stop_at(self, stage: Stage, results: dict[str, Evaluation], chosen: list[str],
                 parents: dict[str, Evaluation]) -> None:
        scored = sum(r.ok for r in results.values())
        notes = {}
        for ident, result in results.items():
            commit = self.commit_of(ident)
            if ident in chosen or self.evaluation(commit) is not None:
                continue
            history = self._history(commit, self.stages[stage.number])
            held = cascade.behind(result, parents.get(ident), stage.rung, self.config)
            final = cascade.stopped(stage, history, result, len(chosen), scored, held)
            notes[commit] = note_text(final)
            self.events.emit("screened", id=ident, status=final.status, rung=stage.number)
        if notes:
            self.store.write_notes(notes_ref(self.run), notes,
                                   f"gitevo: rung {stage.number} screening")

    def _history(self, commit: str, before: Stage) -> list[dict]:
        """The screening rungs `commit` reached before `before`, as its note lists them."""
        return [cascade.summary(s, n) for s in self.stages[:before.number - 1]
                if (n := self._note(s, commit)) is not None]

    def _rung_stats(self, stage: Stage, after: Stage, results: dict[str, Evaluation],
                    records: dict[str, dict]) -> dict:
        chosen = [i for i in results if i in records]
        first = self.config.objective_names[0]
        pairs = [(results[i].objectives[first], n.objectives[first]) for i in chosen
                 if (n := self._note(after, self.commit_of(i))) is not None and n.ok
                 and results[i].ok]
        return {"rung": stage.number, "fidelity": stage.fidelity, "vars": stage.rung.vars,
                "evaluated": len(results), "scored": sum(r.ok for r in results.values()),
                "promoted": len(chosen), "screened": len(results) - len(chosen),
                "promoted_early": sum(r["early"] for r in records.values()),
                "training_seconds": round(sum(cascade.training_seconds(r)
                                              for r in results.values()), 3),
                "spearman_next": cascade.spearman([a for a, _ in pairs], [b for _, b in pairs])}

    def _finished(self, job: Job, result: Evaluation) -> None:
        """Called once the note is written: only then is the evaluation done."""
        self.events.emit("evaluation_finished", id=job.ident, status=result.status,
                         objectives=result.objectives, seconds=result.seconds,
                         timings=result.timings, error=_first_line(result.error) or None)

    def _jobs(self, children: Iterable[Child], count: int, workers: int,
              stage: Stage) -> Iterator[Job]:
        """Each child's job (its commit on it), its tree exported, as the child comes. The
        executor may pull this from another thread, hence its own Store."""
        store = Store(self.store.root)
        for ident, validated in children:
            if validated is None:
                count -= 1
                self.events.emit("evaluating", count=count, workers=workers)
                continue
            commit = store.resolve_ref(individual_ref(self.run, ident))
            if commit is None or store.read_note(stage.ref, commit) is not None:
                continue
            workdir = store.worktree(self.run, ident)
            # a child validated in this process left its checked tree there; one resumed
            # after a crash finds nothing (recovery cleared the folder) and is exported
            if not (validated and workdir.is_dir()):
                store.remove_dir(workdir)
                store.export_tree(commit, workdir)
            proven = not validated and imports_like_parent(store, self.config.genes.files,
                                                           self.run, commit)
            yield dataclasses.replace(self._job(ident, workdir, stage), validated=validated,
                                      commit=commit, import_proven=proven,
                                      reference=self._curve_to_beat(store, commit, stage))

    def _curve_to_beat(self, store: Store, commit: str, stage: Stage) -> tuple[dict, ...]:
        """The learning curve early stopping holds `commit` to: its first parent's, at this
        stage and fidelity (none where the parent has none there)."""
        if self.config.fitness.early_stop is None:
            return ()
        note = _parent_note(store, commit, stage)
        return tuple(note.curve) if note is not None and note.fidelity == stage.fidelity else ()

    def _started(self, job: Job) -> None:
        self.events.emit("evaluation_started", id=job.ident)

    def _job(self, ident: str, workdir: Path, stage: Stage) -> Job:
        job = make_job(self.config, ident, workdir, stage.fidelity, pid_dir=self.pid_dir)
        needed = tuple(dict.fromkeys(job.objectives + tuple(
            c.metric for c in self.config.evolution.constraints)))
        return Job(**{**job.__dict__, "objectives": needed, "variables": stage.variables})

    def evaluate_alone(self, ident: str, commit: str) -> Evaluation:
        """One commit evaluated at the run's full fidelity in a tree of its own, with no
        note written (`gitevo adopt` writes it with the ref, in one transaction)."""
        self._prepare()
        stage = self.stages[-1]
        tree = self.store.worktree(self.run, ident)
        self.store.remove_dir(tree)
        self.store.export_tree(commit, tree)
        try:
            executor = make_executor(self.config, self.store)
            [(_, result)] = list(executor.run([self._job(ident, tree, stage)]))
        finally:
            self.store.remove_dir(tree)
        return result

    # ---- steps 5-6: select and record ----------------------------------------------------------

    def _select(self, plan: Plan, current: Generation, seconds: dict[str, float]) -> Generation:
        offspring, rows = [], []
        found = [self._offspring_row(spec) for spec in plan.specs]
        for row, member in found + self._adopted(plan.generation):
            rows.append(row)
            if member is not None:
                offspring.append(member)
        pool = current.population + offspring
        seed = self.config.evolution.seed * 100_003 + plan.generation
        survivors = [pool[i] for i in selection.environmental_selection(
            self._values(pool), self.config.senses, [m.violation for m in pool],
            self.config.evolution.population, seed)]
        hof_pool = _unique(current.hall_of_fame + offspring)
        hall = [hof_pool[i] for i in selection.hall_of_fame(
            self._values(hof_pool), self.config.senses, [m.violation for m in hof_pool],
            self.config.evolution.hall_of_fame, seed)]
        usage, calls = ((generation_usage(self, plan), generation_calls(self, plan))
                        if self.library else (Usage(), None))
        entry = self._notebook(Generation(plan.generation, survivors, hall, current.reference,
                                          offspring=rows), current, usage)
        if entry is not None:
            usage, calls = usage + entry.usage, {**calls, "ok": calls["ok"] + entry.calls}
        stats = self._stats(survivors, current, rows, current.reference, seconds, usage, calls)
        if self._cascade_stats:
            stats["cascade"] = self._cascade_stats
        gen = Generation(plan.generation, survivors, hall, current.reference, stats, rows,
                         self._config_text(), notebook=entry.text if entry else None)
        ledger.record(self.store, self.run, gen, self._champion(hall).commit,
                      self._ledger_message(gen, current),
                      provenance=entry.provenance if entry else None)
        self.events.emit("summary", **summary(gen.generation, gen.stats))
        return gen

    def _notebook(self, gen: Generation, current: Generation,
                  usage: Usage) -> notebook.Entry | None:
        """The run notebook after `gen`, when one is kept (None: it is not)."""
        if self.library is None or not self.config.prompt.notebook:
            return None
        spent = Usage(**current.stats.get("llm_total", {})) + usage
        return notebook.update(self.store, self.config, self.run, self.library, gen,
                               self.task_text(), spent, self.events)

    def _adopted(self, generation: int) -> list[tuple[dict, Member | None]]:
        """The commits people had adopted into this generation (`gitevo adopt`), as rows
        and members: selection takes them in like the planned children."""
        found = []
        for ident, commit in individuals.commits(self.store, self.run).items():
            if not ident.startswith(f"g{generation:03d}-h"):
                continue
            result = self.evaluation(commit)
            trailers = self.store.trailers(commit)
            row = {"id": ident, "operator": "human", "commit": commit,
                   "parents": trailers.get("Gitevo-Parents", "").split(),
                   "block": trailers.get("Gitevo-Block", ""), "template": "human",
                   "status": result.status if result else "missing",
                   "objectives": result.objectives if result else {}}
            if result is not None and result.error:
                row["error"] = _first_line(result.error)
            ok = result is not None and result.ok
            found.append((row, self._member(ident, commit, result) if ok else None))
        return found

    def _offspring_row(self, spec: Spec) -> tuple[dict, Member | None]:
        row = {"id": spec.id, "operator": spec.operator, "parents": spec.parents,
               "block": spec.block, "template": spec.template, "persona": spec.persona}
        if spec.hints:
            row["hints"] = spec.hints
        if spec.template != OFFLINE:
            # what the allocation learns from: which model, at what cost, in how many calls
            turns = spec_turns(self, spec)
            cost = sum(t.get("usage", {}).get("cost", 0.0) for t in turns)
            row.update(model=spec.model or self.config.llm.label, cost=round(cost, 6),
                       calls=len(turns))
        if spec.rejected:
            # the conversation of a refused proposal lives on only here, in the ledger
            return {**row, "status": "rejected", "error": spec.rejected,
                    "turns": spec.turns}, None
        commit = self.commit_of(spec.id)
        result = self.evaluation(commit) if commit else None
        if result is None:  # cannot happen after _evaluate; keep the ledger honest if it does
            return {**row, "commit": commit, "status": "missing"}, None
        row.update(commit=commit, status=result.status, objectives=result.objectives)
        if result.reused:
            row["reused"] = result.reused["id"]
        if result.error:
            row["error"] = _first_line(result.error)
        return row, (self._member(spec.id, commit, result) if result.ok else None)

    def _member(self, ident: str, commit: str, result: Evaluation) -> Member:
        violation = sum(c.violation(float(result.metrics[c.metric]))
                        for c in self.config.evolution.constraints)
        return Member(ident, commit, dict(result.objectives), violation)

    def _values(self, members: list[Member]) -> list[list[float]]:
        return [[m.objectives[k] for k in self.config.objective_names] for m in members]

    def _champion(self, hall: list[Member]) -> Member:
        """The best feasible individual on the first objective, later ones breaking ties."""
        signs = [1 if s == "max" else -1 for s in self.config.senses]
        feasible = [m for m in hall if m.violation == 0] or hall
        return max(feasible, key=lambda m: [s * v for s, v in zip(signs, self._values([m])[0],
                                                                   strict=True)])

    def _stats(self, population: list[Member], previous: Generation | None, rows: list[dict],
               reference: list[float], seconds: dict[str, float],
               usage: Usage | None = None, calls: dict[str, int] | None = None) -> dict:
        feasible = [m for m in population if m.violation == 0]
        best = {}
        for o in self.config.objectives:
            values = [m.objectives[o.name] for m in feasible]
            best[o.name] = (max if o.sense == "max" else min)(values) if values else None
        usage = usage or Usage()
        statuses = Counter(r["status"] for r in rows)
        rejected = Counter(r["error"].split(":")[0] for r in rows if r["status"] == "rejected")
        hypervolume = selection.hypervolume(self._values(feasible), self.config.senses,
                                            reference)
        before = previous.stats if previous else {}
        return {"best": best, "best_delta": _deltas(best, before.get("best", {})),
                "hypervolume": hypervolume,
                "hypervolume_delta": (hypervolume - before["hypervolume"]
                                      if "hypervolume" in before else None),
                "llm_calls": calls or {"ok": 0, "failed": 0}, **self.timeline.split(),
                "offspring": len(rows), "statuses": dict(statuses),
                "valid": sum(statuses[s] for s in VALID),
                "valid_rate": sum(statuses[s] for s in VALID) / len(rows) if rows else 1.0,
                "rejected": dict(rejected), "reused": sum("reused" in r for r in rows),
                "seconds": {k: round(v, 3) for k, v in
                                                       seconds.items()},
                "tokens": usage.total_tokens, "cost": usage.cost, "llm": asdict(usage),
                "llm_total": asdict(usage + Usage(**(previous.stats.get("llm_total", {})
                                                     if previous else {})))}

    def _ledger_message(self, gen: Generation, previous: Generation | None) -> str:
        parts = []
        for name, value in gen.stats["best"].items():
            before = previous.stats["best"].get(name) if previous else None
            delta = f" ({value - before:+.4g})" if value is not None and before is not None else ""
            parts.append(f"{name} {value:.6g}{delta}" if value is not None else f"{name} -")
        subject = (f"generation {gen.generation}: best " + ", ".join(parts)
                   + f"; hv {gen.stats['hypervolume']:.6g}")
        if gen.generation > 0:
            subject += f"; {gen.stats['valid']}/{gen.stats['offspring']} valid"
        return (f"{subject}\n\nGitevo-Run: {self.run}\nGitevo-Generation: {gen.generation}\n")

    def _config_text(self) -> str:
        try:
            return self.config.path.read_text()
        except OSError:
            return ""


def _evaluated_trees(store: Store, run: str) -> dict[str, tuple[str, str, Evaluation]]:
    """Tree id -> (id, commit, fitness note) of every individual of `run` evaluated so far
    (the first one, where several share a tree)."""
    notes = store.read_notes(notes_ref(run))
    found: dict[str, tuple[str, str, Evaluation]] = {}
    for ident, commit in individuals.commits(store, run).items():
        text = notes.get(commit)
        if text is not None:
            note = Evaluation.from_dict(json.loads(text))
            if note.reused is None:  # the evaluation itself, not a copy of it
                found.setdefault(store.tree_id(commit), (ident, commit, note))
    return found


def _read_note(store: Store, ref: str, commit: str) -> Evaluation | None:
    text = store.read_note(ref, commit)
    return Evaluation.from_dict(json.loads(text)) if text else None


def _parent_note(store: Store, commit: str, stage: Stage) -> Evaluation | None:
    """`commit`'s first parent's result at `stage`, if it has one there."""
    parents = store.parents(commit)
    return _read_note(store, stage.ref, parents[0]) if parents else None


def _deltas(best: dict[str, float | None],
            before: dict[str, float | None]) -> dict[str, float | None]:
    return {name: value - before[name] if value is not None and before.get(name) is not None
            else None for name, value in best.items()}


def _first_line(text: str | None) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def _unique(members: list[Member]) -> list[Member]:
    seen: dict[str, Member] = {}
    for m in members:
        seen.setdefault(m.id, m)
    return list(seen.values())
