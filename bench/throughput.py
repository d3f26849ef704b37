"""Offspring evaluated per minute: the local pool with 1, 2 and 4 workers, and Ray.

Each evaluation is the toy template's, with a fitness command that first burns
`--burn` seconds of CPU (a stand-in for training), so the figure measures what an
executor adds around CPU-bound work: validation, process start-up, trees exported
(local) or archived, shipped and unpacked (Ray). Every configuration evaluates the
same `--n` jobs of the seed commit, through make_executor as a generation would, and
the ratios are against 1 local worker measured in this same run. On a machine with C
cores, local throughput should grow to about C workers and stay flat beyond.

    python bench/throughput.py                 # 16 evaluations each, 0.5 s CPU apiece
    python bench/throughput.py --n 24 --burn 1 --no-ray
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from gitevo import config
from gitevo.execution.executors import make_executor
from gitevo.execution.job import Job, make_job
from gitevo.store.gitstore import Store, individual_ref

BURN = ("python -c 'import sys, time; t = time.process_time()\n"
        "while time.process_time() - t < float(sys.argv[1]): pass' {burn} && ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="evaluations per configuration")
    parser.add_argument("--burn", type=float, default=0.5, help="CPU seconds per evaluation")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the Ray cluster")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitevo-throughput-") as tmp:
        repo = _toy(Path(tmp))
        rows = [_measure(repo, f'kind = "local"\nworkers = {w}\ngpus = []\n', f"local x{w}",
                         args) for w in (1, 2, 4)]
        if not args.no_ray:
            import ray

            ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
                     logging_level="ERROR")
            rows.append(_measure(repo, 'kind = "ray"\n', f"ray ({args.ray_cpus} CPUs)", args))
            ray.shutdown()
    _print(rows, args)


def _toy(tmp: Path) -> Path:
    env = {**os.environ, "HOME": str(tmp), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "bench", "GIT_COMMITTER_NAME": "bench",
           "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    repo = tmp / "toy"
    subprocess.run([sys.executable, "-m", "gitevo", "init", str(repo), "--template", "toy"],
                   check=True, capture_output=True, env=env)
    return repo


def _measure(repo: Path, executor: str, label: str, args: argparse.Namespace) -> dict:
    text = (repo / "gitevo.toml").read_text()
    text = text[:text.index("[executor]")] + "[executor]\n" + executor
    text = text.replace('command = "', 'command = "' + BURN.replace("{burn}", str(args.burn))
                        .replace("\n", "\\n").replace('"', '\\"'), 1)
    conf = config.parse(text, repo / "gitevo.toml")
    store = Store(repo)
    runner = make_executor(conf, store)
    seed = store.resolve_ref(individual_ref("main", "g000-000"))
    start = time.monotonic()
    results = [r for _, r in runner.run(_jobs(conf, store, seed, args.n, repo))]
    seconds = time.monotonic() - start
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{label}: {len(failed)} evaluations failed: {failed[0]}")
    return {"label": label, "workers": runner.workers, "seconds": seconds,
            "per_minute": 60 * len(results) / seconds}


def _jobs(conf: config.Config, store: Store, seed: str, n: int, repo: Path) -> Iterator[Job]:
    """Jobs made as a generation makes them: the tree exported just before it is needed."""
    work = repo / ".git" / "gitevo" / "bench"
    for i in range(n):
        workdir = work / f"b{i:03d}"
        store.remove_dir(workdir)
        store.export_tree(seed, workdir)
        yield dataclasses.replace(make_job(conf, f"b{i:03d}", workdir), commit=seed)


def _print(rows: list[dict], args: argparse.Namespace) -> None:
    base = rows[0]["per_minute"]
    print(f"{args.n} evaluations per row, {args.burn:g} s CPU each, {os.cpu_count()} cores")
    print(f"{'executor':<16} {'in flight':>9} {'seconds':>8} {'per minute':>11} {'ratio':>6}")
    for row in rows:
        print(f"{row['label']:<16} {row['workers']:>9} {row['seconds']:>8.1f} "
              f"{row['per_minute']:>11.1f} {row['per_minute'] / base:>6.2f}")


if __name__ == "__main__":
    main()
