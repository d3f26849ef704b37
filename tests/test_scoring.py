"""[fitness] score: the trusted scorer apart from the untrusted trainer. A toy task whose
honest accuracy sits near chance (random labels), so that any forgery stands out: each
hostile trainer must be refused or scored at its honest value, and an honest control on
the same path is scored, so the assertions can fail."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from gitevo import config as cfg
from gitevo.config import ConfigError
from gitevo.execution import floor, sandbox
from gitevo.execution.evaluate import evaluate
from gitevo.execution.job import make_job
from tests.conftest import cli, git

MODEL = '''"""A one-number classifier: 1 when x is above the threshold."""


def threshold():
    return 0.5
'''

# the trainer: imports the candidate, leaves its model as data, reports its own figures
TRAIN = '''import json, os, sys
sys.path.insert(0, ".")
import model
artifacts, report = sys.argv[1], sys.argv[2]
found = model.threshold()
table = found if isinstance(found, dict) else None
out = {"table": table} if table is not None else {"threshold": float(found)}
if not os.path.exists(os.path.join(artifacts, "model.json")):  # a hostile one may write it
    json.dump(out, open(os.path.join(artifacts, "model.json"), "w"))
json.dump({"steps": 1, "accuracy": 1.0}, open(report, "w"))  # a claim: never an objective
'''

# the scorer: never imports model.py; the held-out data is in <cache>/heldout
SCORE = '''import json, os, sys
artifacts, metrics = sys.argv[1], sys.argv[2]
path = os.path.join(artifacts, "model.json")
if not os.path.isfile(path):
    sys.exit("no model.json in the artifacts: the trainer must leave its model there")
model = json.load(open(path))
data = json.load(open(os.path.join(os.environ["GITEVO_CACHE_DIR"], "heldout", "data.json")))
if "table" in model:  # a lookup table is a model too: it is scored on what it predicts
    guess = [int(model["table"].get(repr(x), 0)) for x in data["x"]]
else:
    guess = [int(x > model["threshold"]) for x in data["x"]]
hits = sum(g == y for g, y in zip(guess, data["y"]))
json.dump({"accuracy": hits / len(data["y"]), "params": 1}, open(metrics, "w"))
'''

TOML = '''[genes]
files = ["model.py"]

[fitness]
command = "python train.py {artifacts} {metrics}"
score = "python score.py {artifacts} {metrics}"
timeout = 60
env = ["GITEVO_CACHE_DIR"]

[objectives]
accuracy = "max"

[evolution]
population = 4
offspring = 4

[sandbox]
isolation = "ISOLATION"
'''

# reads the held-out answers wherever the sandbox lets it, and returns them as a table
PEEK = '''

def threshold():
    import json, os
    path = os.path.join(os.environ.get("GITEVO_CACHE_DIR", "/nowhere"), "heldout", "data.json")
    try:
        data = json.load(open(path))
    except OSError:
        return 0.5
    return {repr(x): y for x, y in zip(data["x"], data["y"])}
'''


@pytest.fixture
def task(tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A repository with the trainer and scorer, and a cache with held-out data."""
    rng = random.Random(3)
    data = {"x": [round(rng.random(), 6) for _ in range(400)],
            "y": [rng.randrange(2) for _ in range(400)]}
    cache = tmp_path / "cache"
    (cache / "heldout").mkdir(parents=True)
    (cache / "heldout" / "data.json").write_text(json.dumps(data))
    monkeypatch.setenv("GITEVO_CACHE_DIR", str(cache))
    repo = tmp_path / "repo"
    repo.mkdir()
    for name, text in (("model.py", MODEL), ("train.py", TRAIN), ("score.py", SCORE)):
        (repo / name).write_text(text)
    return repo, data


def honest(data: dict, threshold: float = 0.5) -> float:
    hits = sum(int(x > threshold) == y for x, y in zip(data["x"], data["y"], strict=True))
    return hits / len(data["y"])


def _isolation() -> str:
    return "bwrap" if sandbox.bwrap().works else "none"


def acting(body: str) -> str:
    """A model.py whose threshold() first does `body` (at training time, not at import,
    where the import check would already refuse it), then answers honestly."""
    lines = "".join(f"    {line}\n" for line in body.strip().splitlines())
    return f"import json, os, sys, time\n\n\ndef threshold():\n{lines}    return 0.5\n"


def run(repo: Path, model: str, isolation: str | None = None, landlock: bool = True):
    (repo / "model.py").write_text(model)
    toml = TOML.replace("ISOLATION", isolation or _isolation())
    if not landlock:
        toml = toml.replace("[sandbox]\n", "[sandbox]\nlandlock = false\n")
    config = cfg.parse(toml, repo / "gitevo.toml")
    return evaluate(make_job(config, "g001-000", repo))


