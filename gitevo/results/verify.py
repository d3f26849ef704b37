"""`gitevo verify`: measure an individual's fitness again and hold it to its note.

The fresh measurement runs on a clean export of the individual's commit through the
same sandboxed path as a generation's (job.make_job + evaluate.evaluate), and is
kept in the note's `verifications` list whatever it shows. The note's top level, the
evaluation that selection used, is never changed, and keys this version does not
know are kept as they are.

Verify takes no lock: it may run for hours at paper fidelity while generations go on.
Its only write is one note, by compare-and-swap on the notes ref (Store.edit_notes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gitevo.config import Config
from gitevo.execution.evaluate import evaluate
from gitevo.execution.executors.local import thread_share
from gitevo.execution.job import make_job
from gitevo.execution.sandbox import kill_orphans
from gitevo.pipeline.prepare import prepare_seed
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import (
    BRANCH_PREFIX,
    GitError,
    Store,
    best_ref,
    individual_ref,
    notes_ref,
    process_alive,
)

# How far re-measuring one commit moves it, measured: the toy template and the
# ExquisiteNetV2 harness reproduce bit for bit at a fixed thread count (17 smoke
# individuals, 3 runs each; a cut-down demo on real CIFAR-10, twice). The thread
# count changes the order of float sums: at smoke the training loss moved in the 5th
# digit and the accuracy (80 images) never; the cut-down demo (3 epochs, 2,000
# validation images) moved 0.007 from 1 to 2 threads, where another seed moves it up
# to 0.03. Verify gives the fitness command the thread share a generation gives it,
# so on the same machine it reproduces exactly; the tolerance is for another machine
# or a GPU (cuDNN autotuning and atomics are not bit-reproducible). 0.02, also the
# template CI's, covers those and still catches a claim that is points too high;
# a count objective (params) is exact, and any rise of it fails.
DEFAULT_TOLERANCE = 0.02
_ID = re.compile(r"g\d{3,}-\d{3,}")


class VerifyError(RuntimeError):
    """Bad input to verify (an unknown objective, an individual with no note); one line."""


@dataclass
class Row:
    """One objective's old and new value."""

    name: str
    sense: str
    old: float | None
    new: float | None
    tolerance: float
    ok: bool | None  # None: not compared

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old


@dataclass
class Result:
    ident: str
    commit: str
    fidelity: str
    evaluation: Evaluation
    compared_with: str | None  # the fidelity compared at; None: nothing to compare with
    rows: list[Row]
    passed: bool | None  # None: recorded without a comparison
    reason: str  # one line: why it failed, or what was compared

    @property
    def failed(self) -> bool:
        return self.passed is False


def resolve_individual(store: Store, run: str, ref: str) -> tuple[str, str]:
    """(id, commit) of REF: an individual id, `best`, or a revision that is one's commit."""
    if ref == "best":
        commit = store.resolve_ref(best_ref(run))
        if commit is None:
            raise GitError(f"run {run!r} has no best individual yet (no generation recorded)")
    elif _ID.fullmatch(ref):
        commit = store.resolve_ref(individual_ref(run, ref))
        if commit is None:
            raise GitError(f"no individual {ref!r} in run {run!r}")
    else:
        commit = store.resolve(ref)
        if commit is None:
            raise GitError(f"{ref}: not an individual id, `best`, or a revision")
    prefix = f"{BRANCH_PREFIX}{run}/"
    idents = sorted(name[len(prefix):] for name, target in store.refs_under(prefix).items()
                    if target == commit and _ID.fullmatch(name[len(prefix):]))
    if not idents:
        raise GitError(f"{ref}: commit {commit[:10]} is not an individual of run {run!r}")
    return idents[0], commit


def parse_tolerance(values: Sequence[str], objectives: Sequence[str]) -> dict[str, float]:
    """Each objective's tolerance from `--tolerance` values: a bare number for every
    objective, NAME=NUMBER for one (which wins over a bare number, in any order)."""
    default, named = DEFAULT_TOLERANCE, {}
    for value in values:
        name, _, number = value.rpartition("=")
        if name and name not in objectives:
            raise VerifyError(f"--tolerance {value}: no objective {name!r} "
                              f"(objectives: {', '.join(objectives)})")
        try:
            amount = float(number)
        except ValueError:
            raise VerifyError(f"--tolerance {value}: {number!r} is not a number") from None
        if not math.isfinite(amount) or amount < 0:
            raise VerifyError(f"--tolerance {value}: must be a finite number >= 0")
        if name:
            named[name] = amount
        else:
            default = amount
    return {name: named.get(name, default) for name in objectives}


