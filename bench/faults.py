"""Crash recovery under SIGKILL: kill `gitevo generation` at moments spread over a whole
generation, run it again, and check that nothing was lost, doubled or left behind.

    python bench/faults.py                     # 50 trials: offline, with an LLM, cascaded
                                               # (two kinds of asynchronous promotion)
    python bench/faults.py --trials 10 --seed 3

Four prepared toy repositories (seed evaluated) serve as templates: one evolving with
the offline operators, one through the `command` provider and tests/responder.py (a
scripted LLM: prompts in, diffs out, deterministic), and two offline under a fidelity
cascade (every child screened on 15 points, the better half measured on all 121), both
promoting asynchronously on two workers: one as soon as a child is certain to be
promoted (the default), one by ASHA's rule. Each
is first run once uninterrupted: that run's generation 1 is the reference, and its
length sets the kill window. Each trial
copies a template, starts `gitevo generation --n 8 --json` and sends SIGKILL after a
delay drawn from its own slice of the window (stratified, so the kills cover start-up,
LLM calls, patching, commits, evaluations, note writes and the ledger commit). The last
progress event before the kill names the moment. Then the same command runs to the end
and the repository is checked with plain git:

- `git fsck --strict` passes;
- the generation-1 branches are exactly the reference's ids, each one commit whose
  parents are the commits of the parents its Gitevo-Parents trailer names, each with a
  fitness note;
- no lock and no exported tree (for evaluation or a proposal's checks) are left under
  .git/gitevo;
- the ledger holds generations 0 and 1, one commit each, and generation 1's population
  (ids, trees, objectives) equals the reference's;
- under the cascade, each screening note and each promotion record was written once,
  every promotion recorded before the kill is there unchanged after the rerun, each
  promotion follows its rule (an early one was certain given the siblings scored and
  the number still to come that it records, or under ASHA among the best half, rounded
  down, of the siblings scored), the whole rung's picks were all promoted (and, but
  under ASHA, no one else), the promoted were measured in full, everyone else scored
  was screened out, and the population holds only individuals measured in full; every
  child's screening result and final status are the reference's: no rung ran twice
  and no promotion changed. Under ASHA, which child goes on depends on the order
  results come in, so only the screening results are compared, not the promotions or
  the population.
(A kill that lands after the ledger commit leaves a finished generation: it is checked
as it is, without a rerun.)

It prints the trials per moment and every broken invariant; exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gitevo import config as cfg
from gitevo.pipeline import cascade, selection
from gitevo.store import ledger
from gitevo.store.fitness import VALID, Evaluation
from gitevo.store.gitstore import Store, process_alive

HERE = Path(__file__).resolve().parent
RESPONDER = HERE.parent / "tests" / "responder.py"
OFFSPRING = 8
# a fitness that takes a little while, so evaluations are a moment a kill can land in
SLOW_FITNESS = 'command = "sleep 0.1; python fitness.py'
KINDS = ("offline", "guided", "cascade", "asha")
RUNG = "refs/notes/gitevo/main-rung1"
PROMOTED = RUNG + "-promoted"
CASCADE = """
[fitness.vars]
points = "121"
[fitness.cascade]
rungs = [{ vars = { points = "15" }, promote = 0.5 }]
promotion = "%s"
"""


@dataclass
class Trial:
    kind: str  # one of KINDS
    delay: float
    moment: str = ""
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def gitevo(repo: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gitevo", "-C", str(repo), *args],
                          capture_output=True, text=True, **kwargs)


# ---- the two templates -------------------------------------------------------------------

def make_template(where: Path, kind: str) -> Path:
    """A toy repository, seed evaluated, evolving offline or through the scripted LLM."""
    repo = where / kind
    out = subprocess.run([sys.executable, "-m", "gitevo", "init", str(repo), "--template",
                          "toy"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"gitevo init failed: {out.stderr.strip()}")
    text = _swap((repo / "gitevo.toml").read_text(), 'command = "python fitness.py',
                 SLOW_FITNESS)
    if kind in ("cascade", "asha"):
        text = _swap(text, "fitness.py --metrics", "fitness.py --points {points} --metrics")
        promotion = "asha" if kind == "asha" else "async"
        text = _swap(text, "timeout = 30", "timeout = 30" + CASCADE % promotion)
    if kind == "guided":
        command = f"{sys.executable} {RESPONDER}"
        text = _swap(text, 'provider = "offline"',
                     f'provider = "command"\ncommand = "{command}"\nconcurrency = 3')
        text = _swap(text, "prob_eot = 0.0", "prob_eot = 0.3")
    (repo / "gitevo.toml").write_text(text)
    git(repo, "commit", "-qam", f"faults bench: {kind}")
    return repo


def reference(template: Path, where: Path) -> tuple[Path, float]:
    """An uninterrupted generation on a copy of `template`, and how long it took."""
    repo = copy(template, where / f"{template.name}-reference")
    started = time.monotonic()
    out = gitevo(repo, "generation", "--n", str(OFFSPRING), "--quiet")
    if out.returncode != 0:
        raise SystemExit(f"reference generation failed: {out.stderr.strip()}")
    return repo, time.monotonic() - started


def copy(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


# ---- one trial ---------------------------------------------------------------------------

def _swap(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced; a template that no longer holds `old` stops the bench
    (else the guided trials would quietly run offline)."""
    if old not in text:
        raise SystemExit(f"faults bench: the toy template no longer has {old!r}")
    return text.replace(old, new)


