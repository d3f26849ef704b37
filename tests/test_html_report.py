"""`gitevo report --html DIR`: the data it gathers, checked against the ledger read with
plain git, and the page as headless Chromium renders it."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

from gitevo import config
from gitevo.results import html_report, plots
from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.store.individuals import load_all
from tests.browser import render
from tests.conftest import RESPONDER, cli, copy_repo, git
from tests.test_plots import ink_share, pixels_near, read_png

EVIL = '<script>document.title="pwned"</script>'

# An LLM stand-in for one more generation on a copy of the toy run: `predict` gets prose
# without code (rejected, even after the repair turn), `wave` gets a block that crashes the
# fitness command, and every other answer is the scripted responder's, after a <script> tag
# that ends up in the commit's subject and body.
LLM = f"""
import subprocess, sys
prompt = sys.stdin.read()
first = prompt.split("=== user ===")[1]
if "The block to change is `predict`" in first:
    print("I would rather leave predict alone.")
elif "The block to change is `wave`" in first:
    print("A bold idea:\\n\\n```python\\ndef wave(x):\\n    return undefined_name * x\\n```")
else:
    answer = subprocess.run([sys.executable, {str(RESPONDER)!r}], input=prompt, text=True,
                            capture_output=True, check=True).stdout
    print({EVIL!r} + " " + answer)
"""


@pytest.fixture(scope="module")
def evil_run(toy_run, tmp_path_factory, _session_identity) -> Path:
    """The toy run plus a guided generation 4 with rejected, crashed and ok children whose
    commit messages carry a <script> tag. Shared by this module; read-only."""
    base = tmp_path_factory.mktemp("evil-run")
    repo = copy_repo(toy_run, base / "toy")
    (base / "llm.py").write_text(LLM)
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace(
        'provider = "offline"', f'provider = "command"\ncommand = "{sys.executable} '
                                f'{base / "llm.py"}"'))
    git(repo, "commit", "-qam", "guided from generation 4")
    cli("-C", str(repo), "generation", "--n", "8", "-q")
    return repo


# ---- the ledger read with git alone, for comparison ------------------------------------------


def _ledger_files(repo: Path, name: str) -> list[object]:
    """`name` from every ledger commit, oldest first."""
    commits = git(repo, "rev-list", "--first-parent", "--reverse", "gitevo/main/ledger").split()
    return [json.loads(git(repo, "show", f"{c}:{name}")) for c in commits]


def _expected_rates(repo: Path, kind: str) -> dict[str, tuple[int, int, int]]:
    found: dict[str, list[int]] = {}
    for offspring, population, stats in zip(_ledger_files(repo, "offspring.json"),
                                            _ledger_files(repo, "population.json"),
                                            _ledger_files(repo, "stats.json"), strict=True):
        if stats["generation"] == 0:
            continue
        survivors = {m["id"] for m in population}
        for row in offspring:
            counts = found.setdefault(row.get(kind) or "-", [0, 0, 0])
            counts[0] += 1
            counts[1] += row["status"] == "ok"
            counts[2] += row["id"] in survivors
    return {k: tuple(v) for k, v in found.items()}


def _open(repo: Path):
    return Store(repo), config.load(repo / "gitevo.toml")


# ---- the rendered page -----------------------------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)
    children: list[Element] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(k.rstrip("_")) == v
                                        for k, v in attrs.items()):
                found.append(child)
            found += child.find_all(tag, **attrs)
        return found

    def find(self, tag: str, **attrs: str) -> Element:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]


class _Dom(HTMLParser):
    """The DOM as Chromium serialised it, as a tree of Elements with their text."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        for element in self.stack:
            element.parts.append(data)


def chromium(page: Path, profile: Path, *args: str, fragment: str = "") -> str:
    return render(page.resolve().as_uri() + (f"#{fragment}" if fragment else ""), profile, *args)


def rendered(page: Path, tmp_path: Path) -> Element:
    parser = _Dom()
    parser.feed(chromium(page, tmp_path / "profile", "--dump-dom"))
    return parser.root


def _rows(table: Element) -> dict[str, list[str]]:
    return {tr.attrs["data-key"]: [td.text for td in tr.find_all("td")]
            for tr in table.find("tbody").find_all("tr")}


# ---- tests -------------------------------------------------------------------------------------