def verify(store: Store, config: Config, run: str, ref: str, fidelity: str | None = None,
           tolerance: Sequence[str] = (), log: Callable[[str], None] | None = None) -> Result:
    """Re-measure REF, compare with its note at the same fidelity, record the outcome."""
    tolerances = parse_tolerance(tolerance, config.objective_names)
    ident, commit = resolve_individual(store, run, ref)
    note = read_note(store, run, ident, commit)
    fidelity = fidelity or str(note.get("fidelity") or config.fitness.fidelity)
    if log is not None:
        log(f"{ident} ({commit[:10]}): evaluating at fidelity {fidelity}")
    fresh = measure(store, config, run, ident, commit, fidelity)
    baseline = _baseline(note, fidelity)
    rows, passed, reason = compare(config, baseline, fresh, tolerances)
    if passed is None:
        reason = (f"nothing to compare with: the note was measured at fidelity "
                  f"{note.get('fidelity')!r}, and no accepted verification at {fidelity!r} "
                  "yet; this measurement is recorded as the first there")
    result = Result(ident, commit, fidelity, fresh, fidelity if baseline else None, rows,
                    passed, reason)
    entry = {**fresh.to_dict(), "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "host": socket.gethostname(), "tolerance": tolerances,
             "compared_with": result.compared_with, "passed": passed}
    store.edit_notes(notes_ref(run), {commit: lambda current: _appended(current, entry)},
                     f"gitevo: verification of {ident} at fidelity {fidelity}")
    return result


def report_lines(result: Result) -> list[str]:
    """The old/new/delta table and a verdict line, for the terminal."""
    header = ("objective", "sense", "note", "now", "delta", "tolerance", "")
    body = [(r.name, r.sense, _fmt(r.old), _fmt(r.new),
             "-" if r.delta is None else f"{r.delta:+.6g}", f"{r.tolerance:g}",
             {True: "ok", False: "WORSE", None: ""}[r.ok]) for r in result.rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *body]]
    verdict = {True: "PASSED", False: "FAILED", None: "RECORDED"}[result.passed]
    return [*lines, f"{verdict} {result.ident} at fidelity {result.fidelity}: {result.reason}"]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def read_note(store: Store, run: str, ident: str, commit: str) -> dict[str, Any]:
    text = store.read_note(notes_ref(run), commit)
    if text is None:
        raise VerifyError(f"{ident} has no fitness note yet (its generation has not "
                          "evaluated it): nothing to verify")
    try:
        note = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VerifyError(f"{ident}: its fitness note is not JSON ({exc})") from None
    if not isinstance(note, dict) or "status" not in note:
        raise VerifyError(f"{ident}: its fitness note is not a gitevo evaluation")
    return note


def _baseline(note: dict[str, Any], fidelity: str) -> dict[str, Any] | None:
    """What to hold the fresh measurement to: the note's own evaluation at that fidelity,
    else the latest accepted verification there (a failed one claims nothing)."""
    if note.get("fidelity") == fidelity:
        return note
    for entry in reversed(note.get("verifications") or []):
        if (isinstance(entry, dict) and entry.get("fidelity") == fidelity
                and entry.get("status") == "ok" and entry.get("passed") is not False):
            return entry
    return None