def test_the_scorer_decides_the_objectives_not_the_trainer(task):
    repo, data = task
    result = run(repo, MODEL)
    assert result.status == "ok", result.error
    assert result.objectives == {"accuracy": honest(data)}
    assert 0.4 < honest(data) < 0.6  # near chance: a forgery would stand out
    # the trainer's own report is kept, its claimed accuracy with it, but only as a report
    assert result.metrics["trainer"] == {"steps": 1, "accuracy": 1.0}
    assert result.metrics["scorer"]["apart"] is True
    assert set(result.timings) == {"validate", "fitness", "score"}


def test_a_trainer_that_reads_the_heldout_labels_finds_them_hidden(task):
    if not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    repo, data = task
    result = run(repo, PEEK, "bwrap")
    assert result.status == "ok" and result.objectives == {"accuracy": honest(data)}
    assert result.metrics["scorer"]["heldout_hidden"] is True


def test_under_landlock_alone_the_heldout_data_is_out_of_reach(task):
    """No bubblewrap (isolation "none", as on a machine without it): the Landlock floor
    keeps <cache>/heldout from the trainer, and the note says the score is protected."""
    if floor.kernel_abi() < 1:
        pytest.skip("this kernel has no Landlock")
    repo, data = task
    result = run(repo, PEEK, "none")
    assert result.status == "ok" and result.objectives == {"accuracy": honest(data)}
    assert result.metrics["scorer"]["heldout_hidden"] is True


def test_a_trainer_cannot_plant_heldout_data_for_the_scorer(task):
    if not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    repo, data = task
    # no prepare step here, so the cache is writable for candidates: but not <cache>/heldout
    plant = acting("""path = os.path.join(os.environ["GITEVO_CACHE_DIR"], "heldout", "data.json")
try:
    json.dump({"x": [1.0], "y": [1]}, open(path, "w"))
except OSError:
    pass""")
    result = run(repo, plant, "bwrap")
    assert result.status == "ok" and result.objectives == {"accuracy": honest(data)}
    stored = Path(os.environ["GITEVO_CACHE_DIR"]) / "heldout" / "data.json"
    assert json.loads(stored.read_text()) == data


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_paths_in_sandbox_hide_read_as_empty_for_the_trainer_only(task, tmp_path, kind):
    if not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    repo, data = task
    raw = tmp_path / "raw"  # a dataset outside the cache, with its labels
    raw.mkdir()
    (raw / "labels.json").write_text(json.dumps(data))
    target = raw if kind == "folder" else raw / "labels.json"
    # the scorer reads the labels from the hidden path instead of the cache
    (repo / "score.py").write_text(SCORE.replace(
        'os.path.join(os.environ["GITEVO_CACHE_DIR"], "heldout", "data.json")',
        f'{str(raw / "labels.json")!r}'))
    peek = acting(f"""try:
    found = json.load(open({str(raw / "labels.json")!r}))
except (OSError, ValueError):
    found = None
open("peeked.txt", "w").write(repr(found is not None))""")
    (repo / "model.py").write_text(peek)
    toml = TOML.replace("ISOLATION", "bwrap").replace(
        'env = ["GITEVO_CACHE_DIR"]', f'env = ["GITEVO_CACHE_DIR"]\n[fitness.vars]\n'
        f'data = {json.dumps(str(target))}')
    toml += 'hide = ["{data}"]\n'
    config = cfg.parse(toml, repo / "gitevo.toml")
    result = evaluate(make_job(config, "g001-000", repo))
    assert result.status == "ok", result.error
    assert result.objectives == {"accuracy": honest(data)}
    assert (repo / "peeked.txt").read_text() == "False"


def test_without_bubblewrap_or_landlock_the_note_says_the_score_is_not_protected(task):
    repo, _ = task
    result = run(repo, PEEK, "none", landlock=False)
    # nothing hides the cache here: the peek works, and the note says so plainly
    assert result.status == "ok" and result.objectives == {"accuracy": 1.0}
    assert result.metrics["scorer"]["heldout_hidden"] is False
    assert "not protected" in result.metrics["scorer"]["warning"]


@pytest.mark.parametrize("isolation", ["none", "bwrap"])
def test_a_trainer_that_rewrites_the_scorer_is_invalid(task, isolation):
    if isolation == "bwrap" and not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    repo, _ = task
    forge = acting("""open("score.py", "w").write("import json, sys\\n"
    "json.dump({'accuracy': 1.0}, open(sys.argv[2], 'w'))\\n")""")
    result = run(repo, forge, isolation)
    assert result.status == "invalid"
    assert result.error.startswith("the fitness command changed score.py in its tree")