def test_success_rates_match_the_ledger(evil_run):
    history = ledger.history(Store(evil_run), "main")
    statuses = history[-1].stats["statuses"]
    assert statuses.get("rejected") and statuses.get("ok") and len(statuses) >= 3, statuses
    rates = html_report.success_rates(history)
    for kind in ("template", "persona", "operator"):
        got = {r.key: (r.offspring, r.valid, r.survived) for r in rates[kind]}
        assert got == _expected_rates(evil_run, kind), kind
    templates = {r.key for r in rates["template"]}
    assert "offline" in templates and "crossover" in templates
    assert any(t.startswith("mutation/") for t in templates)
    assert sum(r.offspring for r in rates["operator"]) == 32
    assert any(r.valid < r.offspring for r in rates["template"])


def test_generation_rows_carry_the_ledger_statistics(evil_run):
    rows = html_report.generation_rows(ledger.history(Store(evil_run), "main"))
    stats = _ledger_files(evil_run, "stats.json")
    assert [r.generation for r in rows] == [0, 1, 2, 3, 4]
    for row, raw in zip(rows, stats, strict=True):
        assert (row.offspring, row.statuses, row.rejected) == \
               (raw["offspring"], raw["statuses"], raw["rejected"])
        assert row.hypervolume == raw["hypervolume"] and row.best == raw["best"]
    assert rows[1].tokens == 0 and rows[4].tokens > 0
    assert rows[4].rejected and rows[4].valid_rate < 1


def test_lineage_lists_every_ancestor_once_and_both_parents_of_merges(evil_run):
    store, conf = _open(evil_run)
    data = html_report.gather(store, conf, "main")
    hall = _ledger_files(evil_run, "hall_of_fame.json")[-1]
    assert [t.id for t in data.top] == [m["id"] for m in hall]
    merges = [t for t in data.top if t.operator == "crossover"]
    assert merges, "the hall of fame should hold a crossover child"
    for top in data.top:
        ids = [a.id for a in top.lineage]
        assert ids[0] == top.id and len(ids) == len(set(ids))
        assert ids[-1] == "g000-000"
        for ancestor in top.lineage:  # the lineage is closed under "parent of"
            assert set(ancestor.parents) <= set(ids)
    merge = merges[0]
    parents = git(evil_run, "log", "-1", "--format=%P", merge.commit).split()
    assert len(parents) == 2 and [d.parent_commit for d in merge.diffs] == parents
    assert merge.lineage[0].parents == [d.parent_id for d in merge.diffs]
    for d in merge.diffs:
        assert d.diff == git(evil_run, "diff", d.parent_commit, merge.commit)


def test_report_renders_in_chromium_with_everything_escaped(evil_run, tmp_path):
    out = tmp_path / "report"
    assert "index.html" in cli("-C", str(evil_run), "report", "--html", str(out))
    hall = [m["id"] for m in _ledger_files(evil_run, "hall_of_fame.json")[-1]]
    messages = {i: git(evil_run, "log", "-1", "--format=%B", f"gitevo/main/{i}") for i in hall}
    evil = [i for i, message in messages.items() if EVIL in message]
    assert evil, "no top individual carries the <script> commit message"

    dom = rendered(out / "index.html", tmp_path)
    # gitevo's own two scripts (the tree's data and its code), nothing an LLM wrote
    scripts = dom.find_all("script")
    assert [s.attrs.get("id") for s in scripts] == ["tree-data", None]
    assert all("<script" not in s.text for s in scripts)
    assert dom.find("title").text == "gitevo report: run main"  # the evil script never ran
    for ident in hall:
        section = dom.find("section", id=f"ind-{ident}")
        assert section.find("pre", class_="message").text == messages[ident].rstrip()
    assert list(_rows(dom.find("table", id="top-table"))) == hall

    operators = _rows(dom.find("table", id="rates-operator"))
    expected = _expected_rates(evil_run, "operator")
    assert set(operators) == set(expected) == {"mutation", "crossover"}
    for key, (offspring, valid, survived) in expected.items():
        assert operators[key][1] == str(offspring)
        assert operators[key][2].startswith(f"{valid} (")
        assert operators[key][3].startswith(f"{survived} (")
    assert set(_rows(dom.find("table", id="rates-template"))) == \
        set(_expected_rates(evil_run, "template"))
    generations = _rows(dom.find("table", id="generations-table"))
    assert list(generations) == ["0", "1", "2", "3", "4"]
    last = _ledger_files(evil_run, "stats.json")[-1]
    for status, count in last["statuses"].items():
        assert f"{status} {count}" in generations["4"][3]
    for reason, count in last["rejected"].items():
        assert f"{reason} {count}" in generations["4"][4]

    images = dom.find_all("img")
    assert sorted(img.attrs["src"] for img in images) == ["front.png", "progress.png"]
    for img in images:
        assert read_png(out / img.attrs["src"]).shape[1] == 800
    for element in dom.find_all("a") + images:  # nothing leaves the directory
        target = element.attrs.get("href") or element.attrs.get("src")
        assert not urlparse(target).scheme and not target.startswith("//"), target
    assert "<link" not in (out / "index.html").read_text()

    shot = tmp_path / "shot.png"
    chromium(out / "index.html", tmp_path / "profile2", f"--screenshot={shot}",
             "--window-size=1200,3000", "--hide-scrollbars")
    image = read_png(shot)
    assert image.shape == (3000, 1200, 3)
    assert ink_share(image) > 0.02  # text, tables and plots on white
    # the plots were loaded and drawn: the seed's star and a generation's colour show
    assert pixels_near(image, plots.SEED_COLOR, 0.06) > 60
    assert pixels_near(image, plots.generation_colors(5)[2], 0.06) > 15


