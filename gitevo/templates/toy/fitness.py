"""Fitness harness for the toy template (protected: evolution never edits this file).

Scores model.predict against a fixed target curve. The harness computes every
number itself: the target and the size measure are taken before the candidate
is imported, so nothing in model.py can change what it is judged by.

    python fitness.py --metrics out.json        # full evaluation
    python fitness.py --check --metrics out.json  # fast validity check, and a fingerprint
    python fitness.py --points 15 --metrics out.json  # a cheaper screen: every 8th point
    python fitness.py --progress curve.jsonl --pace 0.2 --metrics out.json  # a learning
        curve: accuracy on the first tenth of the grid, then two tenths, ... (0.2 s apart)
"""

import argparse
import ast
import hashlib
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

GRID = [i / 20.0 - 3.0 for i in range(121)]


def target(x: float) -> float:
    return 1.3 * math.sin(2.0 * x) + 0.5 * x


def l1(path: Path) -> float:
    """Model cost: the L1 norm of the numeric constants in the gene file's functions.

    The toy's stand-in for a parameter count: bigger constants fit the target more
    easily, so accuracy and l1 pull against each other and a Pareto front forms.
    """
    tree = ast.parse(path.read_text())
    return sum(abs(node.value) for f in tree.body if isinstance(f, ast.FunctionDef)
               for node in ast.walk(f)
               if isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
               and not isinstance(node.value, bool))


def load(path: Path):
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.predict


def score(predict, grid: list, expected: list) -> float:
    """Accuracy in (0, 1]: 1 / (1 + mean squared error), computed with local copies."""
    total = 0.0
    for x, y in zip(grid, expected, strict=True):
        value = float(predict(x))
        if not math.isfinite(value):
            raise ValueError(f"predict({x}) is {value}")
        total += (value - y) ** 2
    return 1.0 / (1.0 + total / len(grid))


def fingerprint(predict, cost: float) -> str:
    """What the code does, for gitevo's duplicate check: its size and every prediction on
    the grid. Two ways of writing the same function give the same fingerprint."""
    seen = [repr(float(predict(x))) for x in GRID]
    return hashlib.sha256(repr((cost, seen)).encode()).hexdigest()[:32]


def curve(predict, grid: list, expected: list, path: Path, pace: float) -> None:
    """The toy's learning curve: the accuracy on a growing share of the grid, a tenth more
    at each point, as a trainer would report validation accuracy after each epoch."""
    for tenth in range(1, 11):
        time.sleep(pace)
        shown = max(1, len(grid) * tenth // 10)
        point = {"at": tenth, "of": 10, "accuracy": score(predict, grid[:shown],
                                                         expected[:shown])}
        with open(path, "a") as handle:
            handle.write(json.dumps(point) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--points", type=int, default=len(GRID),
                        help="score on this many evenly spaced points of the grid")
    parser.add_argument("--progress", help="append the curve here, one JSON line a tenth")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between tenths")
    args = parser.parse_args()
    gene = Path("model.py")
    step = max(1, len(GRID) // max(1, args.points))
    grid = GRID[::step]
    expected = [target(x) for x in grid]
    cost = l1(gene)
    try:
        predict = load(gene)
        if args.check:
            value = float(predict(0.5))
            if not math.isfinite(value):
                raise ValueError(f"predict(0.5) is {value}")
            metrics = {"l1": cost, "fingerprint": fingerprint(predict, cost)}
        else:
            if args.progress:
                curve(predict, grid, expected, Path(args.progress), args.pace)
            metrics = {"accuracy": score(predict, grid, expected), "l1": cost}
    except Exception as exc:  # the candidate's failure, reported in one line
        print(f"model.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    Path(args.metrics).write_text(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
