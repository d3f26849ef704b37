"""How many recorded LLM answers become valid individuals: the corpus through the real path.

There is one corpus per prompt set, each answering that set's prompts about one
template's gene file:

    model    tests/llm_corpus/          exquisitenetv2, model.py   (its --check needs torch)
    program  tests/llm_corpus_program/  sortnet, network.py        (pure Python, fast)

Each file under <corpus>/<category>/ is one answer to a gitevo prompt about a block of
the gene file. Every answer goes the way a proposal goes in a run: responses.extract ->
operators.build_child (a commit on the seed of a repository that `gitevo init
--template T` wrote) -> evaluate.validate on the exported tree (parse, import, and the
template's `--check`).

    python bench/apply_rate.py                 # both sets: table per category, validated
    python bench/apply_rate.py --set program   # one set only (model | program)
    python bench/apply_rate.py --no-validate   # extract + apply only (no torch needed)
    python bench/apply_rate.py --verbose       # one line per answer, with the reason

tests/test_corpus.py imports this file and asserts every answer's `# expect:` header.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from gitevo import config as cfg
from gitevo.cli import main as gitevo_cli
from gitevo.execution import evaluate
from gitevo.execution.job import make_job
from gitevo.store.gitstore import Store
from gitevo.variation import genome, operators, responses
from gitevo.variation.patch import PatchError
from gitevo.variation.spec import Spec

TESTS = Path(__file__).resolve().parent.parent / "tests"


@dataclass(frozen=True)
class PromptSet:
    """A prompt set's corpus, and the template (and its gene file) it was written for."""

    name: str
    corpus: Path
    template: str
    gene: str


MODEL = PromptSet("model", TESTS / "llm_corpus", "exquisitenetv2", "model.py")
PROGRAM = PromptSet("program", TESTS / "llm_corpus_program", "sortnet", "network.py")
SETS = {s.name: s for s in (MODEL, PROGRAM)}
# the model set's, as before: bench/duplicates.py and older callers use these names
CORPUS, GENE = MODEL.corpus, MODEL.gene
HEADER = re.compile(r"# (block|expect|template|persona): *(.*?)\r?\n")
EXPECTS = re.compile(r"^(apply|invalid|reject:[a-z-]+)$")


@dataclass(frozen=True)
class Case:
    path: Path
    category: str
    block: str
    expect: str  # "apply" | "invalid" | "reject:<reason>"
    template: str
    persona: str
    response: str

    @property
    def name(self) -> str:
        return f"{self.category}/{self.path.stem}"


@dataclass
class Result:
    case: Case
    stage: str  # "extract" | "apply" (refused there), "applied", "validated", "invalid"
    reason: str = ""  # PatchError reason, or "invalid"
    detail: str = ""  # the error message
    kind: str = ""  # "diff" | "block", from extract
    commit: str = ""
    # importing the child runs what importing the seed runs (it differs only inside
    # function bodies): in a run its import check is skipped
    same_import: bool = False

    @property
    def applied(self) -> bool:
        return self.stage in ("applied", "validated", "invalid")

    @property
    def outcome(self) -> str:
        """The result in the vocabulary of the `# expect:` header."""
        if self.stage == "validated":
            return "apply"
        if self.stage == "invalid":
            return "invalid"
        if self.stage == "applied":
            return "applied"  # not validated (yet)
        return f"reject:{self.reason}"

    def matches(self, validated: bool = True) -> bool:
        if not validated and self.stage == "applied":
            return self.case.expect in ("apply", "invalid")
        return self.outcome == self.case.expect


def parse_case(path: Path, root: Path = CORPUS) -> Case:
    """A corpus file: `# key: value` header lines, then the raw answer, byte for byte."""
    raw = path.read_bytes().decode("utf-8")
    fields, pos = {}, 0
    while match := HEADER.match(raw, pos):
        fields[match.group(1)] = match.group(2).strip()
        pos = match.end()
    where = path.relative_to(root)
    if "block" not in fields or not EXPECTS.match(fields.get("expect", "")):
        raise ValueError(f"{where}: needs '# block: NAME' and '# expect: apply|invalid|"
                         "reject:REASON' header lines")
    return Case(path, where.parts[0], fields["block"], fields["expect"],
                fields.get("template", ""), fields.get("persona", "none"), raw[pos:])


def load_corpus(root: Path = CORPUS) -> list[Case]:
    return [parse_case(p, root) for p in sorted(root.glob("*/*.txt"))]


def make_repo(dest: Path, template: str = MODEL.template) -> tuple[Store, cfg.Config, str]:
    """The real template repository, written by the real CLI; returns its seed commit."""
    result = CliRunner().invoke(gitevo_cli, ["init", str(dest), "--template", template,
                                             "--no-eval"], catch_exceptions=False)
    if result.exit_code != 0:
        raise RuntimeError(f"gitevo init failed: {result.output}")
    store = Store(dest)
    return store, cfg.load(dest / cfg.CONFIG_NAME), store.head_commit()


