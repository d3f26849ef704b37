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

Then the check's behavioural fingerprint, which sees what text cannot: the seed's check
(train.py --check at smoke fidelity, the command gitevo runs) against versions of the
seed with the operands of one product swapped (new text and normal form, the same
floating-point result: must be caught), and versions that change one training
hyperparameter or one constant of the network (must differ from the seed).

Prints how many no-ops were caught and how many real changes were falsely refused.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
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


TEMPLATE = Path(__file__).resolve().parent.parent / "gitevo" / "templates" / "exquisitenetv2"
# changes that train or compute differently: (what, old text, new text)
BEHAVIOUR_CHANGES = [
    ("learning rate x0.5", "lr=lr, momentum=0.9", "lr=0.5 * lr, momentum=0.9"),
    ("weight decay x2", '"weight_decay": weight_decay}', '"weight_decay": 2 * weight_decay}'),
    ("momentum 0.85", "momentum=0.9, nesterov", "momentum=0.85, nesterov"),
    ("no Nesterov", "nesterov=nesterov)", "nesterov=False)"),
    ("decay on norms too", '{"params": undecayed, "weight_decay": 0.0}',
     '{"params": undecayed, "weight_decay": 1e-5}'),
    ("GELU for SiLU", "F.silu(self.bn1(", "F.gelu(self.bn1("),
    ("max-pool for the low path", "low = -F.max_pool2d(-x, 2, ceil_mode=True)",
     "low = F.avg_pool2d(x, 2, ceil_mode=True)"),
]


def swapped_products(source: str) -> list[tuple[str, str]]:
    """The seed with the two operands of one `a * b` swapped, for each product of two
    plain operands that it has (IEEE multiplication is commutative: bit-identical)."""
    out = []
    for match in re.finditer(r"(?<![\w.\]])(\w+(?:\[[^\]]*\])?) \* (\w+(?:\[[^\]]*\])?)",
                             source):
        a, b = match.group(1), match.group(2)
        if a == b or a.isdigit() and b.isdigit():
            continue
        swapped = source[:match.start()] + f"{b} * {a}" + source[match.end():]
        line = source.count("\n", 0, match.start()) + 1
        out.append((f"line {line}: {a} * {b} -> {b} * {a}", swapped))
    return out


def fingerprints(sources: dict[str, str], home: Path) -> dict[str, str]:
    """Each version's check fingerprint, two checks at a time."""
    folders = {}
    for i, (name, source) in enumerate(sources.items()):
        folder = home / f"v{i}"
        shutil.copytree(TEMPLATE, folder)
        (folder / "model.py").write_text(source)
        folders[name] = folder
    found, names = {}, list(folders)
    for pair in (names[i:i + 2] for i in range(0, len(names), 2)):
        running = {n: subprocess.Popen([sys.executable, "train.py", "--check", "--fidelity",
                                        "smoke", "--metrics", "check.json"], cwd=folders[n],
                                       stderr=subprocess.PIPE, text=True) for n in pair}
        for name, proc in running.items():
            if proc.wait() != 0:
                raise RuntimeError(f"{name}: the check failed: {proc.stderr[-500:]}")
            found[name] = json.loads((folders[name] / "check.json").read_text())["fingerprint"]
    return found


def behaviour(verbose: bool) -> tuple[int, int, int, int]:
    """(caught, no-ops, falsely equal, changes) by the check's fingerprint."""
    seed = (TEMPLATE / "model.py").read_text()
    swaps = dict(swapped_products(seed))
    changes = {}
    for what, old, new in BEHAVIOUR_CHANGES:
        assert old in seed, what
        changes[what] = seed.replace(old, new, 1)
    with tempfile.TemporaryDirectory() as home:
        prints = fingerprints({"seed": seed, **swaps, **changes}, Path(home))
    caught = sum(prints[n] == prints["seed"] for n in swaps)
    false = sum(prints[n] == prints["seed"] for n in changes)
    for name in [*swaps, *changes]:
        same = prints[name] == prints["seed"]
        if verbose or same != (name in swaps):
            print(f"  fingerprint {name}: {'same as the seed' if same else 'differs'}")
    return caught, len(swaps), false, len(changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--no-fingerprint", action="store_true",
                        help="skip the check-fingerprint part (it runs torch)")
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
    ok = caught == no_ops and false == 0
    if not args.no_fingerprint:
        caught, no_ops, false, changes = behaviour(args.verbose)
        print(f"check fingerprint: products with swapped operands caught: {caught}/{no_ops}; "
              f"training or network changes taken for the seed: {false}/{changes}")
        ok = ok and caught == no_ops and false == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
