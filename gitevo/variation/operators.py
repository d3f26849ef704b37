"""Steps 2-3 of a generation: propose a change for a planned offspring, then apply and commit it.

Every proposal, offline or (later) from an LLM, is a unified diff against the
first parent and takes the same road: tolerant patch application, a check that
it touched only its gene block, and a commit whose trailers say what was done.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gitevo.config import Config
from gitevo.store.gitstore import Store, notes_ref
from gitevo.variation import genome, normalize, offline, patch
from gitevo.variation.spec import CROSSOVER, Spec


@dataclass
class Proposal:
    diff: str
    summary: str
    rationale: str
    prompt: str = "offline"
    model: str = "offline"
    temperature: float | None = None  # the sampling temperature of an LLM's proposal


def propose_offline(store: Store, spec: Spec, parents: list[str]) -> Proposal:
    """The unguided baseline: random AST edits, or a block taken from the other parent."""
    path, name = spec.block.split("::", 1)
    source = store.read_file(parents[0], path) or ""
    if spec.operator == CROSSOVER:
        other = store.read_file(parents[1], path) or ""
        new, _ = offline.crossover(source, other, name)
        summary = f"{name} from {spec.parents[1]}"  # names the donor, so the log reads
        why = f"Offline crossover: {name} comes from {spec.parents[1]}, the rest from " \
              f"{spec.parents[0]}."
    else:
        new, summary = offline.mutate(source, name, random.Random(spec.seed))
        why = f"Offline mutation: random AST edits to {name} (seed {spec.seed})."
    return Proposal(patch.make_diff(path, source, new), summary, why)


def build_child(store: Store, config: Config, run: str, generation: int, spec: Spec,
                parents: list[str], proposal: Proposal, forms: Forms | None = None,
                others: Mapping[str, str] | None = None) -> str:
    """Apply the proposal to the first parent's tree and write the commit; returns its id.

    Raises patch.PatchError (with a reason) when the proposal cannot become an individual:
    among others "duplicate", when the result does what its parent, or one of `others`
    (id -> commit: the population, earlier siblings), already does (see `Forms`).
    """
    path, name = spec.block.split("::", 1)
    base = {f: store.read_file(parents[0], f) for f in config.genes.files}
    files = {f: text for f, text in base.items() if text is not None}
    changed = patch.apply_diff(proposal.diff, files, allowed=set(config.genes.files),
                               default_path=path)
    for changed_path, text in changed.items():
        _check_scope(changed_path, files[changed_path], text, path, name)
    tree = store.tree_with(parents[0], changed)
    if tree == store.tree_id(parents[0]):
        raise patch.PatchError("no-change", f"{spec.id}: the proposal changes nothing")
    if forms is not None:
        forms.refuse_duplicate(spec, {**files, **changed}, parents[0], others or {})
    return store.commit(tree, parents, commit_message(run, generation, spec, proposal))


OFFLINE_TRIES = 4  # random edits drawn again when one only repeats existing code


def build_offline(store: Store, config: Config, run: str, generation: int, spec: Spec,
                  parents: list[str], forms: Forms | None,
                  others: Mapping[str, str]) -> str:
    """An offline child: random edits drawn again (from the next seed) while they only
    repeat what an individual already does, as an LLM would be asked again."""
    for attempt in range(OFFLINE_TRIES):
        drawn = dataclasses.replace(spec, seed=spec.seed + 1_000_003 * attempt)
        try:
            return build_child(store, config, run, generation, spec, parents,
                               propose_offline(store, drawn, parents), forms, others)
        except patch.PatchError as exc:
            if exc.reason != "duplicate" or spec.operator == CROSSOVER \
                    or attempt == OFFLINE_TRIES - 1:
                raise  # a crossover swaps the same block whatever the seed
    raise AssertionError("unreachable: the last try returns or raises")


class Forms:
    """The gene files' normal forms (variation/normalize.py) of the commits met so far,
    to refuse a child that only rewrites what its parent, or another individual, does:
    comments, docstrings, formatting or local names changed, nothing else."""

    def __init__(self, store: Store, gene_files: tuple[str, ...]):
        self.store, self.gene_files = store, gene_files
        self._known: dict[str, tuple] = {}  # commit -> its files' normal forms

    def of_files(self, files: Mapping[str, str]) -> tuple:
        return tuple((f, _form(f, files.get(f))) for f in self.gene_files)

    def of_commit(self, commit: str) -> tuple:
        if commit not in self._known:
            self._known[commit] = self.of_files(
                {f: text for f in self.gene_files
                 if (text := self.store.read_file(commit, f)) is not None})
        return self._known[commit]

    def refuse_duplicate(self, spec: Spec, files: Mapping[str, str], parent: str,
                         others: Mapping[str, str]) -> None:
        """Raise PatchError("duplicate") when `files` do what `parent` or one of `others`
        does, naming which."""
        mine = self.of_files(files)
        matched = ("its parent " + spec.parents[0] if mine == self.of_commit(parent) else
                   next((ident for ident, commit in others.items()
                         if ident not in spec.parents[:1] and mine == self.of_commit(commit)),
                        None))
        if matched is not None:
            raise patch.PatchError(
                "duplicate", f"{spec.id}: the change does nothing new: apart from comments, "
                f"docstrings, formatting and local names, the result is the same code as "
                f"{matched} (make a change that alters what the code computes)")


def _form(path: str, text: str | None) -> str | None:
    if text is None or not path.endswith(".py"):
        return text
    return normalize.normal_form(text) or text


def imports_like_parent(store: Store, gene_files: tuple[str, ...], run: str,
                        commit: str) -> bool:
    """Whether importing `commit`'s gene files runs exactly what importing its first
    parent's did, where that parent is an individual of `run` whose evaluation was ok: its
    import check passed (or was proven so), and the child's would only repeat it. A seed's
    parent is the user's history, never checked; a seed is never proven."""
    parents = store.parents(commit)
    note = store.read_note(notes_ref(run), parents[0]) if parents else None
    if note is None or json.loads(note).get("status") != "ok":
        return False
    for name in (f for f in gene_files if f.endswith(".py")):
        old, new = store.read_file(parents[0], name), store.read_file(commit, name)
        if old is None or new is None or not genome.same_import(old, new):
            return False
    return True


