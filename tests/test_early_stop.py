"""Early stopping inside an evaluation: the fitness command appends its learning curve to
{progress}; gitevo keeps the curve in the note, and stops a run whose curve falls clearly
behind its parent's at the same point. On the toy template, whose fitness command reports
the accuracy on a growing share of its grid, a tenth at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitevo import config as cfg
from gitevo.config import ConfigError, EarlyStop
from gitevo.execution import progress
from gitevo.execution.evaluate import evaluate
from gitevo.execution.job import make_job
from gitevo.pipeline.plan import SEED_ID
from gitevo.store import ledger
from gitevo.store.gitstore import Store, individual_ref, notes_ref
from tests.conftest import cli, git

RULE = EarlyStop(metric="accuracy", goal="max", margin=0.05, min_fraction=0.3)
WATCHED = "python fitness.py --progress {progress} --pace PACE --metrics {metrics}"
EARLY = "\n[fitness.early_stop]\nmargin = MARGIN\nmin_fraction = 0.3\n"


def watched(repo: Path, pace: float = 0.3, margin: float = 0.05) -> None:
    """The toy's fitness command with a curve, `pace` seconds a tenth, and early stopping."""
    toml = repo / "gitevo.toml"
    text = toml.read_text().replace("python fitness.py --metrics {metrics}",
                                    WATCHED.replace("PACE", str(pace)))
    toml.write_text(text.replace("timeout = 30", "timeout = 30" +
                                 EARLY.replace("MARGIN", str(margin))))


def point(at: float, value: float, of: float = 10) -> dict:
    return {"at": at, "of": of, "accuracy": value}


# ---- reading a curve and the rule ------------------------------------------------------------

def test_a_curve_keeps_complete_well_formed_lines_only(tmp_path):
    path = tmp_path / "curve.jsonl"
    path.write_text('{"at": 1, "of": 10, "accuracy": 0.5, "note": "text", "flag": true}\n'
                    "not json\n[1, 2]\n"
                    '{"of": 10, "accuracy": 0.6}\n'  # no `at`: not a point
                    '{"at": 2, "of": 10, "accuracy": NaN}\n'
                    '{"at": 3, "of": 10, "acc')  # still being written
    assert progress.read(path) == [point(1, 0.5), {"at": 2.0, "of": 10.0}]
    link = tmp_path / "link.jsonl"
    link.symlink_to(path)
    assert progress.read(link) == [] and progress.read(tmp_path / "missing") == []


def test_a_run_is_behind_only_past_the_minimum_fraction_and_the_margin():
    parent = (point(2, 0.9), point(3, 0.9), point(4, 0.9))
    assert progress.behind(point(2, 0.1), parent, RULE) is None  # 20% < 30% of the run
    assert progress.behind(point(3, 0.86), parent, RULE) is None  # within the margin
    assert progress.behind(point(3, 0.8), parent, RULE) == (
        "stopped early at 3 of 10: accuracy 0.8 against its parent's 0.9 there (margin 0.05)")
    assert progress.behind(point(5, 0.1), parent, RULE) is None  # the parent has no point 5
    assert progress.behind(point(3, 0.1, of=20), parent, RULE) is None  # another run length
    lower = EarlyStop(metric="loss", goal="min", margin=0.1, min_fraction=0.0)
    assert progress.behind({"at": 1, "of": 4, "loss": 1.0}, ({"at": 1, "of": 4, "loss": 0.5},),
                           lower).startswith("stopped early at 1 of 4: loss 1 against")


# ---- one evaluation --------------------------------------------------------------------------

@pytest.fixture
def unevaluated(tmp_path) -> Path:
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy", "--no-eval")
    return repo


def job_for(repo: Path, reference: tuple = ()):
    config = cfg.load(repo / "gitevo.toml")
    job = make_job(config, "g001-000", repo)
    return job.__class__(**{**job.__dict__, "reference": reference})