def run_trial(trial: Trial, template: Path, ref: Path, where: Path) -> Trial:
    repo = copy(template, where / f"trial-{trial.kind}-{trial.delay:.3f}")
    started = time.monotonic()
    trial.moment = kill_at(repo, trial.delay)
    decided = notes(repo, PROMOTED)
    # rerun what was interrupted; a generation whose ledger commit landed is finished
    rerun = ledger_length(repo) < 2
    if rerun:
        out = gitevo(repo, "generation", "--n", str(OFFSPRING), "--quiet", timeout=600)
        if out.returncode != 0:
            trial.problems.append(f"rerun failed: {out.stderr.strip()[-300:]}")
    if not trial.problems:
        trial.problems += check(repo, ref, rerun, decided)
    trial.seconds = time.monotonic() - started
    shutil.rmtree(repo, ignore_errors=True)
    return trial


def kill_at(repo: Path, delay: float) -> str:
    """Start a generation, SIGKILL it after `delay` seconds; the moment it was in."""
    proc = subprocess.Popen([sys.executable, "-m", "gitevo", "-C", str(repo), "generation",
                             "--n", str(OFFSPRING), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    events: list[dict] = []
    reader = threading.Thread(target=lambda: events.extend(
        json.loads(line) for line in proc.stdout if line.startswith("{")), daemon=True)
    reader.start()
    time.sleep(delay)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(5)
    return "after the end" if finished and proc.returncode == 0 else moment(list(events))


def moment(events: list[dict]) -> str:
    kinds = [e["kind"] for e in events]
    if "summary" in kinds:
        return "after the ledger commit"
    if "plan" not in kinds:
        return "start-up: recovery, plan"
    if "screened" in kinds:
        return "cascade: full evaluations"
    if "promoted" in kinds:
        return "cascade: screens, promotions"
    finished = kinds.count("evaluation_finished")
    if finished >= OFFSPRING:
        return "selection, ledger commit"
    last = next((k for k in reversed(kinds) if k not in ("notice", "evaluating")), "plan")
    return {"plan": "LLM calls, patching", "llm_call": "LLM calls, patching",
            "validated": "validation, commits", "rejected": "LLM calls, patching",
            "committed": "commits, provenance notes",
            "evaluation_started": "evaluations", "budget_spent": "LLM calls, patching",
            "evaluation_finished": "evaluations, fitness notes"}.get(last, last)


# ---- the invariants ------------------------------------------------------------------------

def check(repo: Path, ref: Path, rerun: bool = True,
          decided: dict[str, dict] | None = None) -> list[str]:
    """What is wrong with `repo` after a trial, next to the uninterrupted run `ref`
    (`decided`: the promotions recorded when the kill landed). Without a rerun (the kill
    came after the ledger commit) the killed process may still have held the lock: a
    dead holder's lock is stale, and the next gitevo takes it over."""
    problems = []
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=repo, capture_output=True,
                          text=True)
    if fsck.returncode != 0:
        problems.append(f"git fsck --strict: {fsck.stderr.strip()[-300:]}")
    mine, theirs = branches(repo), branches(ref)
    if sorted(mine) != sorted(theirs):
        problems.append(f"branches {sorted(mine)} != reference {sorted(theirs)}")
    everyone = {**branches(repo, "g000-*"), **mine}
    for ident, commit in mine.items():
        problems += individual_problems(repo, ident, commit, everyone)
    state = repo / ".git" / "gitevo"
    lock = state / "lock"
    if lock.exists() and (rerun or _lock_holder_alive(lock)):
        problems.append("the lock is still there")
    for work in (state / "worktrees" / "main", state / "proposals" / "main"):
        if work.is_dir() and any(work.iterdir()):
            problems.append(f"exported trees left in {work.relative_to(repo)}: "
                            f"{sorted(p.name for p in work.iterdir())}")
    if ledger_length(repo) != 2:
        problems.append(f"ledger has {ledger_length(repo)} commits, expected 2")
    if not optimistic(repo) and population(repo) != population(ref):
        problems.append("generation 1's population differs from the uninterrupted run's")
    if git(ref, "rev-parse", "--verify", "-q", RUNG, check=False).strip():
        problems += cascade_problems(repo, ref) + promotion_problems(repo, decided or {})
    return problems


def optimistic(repo: Path) -> bool:
    """Whether promotions follow ASHA's rule, and so depend on the order results come in."""
    return 'promotion = "asha"' in (repo / "gitevo.toml").read_text()


def cascade_problems(repo: Path, ref: Path) -> list[str]:
    """A screening note (or promotion record) written more than once, or screening
    results and final statuses (promoted or screened) other than the uninterrupted run's
    (under ASHA, where promotions depend on timing: the screening results alone)."""
    problems = []
    for ref_name, what in ((RUNG, "screening notes"), (PROMOTED, "promotion records")):
        written = written_notes(repo, ref_name)
        twice = sorted({p for p in written if written.count(p) > 1})
        if twice:
            problems.append(f"{what} written more than once: {twice}")
    mine, theirs = outcomes(repo), outcomes(ref)
    if optimistic(repo):
        mine, theirs = ({i: o[:2] for i, o in out.items()} for out in (mine, theirs))
    if mine != theirs:
        problems.append("screening results or promotions differ from the uninterrupted run's")
    return problems


def written_notes(repo: Path, ref: str) -> list[str]:
    """The paths the history of notes `ref` wrote, each as often as a commit wrote it."""
    return [path for commit in git(repo, "log", "--format=%H", ref, "--", check=False).split()
            for path in git(repo, "diff-tree", "--no-commit-id", "-r", "--name-only",
                            "--root", commit).split()]


def notes(repo: Path, ref: str) -> dict[str, dict]:
    return {c: json.loads(t) for c, t in Store(repo).read_notes(ref).items()}


def promotion_problems(repo: Path, decided: dict[str, dict]) -> list[str]:
    """Each recorded promotion against the rule that took it, the children's final
    statuses against the promotions, and the population against the full measurements;
    `decided`: records that must still be there, unchanged."""
    store = Store(repo)
    config = cfg.load(repo / cfg.CONFIG_NAME)
    generation = ledger.read(store, "main")
    screen, final = notes(repo, RUNG), notes(repo, "refs/notes/gitevo/main")
    records = notes(repo, PROMOTED)
    problems = [f"the promotion of {c[:10]} recorded before the kill changed"
                for c, record in decided.items() if records.get(c) != record]
    ids = {r["id"]: r["commit"] for r in generation.offspring if r.get("commit")}
    rung = config.fitness.rungs[0]
    seed = config.evolution.seed * 100_003 + generation.generation * 101 + 1

    def best(among: list[str], n: int) -> set[str]:
        ok = [i for i in among if screen[ids[i]]["status"] == "ok"]
        results = [Evaluation.from_dict(screen[ids[i]]) for i in ok]
        values = [[r.objectives.get(o, math.nan) for o in config.objective_names]
                  for r in results]
        violations = [cascade.violation(r, config) for r in results]
        return {ok[k] for k in selection.best_by_rank(values, config.senses, violations,
                                                      min(n, len(ok)), seed)}

    def certain(among: list[str], remaining: int) -> set[str]:
        results = {i: Evaluation.from_dict(screen[ids[i]]) for i in among}
        return set(cascade.certain(results, remaining, rung, config, {}))

    promoted = {i for i, c in ids.items() if c in records}
    for ident in sorted(promoted):
        record = records[ids[ident]]
        if record["early"] and config.fitness.promotion == "asha":
            share = math.floor(rung.promote * len(record["among"]))
            if ident not in best(record["among"], share):
                problems.append(f"{ident} was promoted early from outside the best {share} "
                                f"of {record['among']}")
        elif record["early"] and ident not in certain(record["among"], record["remaining"]):
            problems.append(f"{ident} was promoted early, though not yet certain: {record}")
        if final[ids[ident]]["status"] == "screened":
            problems.append(f"{ident} was promoted, then screened out")
    scored = [i for i in ids if screen[ids[i]]["status"] == "ok"]
    whole = best(scored, math.ceil(rung.promote * len(scored)))
    if whole - promoted:
        problems.append(f"the whole rung's rule picks {sorted(whole - promoted)}, never "
                        "promoted")
    if config.fitness.promotion != "asha" and promoted - whole:
        problems.append(f"{sorted(promoted - whole)} promoted, though the whole rung's "
                        "rule does not pick them")
    problems += [f"{i} was not promoted, yet its note says {final[ids[i]]['status']}"
                 for i in sorted(set(scored) - promoted)
                 if final[ids[i]]["status"] != "screened"]
    problems += [f"{m.id} is in the population without a full measurement"
                 for m in generation.population
                 if m.id != "g000-000" and (m.id not in promoted
                                            or final[m.commit]["status"] not in VALID)]
    stats = generation.stats["cascade"][0]
    if (stats["promoted"], stats["promoted_early"]) != (
            len(promoted), sum(records[ids[i]]["early"] for i in promoted)):
        problems.append(f"the ledger's rung figures {stats} disagree with the records")
    return problems


def outcomes(repo: Path) -> dict[str, tuple]:
    """Each child's screening result and final status."""
    out = {}
    for ident, commit in branches(repo).items():
        notes = [git(repo, "notes", "--ref", ref, "show", commit, check=False)
                 for ref in (RUNG.removeprefix("refs/notes/"), "gitevo/main")]
        screen, final = (json.loads(n) if n.strip() else {} for n in notes)
        out[ident] = (screen.get("status"), screen.get("objectives"), final.get("status"))
    return out


def _lock_holder_alive(lock: Path) -> bool:
    """Whether the pid written in gitevo's lock file runs (an unreadable lock counts)."""
    fields = lock.read_text().split()
    return not fields or not fields[0].isdigit() or process_alive(int(fields[0]))


def ledger_length(repo: Path) -> int:
    count = git(repo, "rev-list", "--count", "gitevo/main/ledger", check=False).strip()
    return int(count) if count.isdigit() else 0


def branches(repo: Path, pattern: str = "g001-*") -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
              f"refs/heads/gitevo/main/{pattern}")
    return {line.split()[0].rsplit("/", 1)[1]: line.split()[1] for line in out.splitlines()}