def attempt(store: Store, config: cfg.Config, seed: str, case: Case, index: int,
            gene: str = GENE) -> Result:
    """extract -> build_child, as a run would for a mutation of the seed."""
    source = store.read_file(seed, gene) or ""
    try:
        got = responses.extract(case.response, path=gene, block_name=case.block, source=source)
    except PatchError as exc:
        return Result(case, "extract", exc.reason, str(exc))
    spec = Spec(id=f"g001-{index:03d}", operator="mutation", parents=["g000-000"],
                block=f"{gene}::{case.block}", seed=index)
    proposal = operators.Proposal(got.diff, got.summary or f"edit {case.block}", got.rationale,
                                  prompt=case.template or "corpus", model="corpus")
    try:
        commit = operators.build_child(store, config, "corpus", 1, spec, [seed], proposal)
    except PatchError as exc:
        return Result(case, "apply", exc.reason, str(exc), got.kind)
    same = genome.same_import(source, store.read_file(commit, gene) or "")
    return Result(case, "applied", kind=got.kind, commit=commit, same_import=same)


def validate(store: Store, config: cfg.Config, result: Result, scratch: Path) -> Result:
    """evaluate.validate on the child's exported tree: parse, import, `--check`."""
    work = scratch / result.commit[:12]
    store.export_tree(result.commit, work / "tree")
    (work / "tmp").mkdir()
    job = make_job(config, result.case.path.stem, work / "tree")
    failed = evaluate.validate(job, work / "tmp")
    if failed is None:
        result.stage = "validated"
    else:
        result.stage, result.reason, result.detail = "invalid", "invalid", failed.error or ""
    return result


def run_corpus(cases: list[Case], workdir: Path, *, check: bool = True, workers: int = 0,
               only: Callable[[Result], bool] | None = None,
               prompt_set: PromptSet = MODEL) -> list[Result]:
    """Every case (of `prompt_set`'s corpus) through the pipeline, on a repository of that
    set's template; validation in parallel (it is subprocess-bound).

    `only` limits validation to some applied results (the tests validate only those
    expected to apply or to be invalid); the others stay at stage "applied".
    """
    store, config, seed = make_repo(workdir / "repo", prompt_set.template)
    results = [attempt(store, config, seed, case, i, prompt_set.gene)
               for i, case in enumerate(cases)]
    if check:
        todo = [r for r in results if r.applied and (only is None or only(r))]
        scratch = workdir / "validate"
        scratch.mkdir()
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
            list(pool.map(lambda r: validate(store, config, r, scratch), todo))
    return results


def table(results: Iterable[Result], validated: bool = True) -> str:
    """Per category: answers, applied, validated, the validated share, and as-expected."""
    rows: dict[str, list[Result]] = {}
    for r in results:
        rows.setdefault(r.case.category, []).append(r)
    head = f"{'category':<22} {'count':>5} {'applied':>7} {'validated':>9} {'share':>6} " \
           f"{'as expected':>11}"
    lines = [head, "-" * len(head)]
    every = [r for group in rows.values() for r in group]
    for name, group in [*sorted(rows.items()), ("total", every)]:
        if name == "total":
            lines.append("-" * len(head))
        n = len(group)
        applied = sum(r.applied for r in group)
        valid = sum(r.stage == "validated" for r in group)
        shown = f"{valid:>9}" if validated else f"{'-':>9}"
        share = f"{valid / n:>6.0%}" if validated else f"{applied / n:>6.0%}"
        expected = sum(r.matches(validated) for r in group)
        lines.append(f"{name:<22} {n:>5} {applied:>7} {shown} {share} {expected:>7}/{n:<3}")
    return "\n".join(lines)


def describe(result: Result) -> str:
    mark = "ok " if result.matches(result.stage != "applied") else "BAD"
    detail = result.detail.strip().splitlines()[-1][:100] if result.detail.strip() else ""
    return f"{mark} {result.case.name:<52} expect {result.case.expect:<22} " \
           f"got {result.outcome:<22} {result.kind:<5} {detail}"


def summary(prompt_set: PromptSet, results: list[Result], validated: bool = True) -> str:
    """One line: the set's apply rate, and its validated share unless validation was off."""
    n, applied = len(results), sum(r.applied for r in results)
    line = f"{prompt_set.name}: applied {applied}/{n} ({applied / max(n, 1):.0%})"
    if validated:
        valid = sum(r.stage == "validated" for r in results)
        line += f", validated {valid}/{n} ({valid / max(n, 1):.0%})"
    same = sum(r.same_import for r in results if r.applied)
    # a child that imports exactly as the seed gets no import check in a run
    return f"{line}, importing exactly as the seed {same}/{applied}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), action="append", dest="sets",
                        help="the prompt set(s) to run (repeatable; default: all)")
    parser.add_argument("--no-validate", action="store_true",
                        help="stop after applying (no parse/import/--check, no torch)")
    parser.add_argument("--workers", type=int, default=0, help="parallel validations")
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per answer")
    args = parser.parse_args(argv)
    check, ok, lines = not args.no_validate, True, []
    for prompt_set in (SETS[name] for name in args.sets or SETS):
        cases = load_corpus(prompt_set.corpus)
        with tempfile.TemporaryDirectory(prefix="gitevo-apply-rate-") as tmp:
            results = run_corpus(cases, Path(tmp), check=check, workers=args.workers,
                                 prompt_set=prompt_set)
        print(f"== prompt set {prompt_set.name}: {prompt_set.corpus.relative_to(TESTS.parent)}"
              f" against {prompt_set.template} ({prompt_set.gene})\n")
        if args.verbose:
            print("\n".join(describe(r) for r in results), end="\n\n")
        print(table(results, validated=check), end="\n\n")
        lines.append(summary(prompt_set, results, validated=check))
        ok &= all(r.matches(check) for r in results)
    print("\n".join(lines))
    if args.no_validate:
        print("\n(validation skipped: share = applied / count)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
