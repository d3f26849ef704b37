"""Bad input, one case at a time: each ends in one line that names the problem (file, key,
individual), exit status 2, and a repository exactly as it was (refs, notes, gitevo's
state directory)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli, committed_repo, copy_repo, git

# (section, key, TOML value or None to delete the key, what the message must name)
KEYS = [
    ("genes", "files", "[]", "genes.files"),
    ("genes", "files", '["nope.py"]', "nope.py"),
    ("genes", "blocks", '["model.py::Nope"]', "Nope"),
    ("fitness", "command", '""', "fitness.command"),
    ("fitness", "command", '"python fitness.py --metrics {metric}"', "{metric}"),
    ("fitness", "timeout", "0", "fitness.timeout"),
    ("fitness", "check", "5", "fitness.check"),
    ("fitness", "fidelity", "3", "fitness.fidelity"),
    ("fitness", "env", '"HOME"', "fitness.env"),
    ("fitness", "prepare", '"fetch {mirror}"', "fitness.prepare"),
    ("objectives", "accuracy", '"up"', "accuracy"),
    ("evolution", "population", "0", "evolution.population"),
    ("evolution", "allocation", "\"greedy\"", "evolution.allocation"),
    ("evolution", "offspring", '"8"', "evolution.offspring"),
    ("evolution", "prob_crossover", "1.5", "evolution.prob_crossover"),
    ("evolution", "prob_mutation", "-0.1", "evolution.prob_mutation"),
    ("evolution", "prob_eot", '"often"', "evolution.prob_eot"),
    ("evolution", "seed", "-1", "evolution.seed"),
    ("evolution", "hall_of_fame", "0", "evolution.hall_of_fame"),
    ("evolution", "constraints", '["l1 <<< 3"]', "evolution.constraints"),
    ("evolution", "generations", "5", "generations"),
    ("llm", "provider", '"gpt"', "llm.provider"),
    ("llm", "api_key", '"sk-in-the-file"', "llm.api_key"),
    ("llm", "concurrency", "0", "llm.concurrency"),
    ("llm", "retries", "-1", "llm.retries"),
    ("executor", "kind", '"k8s"', "executor.kind"),
    ("executor", "workers", "0", "executor.workers"),
    ("executor", "gpus", '"some"', "executor.gpus"),
    ("executor", "per_gpu", "0", "executor.per_gpu"),
    ("executor", "retries", "-1", "executor.retries"),
    ("executor.ray", "num_cpus", "-1", "executor.ray.num_cpus"),
    ("executor.slurm", "time", '"soon"', "executor.slurm.time"),
    ("executor.slurm", "cluster", '"aws"', "executor.slurm.cluster"),
    ("sandbox", "network", '"maybe"', "sandbox.network"),
    ("sandbox", "isolation", '"docker"', "sandbox.isolation"),
    ("sandbox", "memory", "-1", "sandbox.memory"),
    ("sandbox", "processes", "1", "sandbox.processes"),
    ("sandbox", "file_size", "-1", "sandbox.file_size"),
    ("extra", "anything", "1", "extra"),
]


def set_key(text: str, section: str, key: str, value: str) -> str:
    """`text` with `key = value` in [section] (added, with the section, if missing)."""
    header = re.search(rf"(?m)^\[{re.escape(section)}\]\n", text)
    if header is None:
        return text.rstrip("\n") + f"\n\n[{section}]\n{key} = {value}\n"
    body_end = re.search(r"(?m)^\[", text[header.end():])
    end = header.end() + (body_end.start() if body_end else len(text) - header.end())
    body = text[header.end():end]
    line = re.compile(rf"(?m)^{re.escape(key)}\s*=.*$")
    body = line.sub(f"{key} = {value}", body) if line.search(body) else \
        f"{key} = {value}\n" + body
    return text[:header.end()] + body + text[end:]


def state(repo: Path) -> dict[str, object]:
    """What a command could have written: refs, notes, and gitevo's state directory."""
    gitevo_dir = repo / ".git" / "gitevo"
    files = sorted(str(p.relative_to(gitevo_dir)) for p in gitevo_dir.rglob("*")
                   if p.is_file()) if gitevo_dir.is_dir() else []
    return {"refs": git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
            "state": files, "head": git(repo, "rev-parse", "HEAD")}


