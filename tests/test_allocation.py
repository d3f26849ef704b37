"""The learned allocation over a real run: two models on two loopback servers, one whose
answers work and one whose never apply. The calls move to the working model; the state
comes from the ledger alone, so a killed and resumed run, and a clone brought up to date
with `gitevo sync`, draw the same plan."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from gitevo.config import load as load_config
from gitevo.pipeline import arms, bandit
from gitevo.pipeline.plan import make_plan
from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.variation.prompts import PromptLibrary
from tests.conftest import cli, git, gitevo_process
from tests.llm_servers import LLMServer, answered, ok, slow
from tests.responder import answer, as_prompt

KEY_ENV = "GITEVO_TEST_LLM_KEY"


def respond(body: dict) -> str:
    return answer(as_prompt(body))


def ensemble_toy(tmp_path: Path, good: LLMServer, bad: LLMServer) -> Path:
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy")
    toml = repo / "gitevo.toml"
    text = toml.read_text()
    start, end = text.index("[llm]"), text.find("\n[", text.index("[llm]") + 1)
    models = "".join(
        f'[[llm]]\nname = "{name}"\nprovider = "openai"\nmodel = "m-{name}"\n'
        f'base_url = "{server.openai_url}"\napi_key_env = "{KEY_ENV}"\nrepair_turns = 0\n'
        f"concurrency = 2\n\n" if name == "good" else
        f'[[llm]]\nname = "{name}"\nprovider = "openai"\nmodel = "m-{name}"\n'
        f'base_url = "{server.openai_url}"\napi_key_env = "{KEY_ENV}"\nconcurrency = 2\n\n'
        for name, server in (("good", good), ("bad", bad)))
    text = text[:start] + models + (text[end + 1:] if end != -1 else "")
    toml.write_text(text)
    git(repo, "commit", "-qam", "two models: one that helps, one that never applies")
    return repo


def rows(repo: Path, generation: int) -> list[dict]:
    return next(g for g in ledger.history(Store(repo), "main")
                if g.generation == generation).offspring


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    os.environ[KEY_ENV] = "sk-test"
    tmp = tmp_path_factory.mktemp("ensemble")
    with LLMServer(default=answered(), responder=respond) as good, \
            LLMServer(default=ok("I would rather not change anything.")) as bad:
        repo = ensemble_toy(tmp, good, bad)
        cli("-C", str(repo), "run", "--generations", "3", "--n", "8")
        yield repo, good, bad


def test_the_calls_move_to_the_model_whose_answers_work(two_models):
    repo, good, bad = two_models
    first = rows(repo, 1)
    assert {r["model"] for r in first} == {"good", "bad"}  # nothing learned: both tried
    assert all(r["status"] == "rejected" for r in first if r["model"] == "bad")
    later = rows(repo, 2) + rows(repo, 3)
    to_good = sum(r["model"] == "good" for r in later)
    assert to_good >= 0.75 * len(later), [r["model"] for r in later]
    # each conversation went to the server of the model its plan drew
    assert len(good.first_turns()) == sum(r["model"] == "good" for r in first + later)


def test_status_shows_each_arm_and_its_share(two_models):
    repo, _, _ = two_models
    out = cli("-C", str(repo), "status")
    assert "allocation (bandit)" in out
    cells = [[c.strip() for c in line.split("\u2502")[1:-1]] for line in out.splitlines()]
    table = {c[1]: c for c in cells if c and c[0] == "model"}
    assert set(table) == {"good", "bad"}
    good_share, bad_share = (int(table[n][-1].rstrip("%")) for n in ("good", "bad"))
    assert good_share > bad_share and bad_share >= 3  # the floor: no arm starves
    assert table["bad"][3] == "0.000"  # its mean reward: nothing it answered applied
    assert {c[0] for c in cells if c} >= {"model", "prompt", "persona"}


def test_the_plan_is_a_function_of_the_refs(two_models, tmp_path):
    """The same refs give the same allocation and the same plan: in this clone, in a
    copy that `gitevo sync` filled from it, and again after the copy is killed mid-run."""
    repo, _, _ = two_models
    store, config = Store(repo), load_config(repo / "gitevo.toml")
    library = PromptLibrary.load(repo)
    history = ledger.history(store, "main")
    state = arms.allocation(config, library.directions, library.personas, history)
    seed = store.resolve_ref("refs/heads/gitevo/main/g000-000")
    plan = make_plan(store, config, 4, history[-1].population, 8, seed, library, state)

    copy = tmp_path / "copy"
    git(tmp_path, "clone", "-q", str(repo), str(copy))
    cli("-C", str(copy), "sync", str(repo))
    copied = ledger.history(Store(copy), "main")
    again = arms.allocation(config, library.directions, library.personas, copied)
    assert again.arms == state.arms
    assert make_plan(Store(copy), config, 4, copied[-1].population, 8, seed, library,
                     again).specs == plan.specs


def test_kill_9_and_rerun_keep_the_allocation(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    with LLMServer(default=answered(), responder=respond) as good, \
            LLMServer(default=ok("no change")) as bad:
        repo = ensemble_toy(tmp_path, good, bad)
        cli("-C", str(repo), "generation", "--n", "6")
        store, config = Store(repo), load_config(repo / "gitevo.toml")
        library = PromptLibrary.load(repo)
        history = ledger.history(store, "main")
        state = arms.allocation(config, library.directions, library.personas, history)
        seed = store.resolve_ref("refs/heads/gitevo/main/g000-000")
        expected = make_plan(store, config, 2, history[-1].population, 6, seed, library,
                             state).specs
        good.default = slow(0.5, answered())  # slow enough to kill it mid-generation
        run = gitevo_process("generation", "--n", "6", cwd=repo)
        plan_file = Store(repo).state_dir / "runs" / "main" / "plan.json"
        deadline = time.monotonic() + 60
        while not plan_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGKILL)
        run.communicate(timeout=30)
        plan_file.unlink(missing_ok=True)  # the saved plan gone too: drawn again from refs
        good.default = answered()
        cli("-C", str(repo), "generation", "--n", "6")
    recorded = rows(repo, 2)
    assert [(r["id"], r["model"], r["template"], r["persona"]) for r in recorded] == \
        [(s.id, s.model, s.template, s.persona) for s in expected]


def test_thompson_sampling_prefers_the_arm_that_earns_and_never_starves_one():
    earned = {"a": bandit.Arm(calls=40, reward=30.0), "b": bandit.Arm(calls=40, reward=4.0)}
    rng = random.Random(1)
    picks = [bandit.draw(["a", "b"], earned, rng) for _ in range(2000)]
    assert 0.9 < picks.count("a") / 2000 < 0.97  # the floor keeps b near 5%
    shares = bandit.shares(["a", "b"], earned, "s")
    assert shares["b"] >= 0.04
    # by cost: the same reward for a tenth of the price wins
    priced = {"a": bandit.Arm(calls=40, reward=20.0, cost=4.0),
              "b": bandit.Arm(calls=40, reward=20.0, cost=0.4)}
    assert bandit.shares(["a", "b"], priced, "s", by_cost=True)["b"] > 0.9


def test_the_report_has_the_arms(two_models, tmp_path):
    repo, _, _ = two_models
    cli("-C", str(repo), "report", "--html", str(tmp_path / "site"))
    page = (tmp_path / "site" / "index.html").read_text()
    assert 'id="allocation"' in page and 'data-key="model:good"' in page
    assert 'data-key="persona:none"' in page and "next share" in page
