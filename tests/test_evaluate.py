"""Fitness evaluation with real subprocesses: statuses, timeouts, the sandboxed environment."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from gitevo.config import Sandbox
from gitevo.execution.evaluate import evaluate
from gitevo.execution.job import Job, expand, run_sandboxed
from gitevo.execution.sandbox import kill_orphans
from tests.conftest import heartbeat, stopped

HARNESS = """
import json, math, sys
mode = sys.argv[1]
out = sys.argv[2]
if mode == "ok":
    json.dump({"accuracy": 0.5, "size": 3, "note": "fine"}, open(out, "w"))
elif mode == "nan":
    out_f = open(out, "w"); out_f.write('{"accuracy": NaN, "size": 3}'); out_f.close()
elif mode == "missing":
    json.dump({"size": 3}, open(out, "w"))
elif mode == "garbage":
    open(out, "w").write("not json")
elif mode == "crash":
    print("Traceback: boom", file=sys.stderr); sys.exit(3)
elif mode == "env":
    import os
    json.dump({"accuracy": float(len([k for k in os.environ if "KEY" in k])), "size": 0,
               "tmp": os.environ["TMPDIR"]}, open(out, "w"))
"""


def _job(workdir: Path, command: str, **kw) -> Job:
    defaults = dict(ident="g001-000", workdir=workdir, gene_files=("model.py",),
                    command=command, check=None, timeout=20, fidelity="smoke", variables={},
                    objectives=("accuracy", "size"))
    return Job(**{**defaults, **kw})


@pytest.fixture
def workdir(tmp_path) -> Path:
    (tmp_path / "model.py").write_text("VALUE = 1\n")
    (tmp_path / "harness.py").write_text(HARNESS)
    return tmp_path


def test_a_proven_import_is_not_run_again(workdir):
    # a gene file whose import fails: only an import check could tell
    (workdir / "model.py").write_text("raise SystemExit('imported')\n")
    command = "python harness.py ok {metrics}"
    assert "import failed" in evaluate(_job(workdir, command)).error
    assert evaluate(_job(workdir, command, import_proven=True)).ok


@pytest.mark.parametrize("isolation", ["none", "auto"])
def test_the_import_check_finds_what_the_fitness_command_finds(workdir, tmp_path, monkeypatch,
                                                               isolation):
    # a module reachable only through PYTHONPATH, passed on by [fitness] env
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper_only_here.py").write_text("SCALE = 2\n")
    monkeypatch.setenv("PYTHONPATH", str(lib))
    (workdir / "model.py").write_text("import helper_only_here\nVALUE = 1\n")
    job = _job(workdir, "python harness.py ok {metrics}", env_extra=("PYTHONPATH",),
               sandbox=Sandbox(isolation=isolation))
    assert evaluate(job).ok


@pytest.mark.parametrize(("source", "needle"), [
    ("def f(:\n    pass\n", "model.py:1: syntax error"),
    # these parse, but the compiler refuses them, still without running anything
    ("def f():\n    nonlocal x\n", "model.py:2: syntax error: no binding for nonlocal"),
    ("x = 1\nreturn x\n", "model.py:2: syntax error: 'return' outside function"),
])
def test_gene_files_must_compile(workdir, source, needle):
    (workdir / "model.py").write_text(source)
    result = evaluate(_job(workdir, "python harness.py ok {metrics}", import_proven=True))
    assert result.status == "invalid" and result.error.startswith(needle)


@pytest.mark.parametrize(("mode", "status", "needle"), [
    ("ok", "ok", None),
    ("nan", "invalid", "'accuracy' is nan"),
    ("missing", "invalid", "'accuracy' missing"),
    ("garbage", "invalid", "not valid JSON"),
    ("crash", "crashed", "Traceback: boom"),
])
def test_statuses(workdir, mode, status, needle):
    result = evaluate(_job(workdir, f"python harness.py {mode} {{metrics}}"))
    assert result.status == status
    if needle:
        assert needle in result.error
    else:
        assert result.objectives == {"accuracy": 0.5, "size": 3.0}
        assert result.metrics["note"] == "fine" and result.fidelity == "smoke"


def test_metrics_file_never_written(workdir):
    result = evaluate(_job(workdir, "true"))
    assert result.status == "invalid" and "no metrics file" in result.error


def test_missing_command(workdir):
    result = evaluate(_job(workdir, "no-such-fitness-command {metrics}"))
    assert result.status == "crashed" and "exited 127" in result.error


def test_syntax_error_and_import_error_are_invalid(workdir):
    (workdir / "model.py").write_text("def f(:\n")
    result = evaluate(_job(workdir, "python harness.py ok {metrics}"))
    assert result.status == "invalid" and "model.py:1: syntax error" in result.error
    (workdir / "model.py").write_text("import no_such_module_xyz\n")
    result = evaluate(_job(workdir, "python harness.py ok {metrics}"))
    assert result.status == "invalid" and "No module named 'no_such_module_xyz'" in result.error


def test_check_command_failure_is_invalid_with_its_last_line(workdir):
    check = "python -c 'import sys; print(\"shape mismatch [2, 7]\", file=sys.stderr); exit(1)'"
    result = evaluate(_job(workdir, "python harness.py ok {metrics}", check=check))
    assert result.status == "invalid"
    assert result.error.startswith("check failed: shape mismatch [2, 7]")


def test_timeout_kills_the_whole_process_group(workdir):
    # a grandchild that beats into a file: it must stop when the run is killed. (A pid
    # would not do: in the sandbox's PID namespace the candidate sees other numbers.)
    beat = workdir / "beat"
    start = time.monotonic()
    result = evaluate(_job(workdir, f"({heartbeat(beat)}) & sleep 60", timeout=1.5))
    assert result.status == "timeout" and time.monotonic() - start < 10
    assert stopped(beat)


def test_secrets_never_reach_the_candidate(workdir, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws")
    monkeypatch.setenv("MY_SERVICE_KEY", "x")
    result = evaluate(_job(workdir, "python harness.py env {metrics}",
                           env_extra=("MY_SERVICE_KEY",)))
    assert result.status == "ok" and result.objectives["accuracy"] == 0
    assert result.metrics["tmp"] != os.environ.get("TMPDIR")  # a private temp dir


def test_placeholders_are_quoted():
    job = _job(Path("/w d"), "run --data {data} --out {metrics} ${HOME} {{literal}}",
               variables={"data": "/my data"})
    assert expand(job.command, job, Path("/t/m.json")) == \
        "run --data '/my data' --out /t/m.json ${HOME} {{literal}}"


def test_orphans_of_a_killed_run_are_stopped(workdir, tmp_path):
    pid_dir = tmp_path / "running"
    job = _job(workdir, "sleep 30", timeout=30, pid_dir=pid_dir)
    # run it in a thread-like fashion: start, then pretend gitevo died and a new one recovers
    import threading

    thread = threading.Thread(target=run_sandboxed, args=(job.command, job, tmp_path, 30))
    thread.start()
    for _ in range(100):
        if list(pid_dir.glob("*")):
            break
        time.sleep(0.05)
    assert kill_orphans(pid_dir) == 1
    thread.join(timeout=10)
    assert not thread.is_alive() and not list(pid_dir.glob("*"))


def test_note_round_trip(workdir):
    from gitevo.store.fitness import Evaluation

    result = evaluate(_job(workdir, "python harness.py ok {metrics}"))
    again = Evaluation.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result


def test_local_executor_runs_workers_side_by_side(workdir, tmp_path_factory):
    """Two workers, two jobs that each wait for the other to start: only parallelism ends them."""
    from gitevo.execution.executors.local import LocalExecutor

    # the markers go outside the tree the two jobs share: one appearing there while the
    # other job's checks run is a change to that job's tree, and makes it invalid
    tmp_path = tmp_path_factory.mktemp("markers")
    script = (
        "import json, os, sys, time\n"
        "me, other, out = sys.argv[1], sys.argv[2], sys.argv[3]\n"
        f"open(os.path.join({str(tmp_path)!r}, me), 'w').close()\n"
        "deadline = time.time() + 20\n"
        f"while not os.path.exists(os.path.join({str(tmp_path)!r}, other)):\n"
        "    if time.time() > deadline: sys.exit(9)\n"
        "    time.sleep(0.02)\n"
        "json.dump({'accuracy': 1, 'size': 1}, open(out, 'w'))\n")
    (workdir / "pair.py").write_text(script)
    # unconfined: under bubblewrap or Landlock nothing outside a job's own tree is writable
    free = Sandbox(isolation="none", landlock=False)
    jobs = [_job(workdir, "python pair.py a b {metrics}", ident="a", sandbox=free),
            _job(workdir, "python pair.py b a {metrics}", ident="b", sandbox=free)]
    results = dict((job.ident, (r.status, r.error)) for job, r in LocalExecutor(2).run(jobs))
    assert {k: v[0] for k, v in results.items()} == {"a": "ok", "b": "ok"}, results


def test_side_by_side_workers_share_the_cores(workdir, monkeypatch):
    """N evaluations at once each get cores/N math threads; a user's own setting wins."""
    from gitevo.execution.executors.local import LocalExecutor

    (workdir / "threads.py").write_text(
        "import json, os, sys\n"
        "env = os.environ.get\n"
        "json.dump({'accuracy': int(env('OMP_NUM_THREADS', '0')),\n"
        "           'size': int(env('MKL_NUM_THREADS', '0'))}, open(sys.argv[1], 'w'))\n")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    share = max(1, (os.cpu_count() or 1) // 2)

    def threads(workers: int) -> set[tuple[float, float]]:
        jobs = [_job(workdir, "python threads.py {metrics}", ident=i) for i in "ab"]
        return {tuple(r.objectives.values()) for _, r in LocalExecutor(workers).run(jobs)}

    assert threads(2) == {(share, share)}
    assert threads(1) == {(0, 0)}  # alone, the libraries pick their own defaults
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert threads(2) == {(7, share)}


def test_notes_keep_keys_this_version_does_not_know(workdir):
    from gitevo.store.fitness import Evaluation

    old = {"status": "ok", "objectives": {"accuracy": 0.5}, "metrics": {}, "fidelity": "smoke",
           "seconds": 1.5, "error": None}  # a note written before timings existed
    assert Evaluation.from_dict(old).timings == {}
    newer = {**old, "timings": {"fitness": 1.2}, "verifications": [{"fidelity": "paper"}]}
    assert Evaluation.from_dict(newer).to_dict() == newer


def test_timings_split_validation_from_fitness(workdir):
    slow_check = "python -c 'import time; time.sleep(0.3)'"
    command = "sleep 0.2 && python harness.py ok {metrics}"
    result = evaluate(_job(workdir, command, check=slow_check))
    assert result.ok and set(result.timings) == {"validate", "fitness"}
    assert result.timings["validate"] >= 0.3 and result.timings["fitness"] >= 0.2
    # each figure is rounded to the millisecond on its own
    assert result.timings["validate"] + result.timings["fitness"] <= result.seconds + 0.002
    checked = evaluate(_job(workdir, command, check=slow_check, validated=True))
    assert checked.ok and set(checked.timings) == {"fitness"}  # checked when proposed


def test_executor_reports_each_start_before_its_result(workdir):
    from gitevo.execution.executors.local import LocalExecutor

    started: list[str] = []
    jobs = [_job(workdir, "python harness.py ok {metrics}", ident=i) for i in "abc"]
    for job, result in LocalExecutor(2).run(jobs, on_start=lambda j: started.append(j.ident)):
        assert job.ident in started and result.ok
    assert sorted(started) == ["a", "b", "c"]
