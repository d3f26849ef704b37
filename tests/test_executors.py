"""Executors on real engines: a Ray cluster started here, submitit's local executor, a
one-node SLURM when one answers, and the local pool's GPU places and lazy intake.

Lost workers are real: the probe below SIGKILLs the process that is evaluating it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gitevo import config
from gitevo.execution.executors import make_executor
from gitevo.execution.executors.gpus import resolve_gpus
from gitevo.execution.executors.local import LocalExecutor
from gitevo.execution.executors.optional import MissingEngine, need
from gitevo.execution.job import Job
from gitevo.store.gitstore import Store
from tests.conftest import cli, git
from tests.test_config import MINIMAL

# Logs what it saw, then kills its evaluating worker (the first ancestor that is neither a
# shell nor gitevo's fork server) once for the whole box ("kill-first") or every time
# ("kill-always").
PROBE = r"""
import json, os, signal, sys
from pathlib import Path
box = Path(sys.argv[1])
pid = os.getppid()
def launcher(pid):
    return b"forkserver.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
while Path(f"/proc/{pid}/comm").read_text().strip() in ("bash", "sh", "dash") or launcher(pid):
    pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
with open(box / "seen.jsonl", "a") as log:
    log.write(json.dumps({"cwd": os.getcwd(), "pid": pid}) + "\n")
