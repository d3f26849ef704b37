"""Asynchronous promotion against waiting for each rung: the same cascaded generation,
run three ways ([fitness.cascade] promotion = "sync", "async", "asha"), timed.

    python bench/asha.py                    # 16 children, 4 workers, promote 0.5
    python bench/asha.py --children 24 --workers 6 --rounds 3

The toy template with a fitness whose duration varies from child to child (as training
times of evolved models do: from 1x to 4x a base, fixed by the child's code, so both
ways see the same durations): a screen on 15 points costing `--screen` seconds at 1x,
the full grid `--full` seconds at 1x. Each round runs generation 1 from the same
evaluated seed once each way, and prints the generation's wall time, the share of
worker time spent evaluating (the rest idles), how many children each promoted (early
ones apart) and the best accuracy measured in full. Timing figures are ratios against
the synchronous run of the same round.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# sleeps `base` seconds x (1 + 3 u), u in [0, 1) fixed by model.py's text: a slow child
# is slow at every rung
PACE = ("python -c \\\"import hashlib, sys, time; "
        "u = int(hashlib.sha256(open('model.py', 'rb').read()).hexdigest(), 16) % 1000 / 1000; "
        "time.sleep(float(sys.argv[1]) * (1 + 3 * u))\\\" {pace} && ")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def gitevo(repo: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "gitevo", "-C", str(repo), *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"gitevo {' '.join(args)} failed: {out.stderr.strip()[-400:]}")
    return out.stdout


def make_template(where: Path, workers: int, screen: float, full: float,
                  promote: float) -> Path:
    repo = where / "template"
    subprocess.run([sys.executable, "-m", "gitevo", "init", str(repo), "--template", "toy",
                    "--no-eval"], check=True, capture_output=True)
    toml = repo / "gitevo.toml"
    text = toml.read_text()
    text = text.replace('command = "python fitness.py --metrics',
                        f'command = "{PACE}python fitness.py --points {{points}} --metrics')
    text = text.replace("workers = 2", f"workers = {workers}")
    text = text.replace("timeout = 30", f'''timeout = 120
[fitness.vars]
points = "121"
pace = "{full}"
[fitness.cascade]
rungs = [{{ vars = {{ points = "15", pace = "{screen}" }}, promote = {promote} }}]
promotion = "sync"''')
    toml.write_text(text)
    git(repo, "commit", "-qam", "asha bench: a cascade with uneven evaluation times")
    gitevo(repo, "seed")
    return repo


def one(template: Path, dest: Path, promotion: str, children: int) -> dict:
    repo = Path(shutil.copytree(template, dest, symlinks=True))
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace('promotion = "sync"',
                                             f'promotion = "{promotion}"'))
    git(repo, "commit", "-q", "--allow-empty", "-am", f"promotion {promotion}")
    started = time.monotonic()
    out = gitevo(repo, "generation", "--n", str(children), "--json")
    wall = time.monotonic() - started
    summary = [json.loads(line) for line in out.splitlines()
               if line.startswith('{"kind": "summary"')][-1]
    stats = json.loads(git(repo, "show", "gitevo/main/ledger:stats.json"))
    rung = stats["cascade"][0]
    return {"wall": wall, "evaluate": summary["time"]["wall"],
            "busy": summary["busy"]["fitness"], "promoted": rung["promoted"],
            "early": rung.get("promoted_early", 0),
            "best": summary["best"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--promote", type=float, default=0.5)
    parser.add_argument("--screen", type=float, default=1.0, help="seconds at 1x")
    parser.add_argument("--full", type=float, default=3.0, help="seconds at 1x")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitevo-asha-") as tmp:
        where = Path(tmp)
        template = make_template(where, args.workers, args.screen, args.full, args.promote)
        ratios: dict[str, list[float]] = {"async": [], "asha": []}
        print(f"{args.children} children, {args.workers} workers, promote {args.promote}, "
              f"screen {args.screen}-{4 * args.screen:g} s, full {args.full}-"
              f"{4 * args.full:g} s per child")
        for r in range(args.rounds):
            runs = {p: one(template, where / f"{p}-{r}", p, args.children)
                    for p in ("sync", "async", "asha")}
            for p, f in runs.items():
                use = f["busy"] / (args.workers * f["evaluate"])
                print(f"round {r + 1} {p:>5}: generation {f['wall']:6.1f} s, workers busy "
                      f"{use:5.1%}, promoted {f['promoted']} ({f['early']} early), best "
                      f"accuracy {f['best']:.4f}")
            for p, out in ratios.items():
                out.append(runs[p]["wall"] / runs["sync"]["wall"])
                print(f"round {r + 1}: {p}/sync wall time {out[-1]:.3f}")
        for p, out in ratios.items():
            print(f"median {p}/sync wall time over {args.rounds} rounds: "
                  f"{statistics.median(out):.3f}")


if __name__ == "__main__":
    main()