def _check_scope(path: str, old: str, new: str, target_path: str, target: str) -> None:
    """Refuse edits outside the one block the offspring was asked to change."""
    if path != target_path:
        raise patch.PatchError("outside-block", f"edits {path}, but the target is {target_path}")
    try:
        touched = genome.changed_blocks(old, new)
    except genome.GenomeError:
        touched = _touched_by_lines(old, new)  # broken syntax: judge by line ranges instead
    extra = sorted(touched - {target})
    if extra:
        raise patch.PatchError("outside-block",
                               f"edits {', '.join(extra)} in {path}, but the target is {target}")


def _touched_by_lines(old: str, new: str) -> set[str]:
    """Blocks of `old` whose lines a diff to `new` changes (for unparsable results)."""
    spans = [(b.start, b.end, b.name) for b in genome.blocks(old)]
    touched = set()
    matcher = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        hits = {name for start, end, name in spans if i1 < end and i2 >= start}
        touched |= hits or {"<module>"}
    return touched


_TRAILER = re.compile(r"^Gitevo-[\w-]+: ")


def rationale(message: str) -> str:
    """What `commit_message` put between the subject and the trailers: the reasons the
    proposal gave."""
    lines = message.strip().splitlines()[1:]
    return "\n".join(line for line in lines if not _TRAILER.match(line)).strip()


def prompt_label(template: str, persona: str | None) -> str:
    """"mutation/reduce_params+expert", or the template alone without a persona: the
    Gitevo-Prompt trailer."""
    return template if persona in ("", "none", None) else f"{template}+{persona}"


def commit_message(run: str, generation: int, spec: Spec, proposal: Proposal) -> str:
    trailers = {"Gitevo-Run": run, "Gitevo-Id": spec.id, "Gitevo-Generation": str(generation),
                "Gitevo-Operator": spec.operator, "Gitevo-Block": spec.block,
                "Gitevo-Parents": " ".join(spec.parents), "Gitevo-Prompt": proposal.prompt,
                "Gitevo-Model": proposal.model}
    if proposal.temperature is not None:
        trailers["Gitevo-Temperature"] = f"{proposal.temperature:.3g}"
    if spec.hints:
        trailers["Gitevo-Hints"] = " ".join(str(n) for n in spec.hints)
    subject = f"{spec.operator}({spec.block}): {proposal.summary}".splitlines()[0][:200]
    body = proposal.rationale.strip()
    return (f"{subject}\n\n{body}\n\n" if body else f"{subject}\n\n") + \
        "".join(f"{k}: {v}\n" for k, v in trailers.items())
