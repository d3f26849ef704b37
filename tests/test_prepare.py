"""[fitness] prepare: trusted, on the seed, with the network; candidates then have none."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from pathlib import Path

import pytest

from gitevo.config import Sandbox
from gitevo.execution import sandbox
from tests.conftest import cli, git

# the candidate's side: the cache must be there and the network must not
EVALUATE_PROBE = """
import os, socket, sys
cache = os.path.join(os.environ["GITEVO_CACHE_DIR"], "payload.txt")
assert open(cache).read() == "fetched", "no prepared data"
if "--poison" in sys.argv:  # swap the data for the candidates that come after
    try:
        open(cache, "w").write("poisoned")
    except OSError:
        pass
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[-1])), timeout=2).close()
except OSError:
    sys.exit(0)
sys.exit("the candidate reached the network")
"""

# the trusted side: fetch the payload from the "internet" (a server on 127.0.0.1)
PREPARE_PROBE = """
import hashlib, os, socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as conn:
    payload = conn.recv(64).decode()
cache = os.environ["GITEVO_CACHE_DIR"]
open(os.path.join(cache, "payload.txt"), "w").write(payload)
with open(os.path.join(cache, "prepared-from.txt"), "a") as log:
    log.write(hashlib.sha256(open("model.py", "rb").read()).hexdigest() + "\\n")
"""


def _no_network_isolation() -> None:
    if sandbox.mode(Sandbox())[0] == "none":
        pytest.skip("neither bubblewrap nor unshare works here: no network to deny")


@pytest.fixture
def server():
    """A one-line "download" on 127.0.0.1, reachable only from the host's network."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"fetched")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _configure(repo: Path, tmp_path: Path, port: int, prepare: str) -> None:
    probes = tmp_path / "probes"
    probes.mkdir(exist_ok=True)
    (probes / "evaluate_probe.py").write_text(EVALUATE_PROBE)
    (probes / "prepare_probe.py").write_text(PREPARE_PROBE)
    toml = repo / "gitevo.toml"
    text = toml.read_text().replace(
        'command = "python fitness.py --metrics {metrics}"',
        f'command = "python {probes}/evaluate_probe.py {port} && '
        f'python fitness.py --metrics {{metrics}}"\n'
        f'prepare = {json.dumps(prepare)}\nenv = ["GITEVO_CACHE_DIR"]')
    # named, so that the Landlock floor lets the candidates' command read the probe
    toml.write_text(text + f'\n[fitness.vars]\nprobes = "{probes}"\n')
    git(repo, "add", "gitevo.toml")
    git(repo, "commit", "-qm", "prepare the data with the network")


def test_prepare_fetches_and_candidates_evaluate_offline(tmp_path, server, monkeypatch):
    _no_network_isolation()
    repo, cache = _prepared_toy(tmp_path, server, monkeypatch)
    cli("-C", str(repo), "generation", "--n", "4")
    notes = [json.loads(n) for n in _notes(repo)]
    assert len(notes) >= 5 and all(n["status"] in ("ok", "invalid") for n in notes), notes
    assert sum(n["status"] == "ok" for n in notes) >= 2
    # each run prepared from the seed's model.py, never a candidate's
    seed_model = git(repo, "show", "gitevo/main/g000-000:model.py")
    digests = set((cache / "prepared-from.txt").read_text().split())
    assert digests == {hashlib.sha256(seed_model.encode()).hexdigest()}


def test_a_failing_prepare_stops_the_run_with_one_line(tmp_path, server, toy):
    _configure(toy, tmp_path, server, "echo 'dataset mirror unreachable' >&2; exit 3")
    # a killed gitevo's prepare left its export behind (pid 2**22 + 1 cannot exist)
    stale = toy / ".git" / "gitevo" / "prepare" / f"{2 ** 22 + 1}-abc" / "tree"
    stale.mkdir(parents=True)
    result = cli("-C", str(toy), "generation", "--n", "2", expect=2)
    assert not any(stale.parent.parent.iterdir())  # swept, and this prepare's own removed
    assert "gitevo: error: [fitness] prepare exited 3: dataset mirror unreachable" in result
    assert not git(toy, "for-each-ref", "refs/heads/gitevo/main/g001-*").strip()


def _prepared_toy(tmp_path: Path, port: int, monkeypatch) -> tuple[Path, Path]:
    """A toy repo whose prepare step fetches the payload into a cache of its own."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("GITEVO_CACHE_DIR", str(cache))
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy")
    _configure(repo, tmp_path, port, f"python {tmp_path}/probes/prepare_probe.py {port}")
    return repo, cache


def _notes(repo: Path) -> list[str]:
    out = git(repo, "notes", "--ref", "gitevo/main", "list").split("\n")
    return [git(repo, "notes", "--ref", "gitevo/main", "show", line.split()[1])
            for line in filter(None, out)]


def test_candidates_cannot_write_the_prepared_cache(tmp_path, server, monkeypatch):
    if sandbox.mode(Sandbox())[0] != "bwrap":
        pytest.skip("a read-only dataset cache needs bubblewrap")
    repo, cache = _prepared_toy(tmp_path, server, monkeypatch)
    # a candidate that tries to swap the data for its successors
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace("evaluate_probe.py", "evaluate_probe.py --poison"))
    git(repo, "commit", "-qam", "a poisoning candidate")
    cli("-C", str(repo), "generation", "--n", "2")
    # the poisoning candidates were evaluated (with the cache in place) and the cache held
    notes = [json.loads(n) for n in _notes(repo)]
    assert len(notes) >= 3 and all(n["status"] in ("ok", "invalid") for n in notes), notes
    assert (cache / "payload.txt").read_text() == "fetched"
