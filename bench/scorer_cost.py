"""What scoring apart costs: the ExquisiteNetV2 seed measured by the harness as it was
before (--before, a git revision: training and measuring in one process, no audit hook)
and by gitevo's route now (train.py --artifacts under its audit hook, exporting the
trained model, and score.py measuring it, started alongside as gitevo starts it with
`[fitness] score_early` under bubblewrap: it loads while the trainer trains, then waits
for the artifacts), in interleaved rounds at one fidelity.

    tar xzf /work/shared/datasets/cifar10-jpeg.tar.gz -C /tmp
    python bench/scorer_cost.py --data /tmp/cifar10-jpeg --rounds 3

Each round times both ways back to back, each in its own copy of the template on a
prepared cache, and prints their wall times and ratio; then the median ratio. It also
checks that both ways give the same accuracy, test accuracy and parameter count.

A demo evaluation varies by several percent from run to run on a shared machine, more
than the split costs, so the bench also measures that cost on its own: the same two
ways with one epoch (--overhead-rounds rounds), whose difference is the fixed price of a
second process, the export and its loading; divided by the demo rounds' median time
before, it gives the ratio the noise hides.
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

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "gitevo" / "templates" / "exquisitenetv2"
BEFORE = "6be7c2a^"  # the commit before [fitness] score and the template's split
SAME = ("accuracy", "test_accuracy", "params")


def timed(repo: Path, env: dict[str, str], *commands: list[str]) -> float:
    start = time.perf_counter()
    for command in commands:
        subprocess.run([sys.executable, *command], cwd=repo, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def alongside(repo: Path, env: dict[str, str], common: list[str],
              training: tuple[str, ...]) -> float:
    """The trainer and the scorer as gitevo runs them with `score_early` under bubblewrap:
    both start at once, the scorer loads and waits (--wait) until the trainer has ended
    and its artifacts are renamed into place. The trainer reports its learning curve, as
    the template's command asks; what that costs is in its report (curve_seconds)."""
    for name in ("art", "art-incoming"):
        shutil.rmtree(repo / name, ignore_errors=True)
    start = time.perf_counter()
    scorer = subprocess.Popen([sys.executable, "score.py", "--wait", *common, "--artifacts",
                               "art", "--metrics", "s.json"], cwd=repo, env=env,
                              stdout=subprocess.DEVNULL)
    try:
        subprocess.run([sys.executable, "train.py", *common, *training, "--artifacts",
                        "art-incoming", "--progress", "curve.jsonl", "--metrics", "t.json"],
                       cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL)
        os.rename(repo / "art-incoming", repo / "art")
        if scorer.wait() != 0:
            sys.exit("score.py failed")
    finally:
        scorer.kill()
    return time.perf_counter() - start


def one_round(old: Path, new: Path, env: dict[str, dict[str, str]], common: list[str],
              training: tuple[str, ...] = ()) -> tuple[float, float, float]:
    """Seconds before, seconds now without the learning curve, and the curve's share of
    the training time now."""
    inline = timed(old, env["old"], ["train.py", *common, *training, "--metrics",
                                     "inline.json"])
    apart = alongside(new, env["new"], common, training)
    one = json.loads((old / "inline.json").read_text())
    two = json.loads((new / "s.json").read_text())
    differ = [k for k in SAME if one[k] != two[k]]
    if differ:
        sys.exit(f"the two ways disagree on {differ}: {one} vs {two}")
    report = json.loads((new / "t.json").read_text())
    curve = report["curve_seconds"]
    return inline, apart - curve, curve / report["train_seconds"]


def checkout(revision: str, dest: Path) -> None:
    """The template's files as they were at `revision`."""
    dest.mkdir(parents=True)
    prefix = TEMPLATE.relative_to(ROOT).as_posix()
    archive = subprocess.run(["git", "archive", revision, prefix], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "x", "--strip-components", str(prefix.count("/") + 1), "-C",
                    str(dest)], input=archive, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--fidelity", default="demo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--overhead-rounds", type=int, default=5)
    parser.add_argument("--before", default=BEFORE, help="git revision of the harness "
                        f"measured in one process (default {BEFORE})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitevo-scorer-cost-") as tmp:
        old, new = Path(tmp) / "before", Path(tmp) / "now"
        checkout(args.before, old)
        shutil.copytree(TEMPLATE, new, ignore=shutil.ignore_patterns("__pycache__"))
        env = {side: {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
                      "GITEVO_CACHE_DIR": str(Path(tmp) / f"cache-{side}")}
               for side in ("old", "new")}
        common = ["--fidelity", args.fidelity, "--data", args.data]
        # the old harness decodes on first use: a round of its own keeps that out of the timing
        timed(old, env["old"], ["train.py", *common, "--epochs", "1", "--metrics", "w.json"])
        timed(new, env["new"], ["train.py", "--prepare", *common, "--metrics", "p.json"])
        ratios, befores, shares = [], [], []
        for number in range(1, args.rounds + 1):
            inline, apart, share = one_round(old, new, env, common)
            ratios.append(apart / inline)
            shares.append(share)
            print(f"round {number}: before (one process) {inline:.1f} s, now (trainer + "
                  f"scorer, learning curve left out) {apart:.1f} s, ratio "
                  f"{apart / inline:.3f}; the curve took {share:.1%} of training", flush=True)
            befores.append(inline)
        extra = []
        for number in range(1, args.overhead_rounds + 1):
            inline, apart, _ = one_round(old, new, env, common, ("--epochs", "1"))
            extra.append(apart - inline)
            print(f"one-epoch round {number}: before {inline:.1f} s, now {apart:.1f} s, "
                  f"fixed cost {apart - inline:+.1f} s", flush=True)
    if ratios:
        print(f"median ratio over {len(ratios)} rounds: {statistics.median(ratios):.3f}, "
              f"mean {statistics.mean(ratios):.3f} (same accuracy, test accuracy and params "
              "both ways)")
        print(f"learning curve ({{progress}}): median {statistics.median(shares):.1%} of the "
              "training time (target: at most 5%)")
    if extra and befores:
        fixed, base = statistics.median(extra), statistics.median(befores)
        print(f"fixed cost of the split: median {fixed:+.1f} s over {len(extra)} one-epoch "
              f"rounds; against the median {base:.1f} s before: ratio {(base + fixed) / base:.3f}")


if __name__ == "__main__":
    main()