def run_gitevo(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gitevo", "-C", str(repo), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def evolved(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("bad-input") / "toy"
    cli("init", str(repo), "--template", "toy")
    cli("-C", str(repo), "generation", "--n", "4")
    return repo


def assert_refused(repo: Path, args: tuple[str, ...], *needles: str) -> str:
    before = state(repo)
    out = run_gitevo(repo, *args)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (args, out.stdout, out.stderr)
    assert len(lines) == 1 and lines[0].startswith("gitevo: error: "), out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert state(repo) == before, "a refused command wrote something"
    return lines[0]


@pytest.mark.parametrize("section,key,value,named", KEYS,
                         ids=[f"{s}.{k}={v}" for s, k, v, _ in KEYS])
def test_each_key_wrong_in_turn(evolved, tmp_path, section, key, value, named):
    repo = copy_repo(evolved, tmp_path / "toy")
    toml = repo / "gitevo.toml"
    toml.write_text(set_key(toml.read_text(), section, key, value))
    assert_refused(repo, ("generation", "--n", "2"), named)


@pytest.mark.parametrize("damage", ["syntax", "truncated", "missing", "not utf-8"])
def test_a_broken_or_partial_file(evolved, tmp_path, damage):
    repo = copy_repo(evolved, tmp_path / "toy")
    toml = repo / "gitevo.toml"
    text = toml.read_text()
    if damage == "syntax":
        toml.write_text(text.replace("population = 8", "population = = 8"))
    elif damage == "truncated":
        toml.write_text(text[:text.index("[objectives]") + 14])
    elif damage == "missing":
        toml.unlink()
    else:
        toml.write_bytes(b"\xff\xfe" + text.encode())
    assert_refused(repo, ("generation", "--n", "2"), "gitevo.toml")


@pytest.mark.parametrize("metrics,named", [
    ('{"l1": 1.0}', "'accuracy' missing"),
    ('{"accuracy": NaN, "l1": 1.0}', "'accuracy' is nan"),
    ('{"accuracy": 0.5, "l1": Infinity}', "'l1' is inf"),
    ("not json", "not valid JSON"),
])
def test_bad_metrics_stop_init_at_the_seed_with_its_reason(tmp_path, metrics, named):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "model.py").write_text("def f():\n    return 1\n")
    (repo / "fit.py").write_text(f"import sys\nopen(sys.argv[1], 'w').write({metrics!r})\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "seed")
    out = run_gitevo(repo, "init", "--files", "model.py", "--fitness",
                     "python fit.py {metrics}", "--objective", "accuracy:max",
                     "--objective", "l1:min")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "g000-000" in lines[0] and "invalid" in lines[0] and named in lines[0], lines[0]
    # the failed seed keeps its note (no individual without one), and nothing more exists
    note = json.loads(git(repo, "notes", "--ref", "gitevo/main", "show", "gitevo/main/g000-000"))
    assert note["status"] == "invalid"
    assert not git(repo, "for-each-ref", "refs/heads/gitevo/main/ledger").strip()


def test_gene_files_with_nothing_to_evolve_stop_init(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "model.py").write_text("WIDTH = 32\nDEPTH = 4\n")  # constants only: no block
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "seed")
    out = run_gitevo(repo, "init", "--files", "model.py", "--fitness",
                     "python fit.py {metrics}", "--objective", "accuracy:max")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "genes.files: no top-level class or function to evolve in model.py" in lines[0]
    # refused before the seed was evaluated: no note, no ledger
    assert not git(repo, "notes", "--ref", "gitevo/main", "list").strip()
    assert not git(repo, "for-each-ref", "refs/heads/gitevo/main/ledger").strip()


def test_a_fitness_command_that_does_not_exist(tmp_path):
    repo = committed_repo(tmp_path / "repo", {"model.py": "def f():\n    return 1\n"})
    out = run_gitevo(repo, "init", "--files", "model.py", "--fitness",
                     "no-such-trainer --metrics {metrics}", "--objective", "accuracy:max")
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip()
    assert "\n" not in line and "crashed" in line and "no-such-trainer" in line, line


def test_a_missing_api_key_is_named_before_anything_is_written(evolved, tmp_path):
    repo = copy_repo(evolved, tmp_path / "toy")
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace(
        'provider = "offline"', 'provider = "anthropic"\nmodel = "claude-test"\n'
        'api_key_env = "GITEVO_TEST_ABSENT_KEY"'))
    assert_refused(repo, ("generation", "--n", "2"), "GITEVO_TEST_ABSENT_KEY is not set")


def test_a_missing_dataset_is_one_line(tmp_path):
    pytest.importorskip("torch")
    repo = tmp_path / "enet"
    out = subprocess.run([sys.executable, "-m", "gitevo", "init", str(repo), "--template",
                          "exquisitenetv2", "--var", "data=/no/such/cifar"],
                         capture_output=True, text=True, timeout=300)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0] == ("gitevo: error: [fitness] prepare exited 1: data path /no/such/cifar "
                        "does not exist")
    # the seed is recorded, not evaluated: no note, no ledger; fix the data, run `gitevo seed`
    assert not git(repo, "notes", "--ref", "gitevo/main", "list").strip()
    assert not git(repo, "for-each-ref", "refs/heads/gitevo/main/ledger").strip()
    shutil.rmtree(repo)