def individual_problems(repo: Path, ident: str, commit: str,
                        everyone: dict[str, str]) -> list[str]:
    problems = []
    trailers = git(repo, "log", "-1", "--format=%(trailers:key=Gitevo-Parents,valueonly)",
                   commit).split()
    named = [everyone.get(p.strip(","), f"missing {p}") for p in trailers]
    actual = git(repo, "rev-parse", f"{commit}^@").split()
    if sorted(named) != sorted(actual):
        problems.append(f"{ident}: parents {actual} are not its named parents {named}")
    note = git(repo, "notes", "--ref", "gitevo/main", "show", commit, check=False)
    try:
        status = json.loads(note)["status"]
    except (ValueError, KeyError, TypeError):
        status = None
    if status is None:
        problems.append(f"{ident}: no fitness note")
    return problems


def population(repo: Path) -> list[tuple[str, str, dict]]:
    members = json.loads(git(repo, "show", "gitevo/main/ledger:population.json"))
    return [(m["id"], git(repo, "rev-parse", f"{m['commit']}^{{tree}}").strip(),
             m["objectives"]) for m in members]


# ---- the bench ---------------------------------------------------------------------------

def trials_for(kind: str, count: int, window: float, rng: random.Random) -> list[Trial]:
    """`count` delays, one drawn from each equal slice of the window."""
    return [Trial(kind, window * (i + rng.random()) / count) for i in range(count)]