def test_a_run_behind_its_parent_is_stopped_with_the_curve_it_had(unevaluated):
    watched(unevaluated)
    # the parent was near perfect everywhere: the seed is far behind it from the start
    result = evaluate(job_for(unevaluated, tuple(point(t, 0.99) for t in range(1, 11))))
    assert result.status == "stopped", result.error
    assert result.error.startswith("stopped early at 3 of 10: accuracy ")
    assert [p["at"] for p in result.curve][:3] == [1, 2, 3] and len(result.curve) < 10
    assert result.objectives == {} and result.timings["fitness"] < 10 * 0.3


def test_a_run_level_with_its_parent_runs_to_the_end_and_keeps_its_curve(unevaluated):
    watched(unevaluated, pace=0.05)
    first = evaluate(job_for(unevaluated))  # no parent: nothing to stop it
    assert first.status == "ok" and [p["at"] for p in first.curve] == list(range(1, 11))
    assert first.curve[-1]["accuracy"] == pytest.approx(first.objectives["accuracy"])
    again = evaluate(job_for(unevaluated, tuple(first.curve)))
    assert again.status == "ok" and again.curve == first.curve


def test_early_stopping_settings_are_checked(unevaluated):
    toml = unevaluated / "gitevo.toml"
    base = toml.read_text()
    for extra, problem in [
        ("[fitness.early_stop]\nmargin = 0.1\n",
         "fitness.early_stop: needs a learning curve: the command must name {progress}, "
         "the file it appends JSON lines to"),
    ]:
        toml.write_text(base.replace("[objectives]", extra + "\n[objectives]"))
        with pytest.raises(ConfigError) as error:
            cfg.load(toml)
        assert str(error.value) == f"{toml}: {problem}"
    toml.write_text(base)
    watched(unevaluated)
    with_curve = toml.read_text()
    for table, problem in [
        ("metric = \"fit\"", "fitness.early_stop.goal: required: 'fit' is not an objective, "
         "so say whether higher (\"max\") or lower (\"min\") is better"),
        ("goal = \"up\"", "fitness.early_stop.goal: must be \"max\" or \"min\", got 'up'"),
        ("margin = -1", "fitness.early_stop.margin: must be >= 0, got -1"),
        ("min_fraction = 2", "fitness.early_stop.min_fraction: must be between 0 and 1, got 2"),
        ("patience = 2", "fitness.early_stop.patience: unknown key (known: goal, margin, "
         "metric, min_fraction)"),
    ]:
        toml.write_text(with_curve.replace("margin = 0.05\nmin_fraction = 0.3", table))
        with pytest.raises(ConfigError) as error:
            cfg.load(toml)
        assert str(error.value) == f"{toml}: {problem}"


# ---- a generation ----------------------------------------------------------------------------

def test_a_generation_stops_children_behind_their_parent_and_notes_why(unevaluated):
    repo = unevaluated
    watched(repo, pace=0.3, margin=0.0)
    git(repo, "commit", "-qam", "report a curve; stop children behind their parent")
    cli("-C", str(repo), "seed")
    cli("-C", str(repo), "generation", "--n", "8")
    store = Store(repo)
    notes = {c: json.loads(t) for c, t in store.read_notes(notes_ref("main")).items()}
    seed = notes[store.resolve_ref(individual_ref("main", SEED_ID))]
    assert [p["at"] for p in seed["curve"]] == list(range(1, 11))
    rule = cfg.load(repo / "gitevo.toml").fitness.early_stop
    stopped = 0
    for commit, note in notes.items():
        parents = store.parents(commit)
        if note["status"] != "stopped":
            continue
        stopped += 1
        # the reason is the first point behind the parent's curve as its note records it
        parent = tuple(notes[parents[0]]["curve"])
        reasons = [r for p in note["curve"] if (r := progress.behind(p, parent, rule))]
        assert reasons and note["error"] == reasons[0], note
        assert note["timings"]["fitness"] < 10 * 0.3
    assert stopped >= 1
    generation = ledger.read(store, "main")
    rows = {r["id"]: r for r in generation.offspring}
    assert sum(r.get("status") == "stopped" for r in rows.values()) == stopped
    # a stopped child is never selected
    members = {m.commit for m in generation.population}
    assert not members & {c for c, n in notes.items() if n["status"] == "stopped"}
