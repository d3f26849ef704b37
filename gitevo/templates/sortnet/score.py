"""Scores the network that build.py exported, without importing network.py: reads
{artifacts}/network.json, applies every rule (sortcheck.validate), and writes the two
objectives, comparators and depth. A broken network exits 1 with its reason.

    python score.py --n 8 --artifacts DIR --metrics out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import sortcheck


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()
    try:
        network = json.loads((Path(args.artifacts) / "network.json").read_text())
        pairs = sortcheck.validate(network, args.n)
    except (OSError, ValueError) as exc:  # Rejected is a ValueError, as is bad JSON
        print(f"network: {exc}", file=sys.stderr)
        return 1
    Path(args.metrics).write_text(json.dumps({"comparators": len(pairs),
                                              "depth": sortcheck.depth(pairs, args.n)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