def run(trials: int, seed: int, where: Path, log=print) -> list[Trial]:
    rng = random.Random(seed)
    done: list[Trial] = []
    shares = [trials // len(KINDS) + (i < trials % len(KINDS)) for i in range(len(KINDS))]
    for kind, count in zip(KINDS, shares, strict=True):
        if count == 0:
            continue
        template = make_template(where, kind)
        ref, length = reference(template, where)
        log(f"{kind}: an uninterrupted generation takes {length:.2f}s; {count} kills in it")
        for trial in trials_for(kind, count, length * 1.1, rng):
            done.append(run_trial(trial, template, ref, where))
            if trial.problems:
                log(f"  FAILED after a kill at {trial.delay:.2f}s ({trial.moment}): "
                    + "; ".join(trial.problems))
    return done


def report(done: list[Trial]) -> str:
    lines = [f"{'moment of the kill':<30} " + " ".join(f"{k:>8}" for k in KINDS)
             + f" {'broken':>8}"]
    by = Counter((t.moment, t.kind) for t in done)
    broken = Counter(t.moment for t in done if t.problems)
    for name in sorted({t.moment for t in done}):
        lines.append(f"{name:<30} " + " ".join(f"{by[name, k]:>8}" for k in KINDS)
                     + f" {broken[name]:>8}")
    bad = sum(1 for t in done if t.problems)
    mean = sum(t.seconds for t in done) / max(1, len(done))
    lines.append(f"{len(done)} trials, {bad} with a broken invariant; "
                 f"{mean:.1f}s per trial (kill, rerun, checks)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitevo-faults-") as tmp:
        done = run(args.trials, args.seed, Path(tmp))
    print(report(done))
    sys.exit(1 if any(t.problems for t in done) else 0)


if __name__ == "__main__":
    main()
