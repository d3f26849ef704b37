"""Does the learned allocation buy more improvements per dollar than drawing uniformly?

    python bench/allocation.py                       # both scenarios, 5 seeds, 8 generations
    python bench/allocation.py --seeds 5 --generations 10

Three models make one ensemble, each the `command` provider running this file with
--answer. A model answers a prompt well with its own known probability (the scripted
responder's answer, tests/responder.py, as the project's tests use) and otherwise with
prose that holds no code, as the corpus's no_diff answer does (refused); each has its
own price per token. Whether an applied answer improves on its parent is the toy
target's own business. Two scenarios:

* one clearly better: model `strong` answers well 90% of the time, `weak` and `pricey`
  15% (`pricey` at twice the price);
* all equal: three models that answer well 50% of the time at one price.

Each runs the toy template for G generations of 8 children, with `allocation = "uniform"`
and `"bandit"`, over several seeds, and reads the ledger: improvements (children that
entered the population, as `gitevo status` counts them), dollars, and the share of calls
the best model got. Prints the improvements per dollar of each allocation and their
ratio (target: >= 1.5 when one model is clearly better, >= 0.9 when all are equal).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# model name -> (probability of a good answer, USD per million input and output tokens)
SCENARIOS = {
    "one clearly better": {"strong": (0.9, 1.0), "weak": (0.15, 1.0), "pricey": (0.15, 2.0)},
    "all equal": {"a": (0.5, 1.0), "b": (0.5, 1.0), "c": (0.5, 1.0)},
}
NO_CODE = ("I looked at this block carefully and I think it is already well balanced; "
           "changing it would most likely make things worse, so I suggest leaving it.")


def answer() -> None:
    """--answer: one call of the command provider (prompt on stdin, answer on stdout)."""
    from tests.responder import answer as scripted

    prompt = sys.stdin.read()
    name = os.environ["GITEVO_MODEL"]
    good = float(os.environ[f"BENCH_P_{name.upper()}"])
    draw = int(hashlib.sha256((prompt + name).encode()).hexdigest()[:8], 16) / 16 ** 8
    print(scripted(prompt) if draw < good else NO_CODE)


def configured(text: str, models: dict[str, tuple[float, float]], mode: str,
               seed: int) -> str:
    """The toy's gitevo.toml with the ensemble in place of [llm], and the allocation."""
    tables = "".join(
        f'[[llm]]\nname = "{name}"\nprovider = "command"\nmodel = "{name}"\n'
        f'command = "{sys.executable} {Path(__file__).resolve()} --answer"\n'
        f"concurrency = 4\nprices = {{ input = {price}, output = {price} }}\n"
        + ("repair_turns = 0\n" if i == 0 else "") + "\n"
        for i, (name, (_, price)) in enumerate(models.items()))
    start = text.index("[llm]")
    end = text.find("\n[", start + 1)
    text = text[:start] + tables + (text[end + 1:] if end != -1 else "")
    return text.replace("seed = 0\n", f'seed = {seed}\nallocation = "{mode}"\n')


@dataclass
class Outcome:
    calls: dict[str, int]
    improvements: int
    cost: float


def run_one(models: dict[str, tuple[float, float]], mode: str, seed: int, generations: int,
            workdir: Path) -> Outcome:
    from gitevo.config import load
    from gitevo.pipeline import arms
    from gitevo.store import ledger
    from gitevo.store.gitstore import Store

    repo = workdir / f"{mode}-{seed}"
    env = {**os.environ, **{f"BENCH_P_{n.upper()}": str(p) for n, (p, _) in models.items()},
           "PYTHONPATH": str(ROOT)}
    gitevo = [sys.executable, "-m", "gitevo"]
    subprocess.run([*gitevo, "init", str(repo), "--template", "toy"], check=True,
                   env=env, capture_output=True)
    toml = repo / "gitevo.toml"
    toml.write_text(configured(toml.read_text(), models, mode, seed))
    subprocess.run(["git", "-C", str(repo), "commit", "-qam", "bench"], check=True)
    subprocess.run([*gitevo, "-C", str(repo), "run", "--generations", str(generations),
                    "--n", "8", "-q"], check=True, env=env, capture_output=True)
    conf = load(toml)
    # the allocation's own books: what each model's calls cost and how many improved
    earned = arms.observe(conf, ledger.history(Store(repo), "main"))[arms.MODEL]
    calls = {name: earned[name].calls if name in earned else 0 for name in models}
    return Outcome(calls, sum(a.improvements for a in earned.values()),
                   sum(a.cost for a in earned.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--generations", type=int, default=8)
    args = parser.parse_args()
    if args.answer:
        answer()
        return
    with tempfile.TemporaryDirectory(prefix="gitevo-bench-allocation-") as tmp:
        for scenario, models in SCENARIOS.items():
            best = max(models, key=lambda n: models[n][0] / models[n][1])
            per_dollar = {}
            for mode in ("uniform", "bandit"):
                total = Outcome(dict.fromkeys(models, 0), 0, 0.0)
                for seed in range(args.seeds):
                    folder = Path(tmp) / scenario.replace(" ", "-")
                    folder.mkdir(exist_ok=True)
                    one = run_one(models, mode, seed, args.generations, folder)
                    total.calls = {n: total.calls[n] + one.calls[n] for n in models}
                    total.improvements += one.improvements
                    total.cost += one.cost
                calls = sum(total.calls.values())
                per_dollar[mode] = total.improvements / total.cost
                print(f"{scenario:>18} {mode:>7}: {calls} calls, best model {best!r} got "
                      f"{total.calls[best] / calls:.0%}; {total.improvements} improvements "
                      f"for ${total.cost:.4f} = {per_dollar[mode]:.0f} per dollar "
                      f"(calls per model {total.calls})", flush=True)
            target = 1.5 if scenario == "one clearly better" else 0.9
            ratio = per_dollar["bandit"] / per_dollar["uniform"]
            print(f"{scenario:>18}: bandit/uniform improvements per dollar {ratio:.2f}x "
                  f"(target >= {target}x): {'met' if ratio >= target else 'NOT met'}",
                  flush=True)


if __name__ == "__main__":
    main()
