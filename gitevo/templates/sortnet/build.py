"""Runs the candidate: imports network.py, calls comparators(n) within a time limit, and
writes the network it built to {artifacts}/network.json for score.py. It decides no
score. With --check it also applies the rules at once, so that a broken network is
refused with its reason before the evaluation, and writes a fingerprint (the network
itself) so that gitevo can tell two ways of writing the same network apart from two
networks.

    python build.py --n 8 --artifacts DIR --metrics out.json
    python build.py --check --n 8 --metrics out.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import signal
import sys
from pathlib import Path

import sortcheck

TIME_LIMIT = 10  # seconds for comparators(n): the task says so too


def build(n: int) -> object:
    def too_slow(*_):
        raise TimeoutError(f"comparators({n}) took over {TIME_LIMIT} s")

    signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(TIME_LIMIT)
    try:
        spec = importlib.util.spec_from_file_location("network", "network.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.comparators(n)
    finally:
        signal.alarm(0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--artifacts")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    try:
        network = build(args.n)
        if args.check:
            pairs = sortcheck.validate(network, args.n)
    except Exception as exc:  # the candidate's failure, reported in one line
        print(f"network.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.check:
        found = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:32]
        Path(args.metrics).write_text(json.dumps({"fingerprint": found}))
        return 0
    try:
        text = json.dumps(network)
    except (TypeError, ValueError) as exc:
        print(f"network.py: comparators({args.n}) is not plain data: {exc}", file=sys.stderr)
        return 1
    out = Path(args.artifacts)
    out.mkdir(parents=True, exist_ok=True)
    (out / "network.json").write_text(text)
    Path(args.metrics).write_text("{}")  # a report only: score.py writes the scores
    return 0


if __name__ == "__main__":
    sys.exit(main())
