"""What scoring apart costs: the ExquisiteNetV2 seed measured in one process (train.py
alone, as before) and in gitevo's route (train.py --artifacts exporting the trained
model, then score.py measuring it), in interleaved rounds at one fidelity.

    tar xzf /work/shared/datasets/cifar10-jpeg.tar.gz -C /tmp
    python bench/scorer_cost.py --data /tmp/cifar10-jpeg --rounds 3

Each round times both ways back to back, in a copy of the template and on a prepared
cache, and prints their wall times and ratio; then the median ratio. It also checks that
both ways give the same accuracy, test accuracy and parameter count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "gitevo" / "templates" / "exquisitenetv2"
SAME = ("accuracy", "test_accuracy", "params")


def timed(repo: Path, env: dict[str, str], *commands: list[str]) -> float:
    start = time.perf_counter()
    for command in commands:
        subprocess.run([sys.executable, *command], cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def one_round(repo: Path, env: dict[str, str], common: list[str]) -> tuple[float, float]:
    inline = timed(repo, env, ["train.py", *common, "--metrics", "inline.json"])
    shutil.rmtree(repo / "art", ignore_errors=True)
    apart = timed(repo, env, ["train.py", *common, "--artifacts", "art", "--metrics", "t.json"],
                  ["score.py", *common, "--artifacts", "art", "--metrics", "s.json"])
    one = json.loads((repo / "inline.json").read_text())
    two = json.loads((repo / "s.json").read_text())
    differ = [k for k in SAME if one[k] != two[k]]
    if differ:
        sys.exit(f"the two ways disagree on {differ}: {one} vs {two}")
    return inline, apart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--fidelity", default="demo")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitevo-scorer-cost-") as tmp:
        repo = Path(tmp) / "enet"
        shutil.copytree(TEMPLATE, repo, ignore=shutil.ignore_patterns("__pycache__"))
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
               "GITEVO_CACHE_DIR": str(Path(tmp) / "cache")}
        common = ["--fidelity", args.fidelity, "--data", args.data]
        timed(repo, env, ["train.py", "--prepare", *common, "--metrics", "p.json"])
        ratios = []
        for number in range(1, args.rounds + 1):
            inline, apart = one_round(repo, env, common)
            ratios.append(apart / inline)
            print(f"round {number}: one process {inline:.1f} s, trainer + scorer {apart:.1f} s,"
                  f" ratio {apart / inline:.3f}", flush=True)
    print(f"median ratio over {len(ratios)} rounds: {statistics.median(ratios):.3f} "
          f"(same accuracy, test accuracy and params both ways)")


if __name__ == "__main__":
    main()