def test_a_module_planted_beside_the_scorer_is_not_copied(task):
    repo, data = task
    # json.py in the tree would shadow the standard library for `python score.py`
    plant = acting("""open("json.py", "w").write("raise SystemExit('a planted json.py ran')")""")
    result = run(repo, plant, "none")
    assert result.status == "ok", result.error
    assert result.objectives == {"accuracy": honest(data)}


def test_links_in_the_artifacts_are_refused_not_followed(task):
    repo, _ = task
    link = acting("""os.symlink(os.path.join(os.environ["GITEVO_CACHE_DIR"], "heldout",
    "data.json"), os.path.join(sys.argv[1], "model.json"))""")
    result = run(repo, link, "none")
    assert result.status == "invalid"
    assert result.error == ("artifacts: model.json is not a plain file (a link or a "
                            "device); the scorer reads plain files only")


def test_artifacts_the_scorer_cannot_use_make_the_child_invalid_with_its_reason(task):
    repo, _ = task
    (repo / "train.py").write_text("import sys\nsys.path.insert(0, '.')\nimport model\n")
    result = run(repo, MODEL, "none")
    assert result.status == "invalid"
    assert result.error.startswith("scorer refused it: no model.json in the artifacts: the "
                                   "trainer must leave its model there")


def test_a_scorer_that_writes_no_metrics_is_named_as_the_writer(task):
    repo, _ = task
    (repo / "score.py").write_text("print('scored, but wrote nothing')\n")
    result = run(repo, MODEL, "none")
    assert result.status == "invalid" and result.error == "scorer wrote no metrics file"


def test_nothing_the_trainer_started_outlives_it(task):
    if not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    repo, data = task
    # a grandchild in a session of its own would rewrite the model after the trainer
    # returned, and leave a mark in the tree it may write
    late = acting("""if os.fork() == 0:
    os.setsid()
    open("started.txt", "w").write("running")
    time.sleep(1.0)
    open(os.path.join(sys.argv[1], "model.json"), "w").write('{"threshold": -1}')
    open("late.txt", "w").write("still here")
    os._exit(0)""")
    result = run(repo, late, "bwrap")
    assert result.status == "ok" and result.objectives == {"accuracy": honest(data)}
    time.sleep(2.0)
    assert (repo / "started.txt").exists() and not (repo / "late.txt").exists()


def test_a_generation_with_a_scorer_notes_what_it_scored(task, tmp_path):
    repo, data = task
    (repo / "gitevo.toml").write_text(TOML.replace("ISOLATION", _isolation()))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "a threshold task with a scorer apart")
    cli("-C", str(repo), "seed")
    cli("-C", str(repo), "generation", "--n", "4")
    notes = [json.loads(git(repo, "notes", "--ref", "gitevo/main", "show", line.split()[1]))
             for line in git(repo, "notes", "--ref", "gitevo/main", "list").splitlines()]
    assert len(notes) == 5
    seed = next(n for n in notes if n["metrics"]["trainer"] and
                n["objectives"] == {"accuracy": honest(data)})
    assert seed["metrics"]["scorer"]["apart"] is True
    for note in notes:  # every objective is one the scorer computed from held-out data
        assert note["status"] in ("ok", "invalid"), note
        if note["status"] == "ok":
            assert note["objectives"]["accuracy"] < 0.7, note


# a scorer that may start with the trainer: it notes when it started, then waits for
# the artifacts to appear, as the template's `score.py --wait` does
WAITING = '''import json, os, sys, time
started = time.time()
artifacts, metrics = sys.argv[1], sys.argv[2]
while not os.path.isdir(artifacts):
    time.sleep(0.02)
model = json.load(open(os.path.join(artifacts, "model.json")))
data = json.load(open(os.path.join(os.environ["GITEVO_CACHE_DIR"], "heldout", "data.json")))
hits = sum(int(x > model["threshold"]) == y for x, y in zip(data["x"], data["y"]))
json.dump({"accuracy": hits / len(data["y"]), "params": 1, "started": started},
          open(metrics, "w"))
'''
# a trainer that takes a second and says when it ended
SLOW = TRAIN.replace('json.dump({"steps": 1',
                     'import time\ntime.sleep(1.0)\njson.dump({"ended": time.time(), "steps": 1')


