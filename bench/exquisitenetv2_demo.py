"""The seed's fitness at a fidelity (demo by default), over several seeds: how noisy is it?

Runs `python train.py` exactly as gitevo does (a fresh process per seed, in a copy of
the template), on the JPEG CIFAR-10 copy, and prints each seed's validation accuracy,
test accuracy and wall time, then the mean, sample standard deviation and range. The
spread is the yardstick for evolution: an offspring that beats the seed by less than
about two standard deviations has not shown that it is better.

    tar xzf /work/shared/datasets/cifar10-jpeg.tar.gz -C /tmp
    python bench/exquisitenetv2_demo.py --data /tmp/cifar10-jpeg
    python bench/exquisitenetv2_demo.py --data /tmp/cifar10-jpeg --seeds 0 1 2 3 4 \\
        --fidelity demo --extra "--epochs 6"

The decoded-data cache is warmed first, so the per-seed wall times do not include the
one-off decoding of the JPEGs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "gitevo" / "templates" / "exquisitenetv2"


def warm_cache(data: str) -> float:
    """Decode the dataset into the cache (once, ever); returns the seconds it took."""
    start = time.perf_counter()
    code = "import sys; sys.path.insert(0, sys.argv[1]); from harness import data; " \
           "print(data.load(sys.argv[2]).from_cache)"
    subprocess.run([sys.executable, "-B", "-c", code, str(TEMPLATE), data], check=True,
                   capture_output=True)
    return time.perf_counter() - start


def one_seed(repo: Path, args: argparse.Namespace, seed: int) -> dict:
    out = repo / f"metrics-{seed}.json"
    command = [sys.executable, "train.py", "--fidelity", args.fidelity, "--data", args.data,
               "--seed", str(seed), "--metrics", str(out), *shlex.split(args.extra)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"seed {seed} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    metrics = json.loads(out.read_text())
    metrics["wall_seconds"] = wall
    return metrics


def describe(values: list[float], digits: int = 4) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"mean {statistics.mean(values):.{digits}f}  sd {spread:.{digits}f}  "
            f"range {min(values):.{digits}f}..{max(values):.{digits}f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="/tmp/cifar10-jpeg")
    p.add_argument("--fidelity", default="demo")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--extra", default="", help="more train.py arguments, one string")
    args = p.parse_args()

    print(f"cache warm-up: {warm_cache(args.data):.1f}s")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(shutil.copytree(TEMPLATE, Path(tmp) / "repo",
                                    ignore=shutil.ignore_patterns("__pycache__")))
        for seed in args.seeds:
            m = one_seed(repo, args, seed)
            runs.append(m)
            print(f"seed {seed}: accuracy {m['accuracy']:.4f} (validation, "
                  f"{m['val_images']} images)  test {m['test_accuracy']:.4f}  "
                  f"train {m['train_seconds']:.1f}s  wall {m['wall_seconds']:.1f}s  "
                  f"{m['images_per_second']:.0f} img/s  {m['device']}", flush=True)
    print(f"fidelity {args.fidelity} {args.extra}".rstrip() + f", {len(runs)} seeds, "
          f"{runs[0]['train_images']} training images, {runs[0]['epochs']} epochs")
    print("  validation accuracy: " + describe([m["accuracy"] for m in runs]))
    print("  test accuracy:       " + describe([m["test_accuracy"] for m in runs]))
    print("  wall seconds:        " + describe([m["wall_seconds"] for m in runs], 1))


if __name__ == "__main__":
    main()
