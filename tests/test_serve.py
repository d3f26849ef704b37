"""`gitevo report --serve`: the report from a read-only loopback server that follows a run
another process makes, and the generation in progress from its saved plan."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gitevo.pipeline.plan import Plan
from gitevo.results.serve import in_progress
from gitevo.store.gitstore import Store
from gitevo.variation.spec import Spec
from tests.browser import Browser
from tests.conftest import cli


def get(url: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served(tmp_path):
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy")
    cli("-C", str(repo), "generation", "--n", "3", "-q")
    proc = subprocess.Popen([sys.executable, "-m", "gitevo", "-C", str(repo), "report",
                             "--serve", "--port", "0"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "(read-only; Ctrl-C stops)" in line, line
    url = line.split(" at ", 1)[1].split("/ ", 1)[0]
    assert url.startswith("http://127.0.0.1:")
    yield repo, url
    proc.terminate()
    proc.wait(10)


def test_the_served_page_follows_a_run_and_changes_nothing(served):
    repo, url = served
    status, page = get(url + "/")
    assert status == 200 and page.count('<circle class="node') == 4
    assert 'fetch("/version"' in page  # the page looks for news by itself
    status, first = get(url + "/version")
    assert status == 200 and first
    assert get(url + "/front.png")[0] == 200
    cli("-C", str(repo), "generation", "--n", "3", "-q")  # another process moves the run
    deadline = time.monotonic() + 10
    while get(url + "/version")[1] == first:
        assert time.monotonic() < deadline, "the version never moved"
        time.sleep(0.2)
    assert get(url + "/")[1].count('<circle class="node') == 7
    refs = subprocess.run(["git", "for-each-ref"], cwd=repo, capture_output=True,
                          text=True).stdout
    for method in ("POST", "PUT", "DELETE"):
        assert get(url + "/", method)[0] == 405
    assert get(url + "/../gitevo.toml")[0] == 404 and get(url + "/nope")[0] == 404
    assert subprocess.run(["git", "for-each-ref"], cwd=repo, capture_output=True,
                          text=True).stdout == refs


NODES = "document.querySelectorAll('#tree-svg circle.node').length"


def click(page: Browser, selector: str) -> None:
    """A real left click (pressed, released) in the middle of the element."""
    x, y = page.evaluate(f"""(() => {{ const e = document.querySelector('{selector}');
        e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
    for kind in ("mousePressed", "mouseReleased"):
        page.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                  clickCount=1)


def test_the_page_in_a_browser_shows_a_new_generation_by_itself(served, tmp_path):
    repo, url = served
    page = Browser(tmp_path / "profile")
    try:
        page.open(url + "/")
        assert page.evaluate(NODES) == 4
        click(page, '#tree-svg circle.node[data-id="g001-000"]')
        assert page.wait_for("document.querySelector('#tree-details h3')?.textContent") \
            == "g001-000"
        store = Store(repo)
        child = store.resolve_ref("refs/heads/gitevo/main/g001-000")
        diff = store.diff(store.parents(child)[0], child)
        shown = page.evaluate("document.querySelector('#tree-details pre.diff').textContent")
        assert shown.strip() == diff.strip()
        page.evaluate("window.untouched = true")  # gone once the page reloads itself
        cli("-C", str(repo), "generation", "--n", "3", "-q")
        assert page.wait_for(f"{NODES} === 7 && window.untouched === undefined")
        # the chosen individual stays chosen across the reload
        assert page.evaluate("document.querySelector('#tree-details h3').textContent") \
            == "g001-000"
    finally:
        page.close()


def test_the_generation_in_progress_says_done_running_and_queued(tmp_path):
    repo = tmp_path / "toy"
    cli("init", str(repo), "--template", "toy")
    cli("-C", str(repo), "generation", "--n", "3", "-q")
    store = Store(repo)
    done = store.resolve_ref("refs/heads/gitevo/main/g001-000")
    # a plan for generation 2 as a killed run leaves it: one child noted, one committed
    # without a note yet, one not committed, one refused
    store.update_refs([("refs/heads/gitevo/main/g002-000", done, None),
                       ("refs/heads/gitevo/main/g002-001",
                        store.commit(store.tree_id(done), [done], "running\n"), None)], "t")
    specs = [Spec(f"g002-00{i}", "mutation", ["g001-000"], "model.py::trend", i)
             for i in range(4)]
    specs[3].rejected = "duplicate: the same code"
    Plan(2, specs).save(store.state_dir / "runs" / "main" / "plan.json")
    line = in_progress(store, "main")
    assert "generation 2 in progress" in line
    assert "done 1 (g002-000)" in line and "running 1 (g002-001)" in line
    assert "queued 1 (g002-002)" in line and "refused 1 (g002-003)" in line
    assert in_progress(Store(Path(repo)), "other") == ""