def early(repo: Path, model: str, isolation: str):
    (repo / "score.py").write_text(WAITING)
    (repo / "train.py").write_text(SLOW)
    (repo / "model.py").write_text(model)
    toml = TOML.replace("ISOLATION", isolation).replace("[objectives]",
                                                        "score_early = true\n\n[objectives]")
    return evaluate(make_job(cfg.parse(toml, repo / "gitevo.toml"), "g001-000", repo))


def test_under_bubblewrap_an_early_scorer_loads_while_the_trainer_trains(task):
    if not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    repo, data = task
    result = early(repo, MODEL, "bwrap")
    assert result.status == "ok", result.error
    assert result.objectives == {"accuracy": honest(data)}
    # it started before the trainer ended, and scored only what the trainer left
    assert result.metrics["started"] < result.metrics["trainer"]["ended"]
    assert result.timings["score"] < result.timings["fitness"]


def test_where_nothing_isolates_the_trainer_the_scorer_starts_after_it(task):
    repo, data = task
    result = early(repo, MODEL, "none")
    assert result.status == "ok", result.error
    assert result.metrics["started"] > result.metrics["trainer"]["ended"]


def test_an_early_scorer_is_stopped_when_the_trainer_fails(task):
    if not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    repo, _ = task
    start = time.monotonic()
    result = early(repo, acting("sys.exit('the trainer gave up')"), "bwrap")
    # the trainer's failure is the child's, and nobody waited for the scorer's time limit
    assert result.status == "crashed"
    assert "the trainer gave up" in result.error.splitlines()[0]
    assert time.monotonic() - start < 20


def test_an_early_scorer_never_reads_what_the_trainer_rewrote(task):
    if not sandbox.bwrap().works:
        pytest.skip(sandbox.bwrap().detail)
    repo, _ = task
    # the scorer runs from its copy made before training; the rewrite still makes the
    # child invalid, as without score_early
    forge = acting("""open("score.py", "w").write("import json, sys\\n"
    "json.dump({'accuracy': 1.0}, open(sys.argv[2], 'w'))\\n")""")
    result = early(repo, forge, "bwrap")
    assert result.status == "invalid"
    assert result.error.startswith("the fitness command changed score.py in its tree")


@pytest.mark.parametrize(("fitness", "problem"), [
    ('command = "t {artifacts}"',
     "fitness.command: {artifacts} is only for a trainer whose results [fitness] score "
     "reads; set fitness.score too"),
    ('command = "t"\nscore = "s {artifacts}"',
     "fitness.command: must name {artifacts}: the trainer leaves its results there and the "
     "scorer reads a copy of them"),
    ('command = "t {artifacts}"\nscore = "s"',
     "fitness.score: must name {artifacts}: the trainer leaves its results there and the "
     "scorer reads a copy of them"),
    ('command = "t {artifacts}"\nscore = " "',
     "fitness.score: must not be empty (leave it out to score in the fitness command)"),
    ('command = "t"\n[fitness.vars]\nartifacts = "x"',
     "fitness.vars.artifacts: 'artifacts' is a built-in placeholder"),
    ('command = "t"\n[sandbox]\nhide = ["{data}"]',
     "sandbox.hide: unknown placeholder {data} (known: none; add it to [fitness.vars])"),
    ('command = "t"\n[sandbox]\nhide = [3]', "sandbox.hide: must be a list of paths, got 3"),
    ('command = "t"\nscore_early = true',
     "fitness.score_early: starts the scorer early, but no fitness.score is set"),
    ('command = "t {artifacts}"\nscore = "s {artifacts}"\nscore_early = "yes"',
     "fitness.score_early: expected true/false, got 'yes'"),
])
def test_scorer_settings_are_checked(fitness, problem):
    text = f'[genes]\nfiles = ["m.py"]\n[objectives]\nacc = "max"\n[fitness]\n{fitness}\n'
    with pytest.raises(ConfigError) as error:
        cfg.parse(text, Path("gitevo.toml"))
    assert str(error.value) == f"gitevo.toml: {problem}"



def test_the_trainers_report_is_read_only_as_a_small_plain_json_object(tmp_path):
    from gitevo.execution.scoring import MAX_REPORT_BYTES, trainer_report

    plain = tmp_path / "report.json"
    plain.write_text('{"steps": 3}')
    assert trainer_report(plain) == {"steps": 3}
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:  # sparse: its size is what matters, not its bytes
        handle.truncate(MAX_REPORT_BYTES + 1)
    link = tmp_path / "link.json"
    link.symlink_to(plain)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it to read would block for ever
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    for path in (huge, link, fifo, listed, tmp_path / "missing.json"):
        assert trainer_report(path) is None, path
