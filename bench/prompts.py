"""What the evidence costs in prompt size, and whether every prompt rebuilds from git.

    python bench/prompts.py                        # 4 generations of 8, the shipped budgets
    python bench/prompts.py --generations 6 --n 12 --history 6 --inspiration 2

A guided toy run through the `command` provider, answered by the scripted responder of
the tests (tests/responder.py: it reads gitevo's real prompts and answers as a model
would; some answers are prose or broken code, so failures enter the history). With the
notebook on, history and inspiration as asked. Prints, per section, the mean and largest
size in estimated tokens against its budget, the stable (cacheable) part against the
whole first message, the notebook call's tokens, and how many of the run's prompts
rebuild byte for byte from refs and notes (pipeline/replay.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESPONDER = ROOT / "tests" / "responder.py"


def gitevo(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "gitevo", *args], check=True,
                          capture_output=True, text=True).stdout


def make_repo(home: Path, args: argparse.Namespace) -> Path:
    repo = home / "toy"
    gitevo("init", str(repo), "--template", "toy")
    text = (repo / "gitevo.toml").read_text()
    command = (f"GITEVO_RESPONDER_SLOPPY=5 GITEVO_RESPONDER_BROKEN=4 {sys.executable} "
               f"{RESPONDER}")
    text = text.replace('provider = "offline"', f'provider = "command"\ncommand = "{command}"'
                        '\nconcurrency = 4\nrepair_turns = 0')
    text = text.replace("prob_eot = 0.0", "prob_eot = 0.3").replace("prob_mutation = 0.7",
                                                                      "prob_mutation = 0.4")
    text += (f"\n[prompt]\nhistory = {args.history}\ninspiration = {args.inspiration}\n"
             "notebook = true\n")
    (repo / "gitevo.toml").write_text(text)
    subprocess.run(["git", "-C", str(repo), "commit", "-qam", "bench"], check=True)
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--history", type=int, default=4)
    parser.add_argument("--inspiration", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from gitevo import config
    from gitevo.pipeline import replay
    from gitevo.store.gitstore import Store, ledger_ref, llm_notes_ref
    from gitevo.store.individuals import load_all
    from gitevo.variation import sections, task

    with tempfile.TemporaryDirectory() as home:
        repo = make_repo(Path(home), args)
        gitevo("-C", str(repo), "run", "--generations", str(args.generations), "--n",
               str(args.n))
        store, conf = Store(repo), config.load(repo / "gitevo.toml")
        records = {i.id: json.loads(store.read_note(llm_notes_ref("main"), i.commit))
                   for i in load_all(store, "main").values() if i.generation}
        text = task.render(store, conf, None)
        same = sum(replay.rebuild(store, conf, "main", ident, task_text=text).variable
                   == r["turns"][0]["user"] for ident, r in records.items())
        head = store.resolve_ref(ledger_ref("main"))
        books = [json.loads(n) for c in store.first_parent_chain(head)
                 if (n := store.read_note(llm_notes_ref("main"), c))]
    late = list(records.values())
    print(f"{len(records)} prompts over {args.generations} generations of {args.n} "
          f"(history {args.history}, inspiration {args.inspiration}, notebook on)")
    print(f"{'section':<12} {'mean':>6} {'max':>6} {'budget':>7}  (estimated tokens)")
    for name, budget in conf.prompt.tokens.items():
        sizes = [sections.tokens(r["sections"][name]) for r in late]
        print(f"{name:<12} {statistics.mean(sizes):6.0f} {max(sizes):6d} {budget:7d}")
    stable = [sections.tokens(r["stable"]) for r in late]
    whole = [sections.tokens(r["stable"] + r["turns"][0]["user"]) for r in late]
    print(f"stable part {statistics.mean(stable):.0f} of {statistics.mean(whole):.0f} tokens "
          f"in the first message on average ({statistics.mean(stable) / statistics.mean(whole):.0%}"
          f" cacheable); one stable text across the run: "
          f"{len({r['stable'] for r in late}) == 1}")
    spent = [(b["generation"], b["usage"]["input_tokens"], b["usage"]["output_tokens"])
             for b in reversed(books)]
    print("notebook calls (generation, input tokens, output tokens): "
          + ", ".join(f"({g}, {i}, {o})" for g, i, o in spent))
    print(f"rebuilt byte for byte from refs and notes: {same} of {len(records)}")


if __name__ == "__main__":
    main()
