"""What a fidelity cascade saves on ExquisiteNetV2: the same children trained with and
without it, on real CIFAR-10 images.

    tar xzf /work/shared/datasets/cifar10-jpeg.tar.gz -C /tmp
    python bench/cascade.py --data /tmp/cifar10-jpeg --children 8 --promote 0.25

One repository from the template (offline operators, the seed evaluated at --fidelity),
copied twice. Run A evaluates one generation of --children children in full; run B the
same generation under the template's cascade, `[fitness.cascade] rungs = [{ vars = {
budget = "screen" }, promote = P }]` (a quarter of the epochs on half the images).
Both have the same run seed, so they plan and propose the same children, the same code:
B's screen can be held against A's full results for every child, not only the promoted
ones. Then the seed is trained again with other training seeds, for the spread that
tells a real difference from noise. It prints the training seconds of each run (what
gitevo timed of trainer and scorer, in every note, screens included), their ratio, the
best validation accuracy and hypervolume after the generation, how many children the
screen promoted, and the rank correlation between screen and full over all children.

At --children 8 on 2 CPU cores the whole bench takes about 40 minutes.
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
sys.path.insert(0, str(ROOT))

from gitevo.pipeline.cascade import spearman, training_seconds  # noqa: E402
from gitevo.store import ledger  # noqa: E402
from gitevo.store.fitness import Evaluation  # noqa: E402
from gitevo.store.gitstore import (  # noqa: E402
    Store,
    notes_ref,
    rung_ref,  # noqa: E402
)


def gitevo(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([sys.executable, "-m", "gitevo", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL)


def notes(repo: Path, ref: str) -> dict[str, Evaluation]:
    store = Store(repo)
    return {c: Evaluation.from_dict(json.loads(t)) for c, t in store.read_notes(ref).items()}


def children(repo: Path) -> dict[str, str]:
    """Child id -> commit, for the generation just run."""
    rows = ledger.read(Store(repo), "main").offspring
    return {r["id"]: r["commit"] for r in rows if r.get("commit")}


def configure(repo: Path, promote: float | None) -> None:
    """The template's cascade with this promoted share, or (None) no cascade at all."""
    toml = repo / "gitevo.toml"
    text, start = toml.read_text(), "[fitness.cascade]"
    head, _, tail = text.partition(start)
    rest = tail.split("\n[", 1)[1] if "\n[" in tail else ""
    rungs = ("" if promote is None else f'{start}\nrungs = [{{ vars = {{ budget = "screen" '
             f'}}, promote = {promote} }}]\n\n')
    toml.write_text(head + rungs + ("[" + rest if rest else ""))
    subprocess.run(["git", "commit", "-qam", "the bench's cascade setting", "--allow-empty"],
                   cwd=repo, check=True)


def generation(repo: Path, n: int) -> float:
    start = time.perf_counter()
    gitevo("-C", str(repo), "generation", "--n", str(n))
    return time.perf_counter() - start


def seed_spread(data: str, fidelity: str, seeds: list[int], tmp: Path) -> list[float]:
    """The seed model's validation accuracy under other training seeds (train.py, which
    measures in process what the scorer measures apart: the same figures)."""
    repo = shutil.copytree(ROOT / "gitevo" / "templates" / "exquisitenetv2", tmp / "spread",
                           ignore=shutil.ignore_patterns("__pycache__"))
    out = []
    for seed in seeds:
        subprocess.run([sys.executable, "train.py", "--fidelity", fidelity, "--data", data,
                        "--seed", str(seed), "--metrics", "m.json"], cwd=repo, check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ,
                                                       "PYTHONDONTWRITEBYTECODE": "1"})
        out.append(json.loads((Path(repo) / "m.json").read_text())["accuracy"])
        print(f"seed model, training seed {seed}: accuracy {out[-1]:.4f}", flush=True)
    return out


def report(full: Path, screened: Path, seed_accuracy: float, spread: list[float]) -> None:
    a_ids, b_ids = children(full), children(screened)
    a_final, b_final = notes(full, notes_ref("main")), notes(screened, notes_ref("main"))
    b_screen = notes(screened, rung_ref("main", 1))
    a_seconds = sum(training_seconds(a_final[c]) for c in a_ids.values() if c in a_final)
    b_seconds = sum(training_seconds(b_screen[c]) for c in b_ids.values() if c in b_screen)
    # ok at the screen and not screened out: measured in full
    promoted = [i for i, c in b_ids.items() if c in b_screen and b_screen[c].ok
                and c in b_final and b_final[c].status != "screened"]
    b_seconds += sum(training_seconds(b_final[b_ids[i]]) for i in promoted)
    print(f"training seconds: without the cascade {a_seconds:.0f} s, with it {b_seconds:.0f} s"
          f" (ratio {b_seconds / a_seconds:.3f})")
    pairs = [(b_screen[b_ids[i]].objectives["accuracy"], a_final[c].objectives["accuracy"])
             for i, c in a_ids.items() if i in b_ids and b_ids[i] in b_screen
             and b_screen[b_ids[i]].ok and c in a_final and a_final[c].ok]
    rho = spearman([s for s, _ in pairs], [f for _, f in pairs])
    print(f"screen promoted {len(promoted)} of {len(b_ids)} children ({', '.join(promoted)});"
          f" rank correlation screen vs full over the {len(pairs)} children scored in both: "
          f"{'n/a' if rho is None else f'{rho:+.2f}'}")
    best_a = best_b = None
    for name, repo in (("without", full), ("with", screened)):
        stats = ledger.read(Store(repo), "main").stats
        best = stats["best"]["accuracy"]
        best_a, best_b = (best, best_b) if name == "without" else (best_a, best)
        print(f"{name} the cascade: best validation accuracy {best:.4f}, hypervolume "
              f"{stats['hypervolume']:.6g}")
    values = [seed_accuracy, *spread]
    sd = statistics.stdev(values)
    print(f"seed-to-seed spread of the seed model ({len(values)} training seeds): "
          f"{min(values):.4f}..{max(values):.4f}, sd {sd:.4f}; best with the cascade minus "
          f"best without: {best_b - best_a:+.4f} "
          f"({'within' if abs(best_b - best_a) <= max(values) - min(values) else 'outside'}"
          " the spread)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--fidelity", default="demo", help="the full evaluation")
    parser.add_argument("--promote", type=float, default=0.25)
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--spread-seeds", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitevo-cascade-bench-") as folder:
        tmp = Path(folder)
        full, screened = tmp / "full", tmp / "screened"
        start = time.perf_counter()
        gitevo("init", str(full), "--template", "exquisitenetv2", "--fidelity", args.fidelity,
               "--var", f"data={Path(args.data).resolve()}")
        seed = next(iter(notes(full, notes_ref("main")).values()))
        print(f"seed at {args.fidelity}: accuracy {seed.objectives['accuracy']:.4f} "
              f"({time.perf_counter() - start:.0f} s with prepare)", flush=True)
        shutil.copytree(full, screened, symlinks=True)
        configure(full, None)
        configure(screened, args.promote)
        for name, repo in (("without", full), ("with", screened)):
            print(f"generation of {args.children} {name} the cascade: "
                  f"{generation(repo, args.children):.0f} s wall", flush=True)
        spread = seed_spread(args.data, args.fidelity, args.spread_seeds, tmp)
        report(full, screened, seed.objectives["accuracy"], spread)


if __name__ == "__main__":
    main()