def test_report_errors_are_one_line_with_exit_status_2(toy_run, tmp_path):
    fresh = tmp_path / "fresh"
    cli("init", str(fresh), "--template", "toy", "--no-eval")
    out = cli("-C", str(fresh), "report", "--html", str(tmp_path / "r"), expect=2)
    assert "has no finished generation yet" in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = cli("-C", str(toy_run), "report", "--html", str(blocker), expect=2)
    assert out.startswith(f"gitevo: error: {blocker}: cannot create")


@pytest.mark.torch
@pytest.mark.slow
def test_report_of_the_guided_exquisitenet_run(exquisite_run, tmp_path):
    out = tmp_path / "report"
    cli("-C", str(exquisite_run), "report", "--html", str(out))
    dom = rendered(out / "index.html", tmp_path)
    for kind in ("template", "persona", "operator"):
        rows = _rows(dom.find("table", id=f"rates-{kind}"))
        assert set(rows) == set(_expected_rates(exquisite_run, kind)), kind
    assert {"crossover", "eot"} <= set(_rows(dom.find("table", id="rates-template")))
    headers = [th.text for th in dom.find("table", id="generations-table").find_all("th")]
    assert "LLM tokens" in headers and "best params (min)" in headers
    tokens = _rows(dom.find("table", id="generations-table"))["2"][headers.index("LLM tokens")]
    stats = _ledger_files(exquisite_run, "stats.json")[-1]
    assert tokens == f"{stats['tokens']:,}" and stats["tokens"] > 0
    for member in _ledger_files(exquisite_run, "hall_of_fame.json")[-1]:
        section = dom.find("section", id=f"ind-{member['id']}")
        trailer = git(exquisite_run, "log", "-1", "--format=%(trailers:key=Gitevo-Prompt,"
                      "valueonly)", member["commit"]).strip()
        facts = dict(zip([dt.text for dt in section.find_all("dt")],
                         [dd.text for dd in section.find_all("dd")], strict=True))
        assert facts["prompt (template+persona)"] == (trailer or "-")
        for pre, parent in zip(section.find_all("pre", class_="diff"),
                               git(exquisite_run, "log", "-1", "--format=%P",
                                   member["commit"]).split(), strict=True):
            diff = git(exquisite_run, "diff", parent, member["commit"])
            assert pre.text == diff.rstrip("\n")


def test_the_family_tree_has_a_node_per_individual_and_shows_a_chosen_ones_diff(evil_run,
                                                                               tmp_path):
    out = tmp_path / "report"
    cli("-C", str(evil_run), "report", "--html", str(out))
    store = Store(evil_run)
    everyone = load_all(store, "main")
    refused = [r for g in ledger.history(store, "main") for r in g.offspring
               if r.get("status") == "rejected"]
    child = next(i for i in everyone.values() if i.generation == 4
                 and i.status == "ok" and EVIL in store.message(i.commit))
    parser = _Dom()
    parser.feed(chromium(out / "index.html", tmp_path / "profile", "--dump-dom",
                         fragment=child.id))  # what a click on its node does
    dom = parser.root
    nodes = dom.find("svg", id="tree-svg").find_all("circle")
    assert len(nodes) == len(everyone) + len(refused)
    assert {n.attrs["data-id"] for n in nodes} >= set(everyone)
    details = dom.find("div", id="tree-details")
    assert details.find("h3").text == child.id
    diff = store.diff(store.parents(child.commit)[0], child.commit)
    assert details.find("pre", class_="diff").text == diff.rstrip("\n") or \
        details.find("pre", class_="diff").text.strip() == diff.strip()
    assert EVIL in details.find("pre", class_="message").text  # shown as text, never run
    assert dom.find("title").text == "gitevo report: run main"
    points = dom.find("svg", id="pareto-svg").find_all("circle")
    assert points and {p.attrs["data-node"] for p in points} <= set(everyone)
