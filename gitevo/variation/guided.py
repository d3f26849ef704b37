"""LLM-guided proposals: build the prompt, hold the conversation, keep its provenance.

One call of `Guide.propose` turns a planned child into a commit (or a refusal with a
reason): the operator's prompt goes to the LLM, the answer is extracted into a diff,
applied and validated through the same path as the offline operators, and when that
fails the exact error goes back to the LLM for up to `repair_turns` more tries. Every
turn is kept for the child's provenance note.

It runs in worker threads, so each thread opens a Store of its own (pygit2 repositories
are not shared between threads) and keeps it for the proposals it runs after.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from gitevo.config import Config
from gitevo.core.events import Events
from gitevo.execution.evaluate import check_fingerprint, checked, runs_commands
from gitevo.execution.job import Job, make_job
from gitevo.llm import BudgetExceeded, Client, LLMError, Message, Reply, Request, Usage
from gitevo.llm.ensemble import Ensemble
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import Store
from gitevo.store.hints import Hint
from gitevo.store.ledger import Member
from gitevo.variation import genome, operators, prompts, responses, sections
from gitevo.variation.evidence import Evidence
from gitevo.variation.patch import PatchError
from gitevo.variation.spec import CROSSOVER, EOT, Spec


@dataclass
class Outcome:
    commit: str | None  # the child, or None when every turn failed
    reason: str | None  # why it was refused (None for a commit)
    provenance: dict[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    validated: bool = False  # the commit passed parse, import and check on its last turn


@dataclass
class Guide:
    root: Path
    config: Config
    run: str
    llm: Ensemble | None  # the run's models; None: only building prompts (pipeline.replay)
    library: prompts.PromptLibrary
    seed: str  # the seed commit: the stable context of every prompt, EoT's baseline
    seed_objectives: dict[str, float]
    events: Events = field(default_factory=Events)
    evidence: Evidence | None = None  # what the run learned before this generation
    task: str = ""  # the task file's text, filled from the config
    # what each population member's check reported it does (id -> fingerprint)
    fingerprints: dict[str, str] = field(default_factory=dict)
    hints: list[Hint] = field(default_factory=list)  # the person's hints (spec.hints: shown)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    # this generation's children so far (id -> commit), and the lock that checks a new
    # one against them and adds it in one step
    _siblings: dict[str, str] = field(default_factory=dict, repr=False)
    _claims: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _prints: dict[str, str] = field(default_factory=dict, repr=False)  # siblings' fingerprints

    def _forms(self, store: Store) -> operators.Forms | None:
        """This thread's normal forms, when duplicates are refused."""
        if not self.config.evolution.dedupe:
            return None
        if getattr(self._local, "forms", None) is None:
            self._local.forms = operators.Forms(store, self.config.genes.files)
        return self._local.forms

    def _client(self, spec: Spec) -> Client:
        """The model the plan drew for this child."""
        return self.llm.client(spec.model)

    def _store(self) -> Store:
        """This thread's Store, opened on its first proposal."""
        if getattr(self._local, "store", None) is None:
            self._local.store = Store(self.root)
        return self._local.store

    def propose(self, spec: Spec, generation: int, members: dict[str, Member]) -> Outcome:
        store = self._store()
        parents = [members[p].commit for p in spec.parents]
        prompt, shown = self.prompt_for(store, spec, parents, members)
        request = Request(prompt.system, [Message("user", prompt.variable)], spec.temperature,
                          spec.max_tokens or self.config.llm.max_output_tokens[1],
                          stable_prefix=prompt.stable)
        client = self._client(spec)
        record = {"template": spec.template, "persona": spec.persona, "model": client.model,
                  "provider": client.name, "arm": client.settings.label,
                  "temperature": spec.temperature,
                  "max_tokens": request.max_tokens, "system": prompt.system,
                  "stable": prompt.stable, "sections": shown.as_dict(),
                  "spec": {"operator": spec.operator, "block": spec.block,
                           "parents": spec.parents, "elite": spec.elite,
                           "lesson": spec.lesson, "hints": spec.hints}, "turns": []}
        try:
            population = {m.id: m.commit for m in members.values()}
            outcome = self._converse(store, spec, generation, parents, population, prompt,
                                     request, record)
        except LLMError as exc:
            # a repair turn that failed outright still leaves the earlier turns' tokens spent
            exc.turns = record["turns"]
            raise
        record["usage"] = asdict(outcome.usage)
        outcome.provenance = record
        return outcome

    def _converse(self, store: Store, spec: Spec, generation: int, parents: list[str],
                  population: dict[str, str], prompt: prompts.Prompt, request: Request,
                  record: dict) -> Outcome:
        usage = Usage()
        turns = 1 + self.config.llm.repair_turns
        for turn_number in range(1, turns + 1):
            reply = self._call(spec, turn_number, request)
            usage = usage + reply.usage
            commit, error = self._attempt(store, spec, generation, parents, population,
                                          prompt, reply.text, turn_number)
            record["turns"].append({"user": request.messages[-1].content, "response": reply.text,
                                    "stop_reason": reply.stop_reason, "attempts": reply.attempts,
                                    "usage": asdict(reply.usage), "seconds": reply.seconds,
                                    "error": error})
            if error is None and spec.id in self._prints:
                record["turns"][-1]["fingerprint"] = self._prints[spec.id]
            if error is None or (commit is not None and turn_number == turns):
                # an invalid last try is still data: committed, then evaluated as invalid
                return Outcome(commit, None, usage=usage, validated=error is None)
            if turn_number == turns:
                return Outcome(None, error, usage=usage)
            self._siblings.pop(spec.id, None)  # its next turn replaces this try
            request = _with_repair(request, reply.text, prompts.repair(error, self.library))
        raise AssertionError("unreachable: the last turn returns")

    def _call(self, spec: Spec, turn: int, request: Request) -> Reply:
        """One LLM call, reported as an `llm_call` event whether it answered or not."""
        try:
            reply = self._client(spec).complete(request)
        except BudgetExceeded:
            raise  # nothing was sent: no call to report
        except LLMError as exc:
            self.events.emit("llm_call", id=spec.id, turn=turn, ok=False, tokens=0,
                             input_tokens=0, output_tokens=0, cost=0.0, seconds=exc.seconds,
                             attempts=exc.attempts, error=f"{exc.kind}: {exc.message}")
            raise
        used = reply.usage
        self.events.emit("llm_call", id=spec.id, turn=turn, ok=True, tokens=used.total_tokens,
                         input_tokens=used.input_tokens, output_tokens=used.output_tokens,
                         cost=used.cost, seconds=reply.seconds, attempts=reply.attempts,
                         error=None)
        return reply

    def _attempt(self, store: Store, spec: Spec, generation: int, parents: list[str],
                 population: dict[str, str], prompt: prompts.Prompt, answer: str,
                 turn: int) -> tuple[str | None, str | None]:
        """(commit, None) when the answer applies and validates; else (commit or None, error).
        An answer whose code `population` (id -> commit) or a sibling already has is
        refused as a duplicate."""
        path, name = spec.block.split("::", 1)
        source = store.read_file(parents[0], path) or ""
        try:
            found = responses.extract(answer, path=path, block_name=name, source=source)
            label = operators.prompt_label(prompt.template, prompt.persona)
            proposal = operators.Proposal(found.diff, found.summary or f"{spec.operator} "
                                          f"of {name}", found.rationale, prompt=label,
                                          model=self._client(spec).model,
                                          temperature=spec.temperature)
            with self._claims:  # two siblings with the same code: the second is refused
                commit = operators.build_child(store, self.config, self.run, generation,
                                               spec, parents, proposal, self._forms(store),
                                               {**population, **self._siblings})
                self._siblings[spec.id] = commit
        except PatchError as exc:
            return None, f"{exc.reason}: {exc}"
        failed, fingerprint = self._validate(store, spec, commit, turn)
        if failed is not None:
            return commit, failed.error or failed.status
        twin = self._twin(spec, fingerprint)
        if twin is not None:
            with self._claims:
                self._siblings.pop(spec.id, None)
            # a commit that is dropped: no ref will ever name it
            return None, (f"duplicate: {spec.id}: the change does nothing new: its check "
                          f"reports the same behaviour as {twin} (same outputs after the same "
                          "training step); make a change that alters what the code computes")
        return commit, None

    def _twin(self, spec: Spec, fingerprint: str | None) -> str | None:
        """The parent, population member or sibling that behaves exactly as this child (by
        the check's fingerprint), else None; the child's fingerprint is then a sibling's."""
        if fingerprint is None or not self.config.evolution.dedupe:
            return None
        with self._claims:
            for ident, other in {**self.fingerprints, **self._prints}.items():
                if other == fingerprint and ident != spec.id:
                    return ident
            self._prints[spec.id] = fingerprint
        return None

    def _validate(self, store: Store, spec: Spec, commit: str,
                  turn: int) -> tuple[Evaluation | None, str | None]:
        """The cheap checks (parse, import, the target's check command) on the new tree,
        and the fingerprint the check reported.

        They run in the child's evaluation tree (Store.worktree): one that passes, and
        that the checks left as exported, is the tree the evaluation runs in."""
        started = time.monotonic()
        tree = store.worktree(self.run, spec.id)
        store.remove_dir(tree)  # an earlier turn's tree
        store.export_tree(commit, tree)
        proven = operators.imports_like_parent(store, self.config.genes.files, self.run, commit)
        job = replace(make_job(self.config, spec.id, tree), import_proven=proven)
        with self._scratch(store, spec, job) as scratch:
            failed, changed = checked(job, scratch)
            fingerprint = check_fingerprint(scratch) if failed is None and job.check else None
        if failed is not None or changed:
            store.remove_dir(tree)  # its evaluation exports the commit afresh
        self.events.emit("validated", id=spec.id, turn=turn, ok=failed is None,
                         seconds=round(time.monotonic() - started, 3))
        return failed, fingerprint

    @contextlib.contextmanager
    def _scratch(self, store: Store, spec: Spec, job: Job) -> Iterator[Path]:
        """A temp folder for the check commands, made only when one will run."""
        if not runs_commands(job):
            yield job.workdir  # parsing and compiling write nothing
            return
        # the checks' own files go under .git too: the sandbox hides the rest of .git
        # from what it finds there, and recovery clears what a crash leaves
        home = store.state_dir / "proposals" / self.run
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{spec.id}-", dir=home) as scratch:
            yield Path(scratch)

    # ---- prompts -----------------------------------------------------------------------------

    def prompt_for(self, store: Store, spec: Spec, parents: list[str],
                members: dict[str, Member]) -> tuple[prompts.Prompt, sections.Sections]:
        """This call's prompt, and the evidence sections in it (for the provenance note)."""
        path, name = spec.block.split("::", 1)
        source = store.read_file(parents[0], path) or ""
        seed_source = store.read_file(self.seed, path) or source
        block_text = genome.get_block(source, name, path).text
        shown = self._sections(store, spec, block_text, members)
        common = {"path": path, "seed_source": seed_source, "block_name": name,
                  "task": shown.task, "evidence": shown.evidence}
        if spec.operator == CROSSOVER:
            other = genome.get_block(store.read_file(parents[1], path) or "", name, path).text
            a, b = (members[p] for p in spec.parents)
            return prompts.crossover(self.library, **common, text_a=block_text, text_b=other,
                                     fitness_a=a.objectives, fitness_b=b.objectives,
                                     ids=(a.id, b.id)), shown
        if spec.operator == EOT:
            return prompts.eot(self.library, **common, block_text=block_text,
                               lesson=self._lesson(store, spec, members),
                               persona=spec.persona), shown
        direction = spec.template.split("/", 1)[1]
        return prompts.mutation(self.library, **common, block_text=block_text,
                                direction=direction, persona=spec.persona), shown

    def _sections(self, store: Store, spec: Spec, block_text: str,
                  members: dict[str, Member]) -> sections.Sections:
        shown = [h for h in self.hints if h.number in spec.hints]
        if self.evidence is None:  # the seed's own prompts have nothing to look back on
            return sections.Sections(
                task=sections.task_section(self.library, self.config, self.task),
                hints=sections.hints_section(self.library, self.config, shown))
        return sections.build(self.library, self.config, self.evidence, task=self.task,
                              block=spec.block, parents=spec.parents,
                              versions=self._versions(store, spec, block_text, members),
                              hints=shown)

    def _versions(self, store: Store, spec: Spec, block_text: str,
                  members: dict[str, Member]) -> list[sections.Version]:
        """The best individuals' versions of the block that differ from the one edited
        and from each other, best first: at most [prompt] inspiration of them."""
        wanted = self.config.prompt.inspiration
        path, name = spec.block.split("::", 1)
        seen, found = {block_text.strip()}, []
        for ident in self.evidence.ranking:
            if len(found) >= wanted:
                break
            if ident in spec.parents or ident not in members:
                continue
            try:
                text = genome.get_block(store.read_file(members[ident].commit, path) or "",
                                        name, path).text
            except genome.GenomeError:
                continue  # a version without the block has nothing to show
            if text.strip() and text.strip() not in seen:
                seen.add(text.strip())
                found.append(sections.Version(self.evidence.members[ident], text))
        return found

    def _lesson(self, store: Store, spec: Spec, members: dict[str, Member]) -> prompts.Lesson:
        """What changed from the seed to the elite in one block, and what it was worth."""
        elite = members[spec.elite]
        path, name = spec.lesson.split("::", 1)
        seed_text = genome.get_block(store.read_file(self.seed, path) or "", name, path).text
        elite_text = genome.get_block(store.read_file(elite.commit, path) or "", name,
                                      path).text
        rationales = [operators.rationale(store.message(c))
                      for c in store.commits_between(self.seed, elite.commit)]
        return prompts.Lesson(block=spec.lesson, seed_text=seed_text, elite_text=elite_text,
                              seed_objectives=self.seed_objectives,
                              elite_objectives=elite.objectives,
                              senses={o.name: o.sense for o in self.config.objectives},
                              rationales=[r for r in rationales if r], elite_id=elite.id)


def _with_repair(request: Request, answer: str, repair: str) -> Request:
    """The same conversation, one answer and one "this failed, because ..." longer."""
    messages = [*request.messages, Message("assistant", answer or "(empty answer)"),
                Message("user", repair)]
    return Request(request.system, messages, request.temperature, request.max_tokens,
                   request.stable_prefix)


