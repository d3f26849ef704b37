"""Does the duplicate check catch every rewrite that changes nothing, and refuse no real
change? The corpus of recorded answers, each rewritten both ways, through the real path.

    python bench/duplicates.py             # the whole corpus
    python bench/duplicates.py --verbose   # one line per rewrite

Every answer of tests/llm_corpus/ that applies becomes a child of the ExquisiteNetV2
seed (bench/apply_rate.py's path). Its block is then rewritten, and each rewrite goes
through operators.build_child as a child of that child, with the duplicate check on:

* no-ops, which must all be refused as duplicates: a comment added to every line; the
  docstrings removed or replaced; the block re-laid out by `ast.unparse` (which also
  drops every comment); every local name renamed;
* real changes, which must all be accepted: one numeric literal of the block (each in
  turn, up to five per answer) scaled by 1.1, as a one-hyperparameter edit would be.

Prints how many no-ops were caught and how many real changes were falsely refused.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import apply_rate  # noqa: E402
from gitevo.variation import genome, operators, patch  # noqa: E402
from gitevo.variation.spec import Spec  # noqa: E402

GENE = apply_rate.GENE


def commented(block: str) -> str:
    return "\n".join(line + ("  # kept as it was" if line.strip() and not line.rstrip()
                             .endswith(("\\", ",", "(", "[", "{")) and '"""' not in line
                             else "") for line in block.splitlines())


def _functions_and_classes(tree: ast.AST) -> list[ast.AST]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                        ast.ClassDef))]


def docstrings_changed(block: str) -> str:
    tree = ast.parse(block)
    for node in _functions_and_classes(tree):
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            first.value.value = "Rewritten docstring, saying the same thing in other words."
        else:
            node.body.insert(0, ast.Expr(ast.Constant("A docstring added.")))
    return ast.unparse(tree)


def laid_out(block: str) -> str:
    return ast.unparse(ast.parse(block))


class _Renamer(ast.NodeTransformer):
    """Renames every name a function assigns (never its parameters) to `<name>_v`."""

    def __init__(self, names: set[str]):
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id in self.names:
            node.id += "_v"
        return node


def locals_renamed(block: str) -> str:
    tree = ast.parse(block)
    for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                                                                   ast.AsyncFunctionDef))):
        params = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
        assigned = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)
                    and isinstance(n.ctx, ast.Store)} - params
        _Renamer(assigned).visit(function)
    return ast.unparse(tree)


NO_OPS: dict[str, Callable[[str], str]] = {
    "comments": commented, "docstrings": docstrings_changed, "layout": laid_out,
    "locals": locals_renamed}


def hyperparameters(block: str, limit: int = 5) -> list[str]:
    """The block with one numeric literal scaled by 1.1, for each of its first literals."""
    tree = ast.parse(block)
    numbers = [n for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and type(n.value) in (int, float) and n.value not in (0, 1)]
    out = []
    for node in numbers[:limit]:
        old = node.value
        node.value = old + 1 if isinstance(old, int) else old * 1.1
        out.append(ast.unparse(tree))
        node.value = old
    return out


def refused(store, config, parent: str, case: apply_rate.Case, new_block: str,
            index: int) -> str | None:
    """The duplicate check's verdict on `new_block` as a child of `parent`: the reason
    it is refused, or None when it would be trained."""
    source = store.read_file(parent, GENE) or ""
    old = genome.get_block(source, case.block, GENE)
    lines = genome.split_lines(source)
    new_source = "".join(lines[:old.start]) + new_block.rstrip("\n") + "\n" + \
        "".join(lines[old.end:])
    spec = Spec(id=f"g002-{index:03d}", operator="mutation", parents=["g001-000"],
                block=f"{GENE}::{case.block}", seed=index)
    proposal = operators.Proposal(patch.make_diff(GENE, source, new_source), "rewrite", "")
    try:
        operators.build_child(store, config, "corpus", 2, spec, [parent], proposal,
                              operators.Forms(store, config.genes.files), {})
    except patch.PatchError as exc:
        return exc.reason
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    cases = [c for c in apply_rate.load_corpus() if c.expect in ("apply", "invalid")]
    caught, no_ops, false, changes, index, rewritten = 0, 0, 0, 0, 0, 0
    with tempfile.TemporaryDirectory() as home:
        store, config, seed = apply_rate.make_repo(Path(home) / "enet")
        for number, case in enumerate(cases):
            result = apply_rate.attempt(store, config, seed, case, number)
            if not result.applied:
                continue
            try:
                block = genome.get_block(store.read_file(result.commit, GENE) or "",
                                         case.block, GENE).text
            except genome.GenomeError:
                continue  # an answer applied as text that does not parse: nothing to rewrite
            rewritten += 1
            for name, rewrite in NO_OPS.items():
                index += 1
                verdict = refused(store, config, result.commit, case, rewrite(block), index)
                no_ops += 1
                caught += verdict == "duplicate"
                if args.verbose or verdict != "duplicate":
                    print(f"  no-op {name:<10} {case.name}: {verdict or 'TRAINED'}")
            for new in hyperparameters(block):
                index += 1
                verdict = refused(store, config, result.commit, case, new, index)
                changes += 1
                false += verdict is not None
                if args.verbose or verdict is not None:
                    print(f"  change     {case.name}: {verdict or 'trained'}")
    print(f"corpus answers rewritten: {rewritten} of {len(cases)}; no-op rewrites caught as "
          f"duplicates: {caught}/{no_ops}; one-hyperparameter changes falsely refused: "
          f"{false}/{changes}")
    return 0 if caught == no_ops and false == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