def compare(config: Config, baseline: dict[str, Any] | None, fresh: Evaluation,
            tolerances: dict[str, float]) -> tuple[list[Row], bool | None, str]:
    """Rows per objective, passed (None: no baseline) and a one-line reason."""
    old = (baseline or {}).get("objectives") or {}
    rows = []
    for objective in config.objectives:
        name, sense = objective.name, objective.sense
        before, after = _number(old.get(name)), fresh.objectives.get(name)
        ok = None
        if before is not None and after is not None:
            slack = tolerances[name]
            ok = after >= before - slack if sense == "max" else after <= before + slack
        rows.append(Row(name, sense, before, after, tolerances[name], ok))
    if not fresh.ok:
        first = (fresh.error or "").strip().splitlines()
        return rows, False, f"the fresh evaluation is {fresh.status}" + (
            f": {first[0][:200]}" if first else "")
    if baseline is None:
        return rows, None, "nothing to compare with at this fidelity"
    if baseline.get("status") != "ok":
        return rows, True, f"the note recorded {baseline.get('status')!r}; it evaluates ok now"
    worse = [r for r in rows if r.ok is False]
    if worse:
        return rows, False, "; ".join(
            f"{r.name} {'fell' if r.sense == 'max' else 'rose'} from {r.old:.6g} to "
            f"{r.new:.6g}, beyond the tolerance {r.tolerance:g}" for r in worse)
    return rows, True, "every objective within tolerance of the note"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _appended(current: str | None, entry: dict[str, Any]) -> str:
    """The note as it is now (another writer may have added to it) plus `entry`."""
    note = json.loads(current) if current else {}
    if not isinstance(note, dict):
        raise VerifyError("the fitness note changed into something that is not a JSON object")
    verifications = note.get("verifications")
    note["verifications"] = [*(verifications if isinstance(verifications, list) else []),
                             entry]
    return _dump(note)


def _dump(note: dict[str, Any]) -> str:
    return json.dumps(note, indent=2, sort_keys=True) + "\n"


def merge_note_texts(commit: str, ours: str | None, theirs: str | None) -> str:
    """One note from two clones' versions: our keys first, every verification of both
    (each once). For `git notes merge` conflicts during sync."""
    if ours is None or theirs is None:
        return ours if ours is not None else theirs or ""
    try:
        mine, other = json.loads(ours), json.loads(theirs)
    except json.JSONDecodeError:
        return ours  # not gitevo's JSON: keep this clone's text
    if not isinstance(mine, dict) or not isinstance(other, dict):
        return ours
    merged = {**other, **mine}
    entries: dict[str, Any] = {}
    for entry in [*(other.get("verifications") or []), *(mine.get("verifications") or [])]:
        entries.setdefault(json.dumps(entry, sort_keys=True), entry)
    if entries:
        merged["verifications"] = sorted(entries.values(), key=_when)
    return _dump(merged)


def _when(entry: Any) -> str:
    return str(entry.get("when", "")) if isinstance(entry, dict) else ""


# ---- the measurement ---------------------------------------------------------------------

def measure(store: Store, config: Config, run: str, ident: str, commit: str,
            fidelity: str) -> Evaluation:
    """Evaluate `commit` at `fidelity` in a fresh export, removed afterwards whatever
    happens (Ctrl-C included: the fitness process group is killed on the way out)."""
    home = store.state_dir / "verify" / run
    _sweep(store, home)
    home.mkdir(parents=True, exist_ok=True)
    # not under worktrees/<run>/: a generation starting meanwhile clears that directory
    mine = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=home))
    try:
        (mine / "owner").write_text(f"{os.getpid()} {socket.gethostname()}\n")
        prepare_seed(store, config, run)  # this machine's cache may be empty
        tree = mine / "tree"
        store.export_tree(commit, tree)
        job = make_job(config, ident, tree, fidelity, pid_dir=mine / "running")
        needed = tuple(dict.fromkeys(job.objectives + tuple(
            c.metric for c in config.evolution.constraints)))
        return evaluate(dataclasses.replace(job, objectives=needed,
                                            threads=_threads(config)))
    finally:
        store.remove_dir(mine)
        with contextlib.suppress(OSError):
            home.rmdir()  # only when no other verify is using it


def _threads(config: Config) -> int | None:
    """The thread share a generation's local executor gives each evaluation, so the
    re-measurement sums floats in the same order as the original where it can."""
    return thread_share(config.executor.workers)


def _sweep(store: Store, home: Path) -> None:
    """Remove what a killed verify on this machine left behind, stopping its fitness
    process group if it still runs."""
    if not home.is_dir():
        return
    for folder in home.iterdir():
        try:
            pid, host = (folder / "owner").read_text().split()
        except (OSError, ValueError):
            pid, host = folder.name.split("-")[0], socket.gethostname()
        if host != socket.gethostname() or (pid.isdigit() and process_alive(int(pid))):
            continue
        kill_orphans(folder / "running")
        store.remove_dir(folder)