def claim(name):
    try:
        os.close(os.open(box / name, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False
if (box / "kill-always").exists() or ((box / "kill-first").exists() and claim("killed")):
    with open(box / "kills", "a") as kills:
        kills.write(f"{pid}\n")
    os.kill(pid, signal.SIGKILL)
    sys.exit(1)
"""


@pytest.fixture
def box(tmp_path) -> Path:
    """The probe's state, outside every tree an evaluation runs in."""
    path = tmp_path / "box"
    path.mkdir()
    (tmp_path / "probe.py").write_text(PROBE)
    return path


def _use_executor(repo: Path, box: Path, executor: str) -> None:
    """The toy repo with `executor` as its [executor] section and the probe before fitness
    (`executor` comes last in gitevo.toml, so its sub-tables may follow it)."""
    toml = repo / "gitevo.toml"
    text = toml.read_text()
    probe = box.parent / "probe.py"
    text = text.replace('command = "python fitness.py --metrics {metrics}"',
                        f'command = "python {probe} {box} && python fitness.py --metrics '
                        '{metrics}"')
    # the probe must see and kill its worker and write outside the tree: no confinement,
    # no Landlock floor either
    toml.write_text(text[:text.index("[executor]")]
                    + '[sandbox]\nisolation = "none"\nlandlock = false\n\n' + executor)
    git(repo, "commit", "-qam", "evaluate elsewhere")


def _children_notes(repo: Path, generation: int = 1) -> dict[str, dict]:
    refs = git(repo, "for-each-ref", "--format=%(refname:short) %(objectname)",
               f"refs/heads/gitevo/main/g{generation:03d}-*").split("\n")
    notes = {}
    for line in filter(None, refs):
        ref, commit = line.split()
        text = git(repo, "notes", "--ref", "gitevo/main", "show", commit, check=False)
        notes[ref.rsplit("/", 1)[1]] = json.loads(text) if text else None
    return notes


def _seen(box: Path) -> list[dict]:
    path = box / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _kills(box: Path) -> int:
    path = box / "kills"
    return len(path.read_text().split()) if path.exists() else 0


def _assert_generation_finished(repo: Path, generation: int = 1) -> None:
    count = git(repo, "rev-list", "--count", "gitevo/main/ledger").strip()
    assert count == str(generation + 1), "the generation did not reach its ledger commit"


def _assert_ran_on_unpacked_archives(repo: Path, box: Path) -> None:
    worktrees = str(repo / ".git" / "gitevo" / "worktrees")
    assert all(not s["cwd"].startswith(worktrees) and "-tree-" in s["cwd"]
               for s in _seen(box)), _seen(box)


def _job(workdir: Path, command: str, ident: str) -> Job:
    return Job(ident=ident, workdir=workdir, gene_files=("model.py",), command=command,
               check=None, timeout=30, fidelity="default", variables={},
               objectives=("accuracy",))


@pytest.fixture
def workdir(tmp_path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "model.py").write_text("VALUE = 1\n")
    (tree / "fit.py").write_text(
        "import json, os, sys, time\n"
        "start = time.time(); time.sleep(float(sys.argv[2]))\n"
        "json.dump({'accuracy': 1.0, 'devices': os.environ.get('CUDA_VISIBLE_DEVICES'),\n"
        "           'start': start, 'end': time.time()}, open(sys.argv[1], 'w'))\n")
    return tree


# ---- Ray ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    """One Ray session for the module: starting one costs seconds."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_generation_retries_a_lost_worker(ray_cluster, toy, box):
    (box / "kill-first").touch()
    _use_executor(toy, box, '[executor]\nkind = "ray"\n\n[executor.ray]\nnum_cpus = 1\n')
    cli("-C", str(toy), "generation", "--n", "4")
    notes = _children_notes(toy)
    assert len(notes) == 4 and all(n is not None for n in notes.values()), notes
    assert {n["status"] for n in notes.values()} <= {"ok", "invalid"}, notes
    assert _kills(box) == 1 and len(_seen(box)) == 5  # four children, one second attempt
    _assert_ran_on_unpacked_archives(toy, box)
    _assert_generation_finished(toy)


@pytest.mark.slow
def test_ray_worker_lost_every_time_is_recorded_as_crashed(ray_cluster, toy, box):
    (box / "kill-always").touch()
    _use_executor(toy, box, '[executor]\nkind = "ray"\nretries = 1\n')
    cli("-C", str(toy), "generation", "--n", "2")
    notes = _children_notes(toy)
    assert len(notes) == 2
    for note in notes.values():
        assert note["status"] == "crashed"
        assert note["error"].startswith("worker lost 2 times: WorkerCrashedError")
    assert _kills(box) == 4
    _assert_generation_finished(toy)


def test_ray_takes_jobs_lazily_and_caps_what_is_in_flight(ray_cluster, workdir):
    from gitevo.execution.executors.ray import RayExecutor

    executor = RayExecutor(config.RayOptions(), workers=1, retries=0, archive=_tree_tar)
    _assert_lazy_and_capped(executor, workdir)


def _tree_tar(job: Job) -> bytes:
    from gitevo.execution.executors.remote_job import tree_archive

    return tree_archive(job.workdir)


# ---- submitit (SLURM's executor, run here as local processes) --------------------------------

SUBMITIT_LOCAL = '[executor]\nkind = "slurm"\nworkers = 2\n\n[executor.slurm]\n' \
                 'cluster = "local"\ntime = 5\n'


@pytest.mark.slow
def test_submitit_generation_retries_a_lost_worker(toy, box):
    pytest.importorskip("submitit")
    (box / "kill-first").touch()
    _use_executor(toy, box, SUBMITIT_LOCAL)
    cli("-C", str(toy), "generation", "--n", "3")
    notes = _children_notes(toy)
    assert len(notes) == 3 and all(n is not None for n in notes.values()), notes
    assert {n["status"] for n in notes.values()} <= {"ok", "invalid"}, notes
    assert _kills(box) == 1 and len(_seen(box)) == 4
    _assert_ran_on_unpacked_archives(toy, box)
    _assert_generation_finished(toy)
    # finished jobs leave nothing in submitit's folder; the lost attempt keeps its files
    left = list((toy / ".git" / "gitevo" / "slurm").glob("*_submitted.pkl"))
    assert len(left) == 1, left


@pytest.mark.slow
def test_submitit_worker_lost_every_time_is_recorded_as_crashed(toy, box):
    pytest.importorskip("submitit")
    (box / "kill-always").touch()
    _use_executor(toy, box, SUBMITIT_LOCAL.replace("workers = 2", "workers = 2\nretries = 1"))
    cli("-C", str(toy), "generation", "--n", "1")
    (note,) = _children_notes(toy).values()
    assert note["status"] == "crashed" and note["error"].startswith("worker lost 2 times: job")
    assert _kills(box) == 2
    _assert_generation_finished(toy)


def _sinfo_idle() -> str | None:
    """Why no SLURM is here to test against (None: a node answers)."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo does not answer ({exc}); .ci/slurm-up starts a one-node SLURM"
    if not any(s in out.stdout for s in ("idle", "mixed")):
        return f"no idle SLURM node (sinfo: {out.stdout.strip() or out.stderr.strip()})"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_sinfo_idle() is not None, reason=str(_sinfo_idle()))
def test_slurm_one_node_generation_gives_every_child_a_note(toy, box):
    pytest.importorskip("submitit")
    _use_executor(toy, box, '[executor]\nkind = "slurm"\nworkers = 2\n\n[executor.slurm]\n'
                  'time = 5\nmem_gb = 1\n[executor.slurm.sbatch]\njob-name = "gitevo-ci"\n')
    cli("-C", str(toy), "generation", "--n", "2")
    notes = _children_notes(toy)
    assert len(notes) == 2 and all(n and n["status"] in ("ok", "invalid")
                                   for n in notes.values()), notes
    _assert_ran_on_unpacked_archives(toy, box)
    _assert_generation_finished(toy)
    script = next((toy / ".git" / "gitevo" / "slurm").glob("*_submission.sh")).read_text()
    assert "#SBATCH --job-name=gitevo-ci" in script and "#SBATCH --mem=1GB" in script


# ---- the local pool: GPU places and lazy intake -----------------------------------------------

def test_local_gpus_one_job_per_device_unless_shared(workdir):
    def run(per_gpu: int) -> list[dict]:
        executor = LocalExecutor(workers=1, gpus=("3", "5"), per_gpu=per_gpu)
        assert executor.workers == 2 * per_gpu
        jobs = [_job(workdir, "python fit.py {metrics} 0.4", str(i)) for i in range(6)]
        return [r.metrics for _, r in executor.run(jobs)]

    for per_gpu in (1, 2):
        seen = run(per_gpu)
        assert {m["devices"] for m in seen} == {"3", "5"}
        for device in ("3", "5"):
            spans = [(m["start"], m["end"]) for m in seen if m["devices"] == device]
            # no moment when more than per_gpu jobs held this device
            most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
            assert most == per_gpu, (device, per_gpu, spans)


def test_gpus_auto_follows_cuda_visible_devices(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    assert resolve_gpus("auto") == ("2", "7")
    assert resolve_gpus(["0"]) == ("0",)
    text = (MINIMAL + '[executor]\nworkers = 3\ngpus = "auto"\nper_gpu = 2\n')
    assert make_executor(config.parse(text)).workers == 4  # two places on each of 2 GPUs
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert resolve_gpus("auto") == ()
    assert make_executor(config.parse(text)).workers == 3  # no GPU: the CPU workers


def test_local_executor_takes_jobs_lazily_and_caps_what_is_in_flight(workdir):
    _assert_lazy_and_capped(LocalExecutor(1, gpus=()), workdir)


def _assert_lazy_and_capped(executor, workdir: Path) -> None:
    """The last job is produced only after the first result came back (an executor that
    reads every job first never sees it), and no more than `workers` ever run at once."""
    first_result = threading.Event()

    def jobs():
        for i in range(3):
            if i == 2:
                assert first_result.wait(60), "no result before every job was produced"
            yield _job(workdir, "python fit.py {metrics} 0.3", str(i))

    spans = []
    for _, result in executor.run(jobs()):
        assert result.ok, result.error
        spans.append((result.metrics["start"], result.metrics["end"]))
        first_result.set()
    assert len(spans) == 3
    assert max(sum(s <= t < e for s, e in spans) for t, _ in spans) == executor.workers


# ---- transport, configuration, optional engines ----------------------------------------------

def test_archive_carries_the_exported_tree(toy, tmp_path):
    from gitevo.execution.executors.remote_job import tree_archive, unpack

    (toy / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (toy / "run.sh").chmod(0o755)
    (toy / "sub").mkdir()
    (toy / "sub" / "data.txt").write_text("x\n")
    os.symlink("sub/data.txt", toy / "link.txt")
    git(toy, "add", "-A")
    git(toy, "commit", "-qm", "more kinds of files")
    store = Store(toy)
    head = store.head_commit()
    store.export_tree(head, tmp_path / "exported")
    unpack(tree_archive(tmp_path / "exported"), tmp_path / "unpacked")
    for path in (tmp_path / "exported").rglob("*"):
        twin = tmp_path / "unpacked" / path.relative_to(tmp_path / "exported")
        assert twin.is_symlink() == path.is_symlink()
        if path.is_symlink():
            assert os.readlink(twin) == os.readlink(path)
        elif path.is_file():
            assert twin.read_bytes() == path.read_bytes()
            assert twin.stat().st_mode & 0o111 == path.stat().st_mode & 0o111
    assert sorted(p.name for p in (tmp_path / "unpacked").rglob("*")) == \
        sorted(p.name for p in (tmp_path / "exported").rglob("*"))


def test_a_missing_engine_is_named_in_one_line():
    with pytest.raises(MissingEngine) as err:
        need("gitevo_no_such_engine", "ray", "ray")
    message = str(err.value)
    assert "\n" not in message and "gitevo_no_such_engine" in message
    assert "pip install 'gitevo[ray]'" in message


def test_choosing_no_cluster_loads_no_engine():
    code = ("import sys, gitevo.cli, gitevo.execution.executors, gitevo.pipeline.evolution; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'submitit')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

