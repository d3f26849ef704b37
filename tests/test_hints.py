"""`gitevo hint`: a person's hints reach the prompts of the generations they are given
for (one block, or all), each child names in its trailers the hints it saw, removed hints
stop, the offline operators say they ignore them, and `gitevo sync` carries hints to
another clone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gitevo.store import hints, ledger
from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from tests.conftest import RESPONDER, cli, git


def guided(tmp_path: Path) -> Path:
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy", "--llm", "provider=command",
        "--llm", f"command={sys.executable} {RESPONDER}")
    return repo


def prompts(repo: Path, generation: int) -> dict[str, tuple[str, str]]:
    """Each child of `generation`: (its first prompt's text, its Gitevo-Hints trailer)."""
    store = Store(repo)
    out = {}
    for ind in load_all(store, "main").values():
        if ind.generation != generation:
            continue
        record = json.loads(store.read_note("refs/notes/gitevo/main-llm", ind.commit))
        out[ind.id] = (record["turns"][0]["user"],
                       store.trailers(ind.commit).get("Gitevo-Hints", ""))
    return out


def test_hints_reach_the_prompts_they_are_for_and_the_trailers_say_so(tmp_path):
    repo = guided(tmp_path)
    assert "hint 1 given for generation 1, model.py::trend" in cli(
        "-C", str(repo), "hint", "Use a cubic term in trend", "--block", "trend")
    assert "hint 2 given for generations 1-2, every block" in cli(
        "-C", str(repo), "hint", "Keep every constant below 2", "--generations", "2")
    cli("-C", str(repo), "generation", "--n", "6", "-q")
    first = prompts(repo, 1)
    assert first
    for ident, (prompt, trailer) in first.items():
        block = load_all(Store(repo), "main")[ident].block
        assert "Keep every constant below 2" in prompt and "2" in trailer.split()
        on_trend = block == "model.py::trend"
        assert ("Use a cubic term in trend" in prompt) == on_trend, (ident, block)
        assert ("1" in trailer.split()) == on_trend
    rows = ledger.read(Store(repo), "main").offspring
    assert all(2 in r.get("hints", []) for r in rows)

    assert "hint 2 removed" in cli("-C", str(repo), "hint", "--remove", "2")
    cli("-C", str(repo), "generation", "--n", "4", "-q")
    assert not any("Keep every constant" in p or t for p, t in prompts(repo, 2).values())
    listed = cli("-C", str(repo), "hint", "--list")
    assert "1 [over] generation 1, model.py::trend" in listed
    assert "2 [removed]" in listed and "saw it: 6 children, valid" in listed
    assert "hints (" in cli("-C", str(repo), "status")
    cli("-C", str(repo), "report", "--html", str(tmp_path / "site"))
    page = (tmp_path / "site" / "index.html").read_text()
    assert 'id="hints"' in page and "Use a cubic term in trend" in page
    assert page.count(" hinted\"") == len(first) + sum(  # nodes whose prompt showed one
        1 for _, t in prompts(repo, 2).values() if t)
    # a recorded prompt that showed a hint is still built again byte for byte
    child = next(i for i, (_, t) in first.items() if "1" in t.split())
    assert "identical" in cli("-C", str(repo), "show", child, "--prompt")


def test_a_bad_hint_is_one_line(tmp_path):
    repo = guided(tmp_path)
    from tests.test_bad_input import run_gitevo

    for args, needle in ((["hint", "x", "--block", "nope"], "no such block (blocks: "),
                         (["hint", "--remove", "7"], "hint 7: no such hint"),
                         (["hint", "   "], "the text is empty")):
        out = run_gitevo(repo, *args)
        assert out.returncode == 2 and needle in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_the_offline_operators_say_they_ignore_hints(tmp_path):
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy")
    cli("-C", str(repo), "hint", "Try a sine")
    out = cli("-C", str(repo), "generation", "--n", "2")
    assert out.count("the offline operators ignore them") == 1


def test_sync_carries_hints_to_another_clone(tmp_path):
    a = tmp_path / "a"
    cli("init", str(a), "--template", "toy")
    cli("-C", str(a), "hint", "Try a sine", "--generations", "3")
    git(tmp_path, "clone", "-q", str(a), "b")
    b = tmp_path / "b"
    cli("-C", str(b), "sync", "origin")
    cli("-C", str(b), "hint", "Keep it short")
    cli("-C", str(a), "sync", str(b))
    for repo in (a, b):
        found = hints.load(Store(repo), "main")
        assert [(h.number, h.text) for h in found] == [(1, "Try a sine"), (2, "Keep it short")]
