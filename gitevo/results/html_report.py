"""A static HTML report of a run: its plots, the ledger's statistics per generation, the top
individuals with their diffs and lineage, and how often each prompt template, persona and
operator gave valid children and survivors.

gather() reads the repository (branches, notes, ledger) into plain dataclasses; render()
turns those into one self-contained page: inline CSS, no script, no external URL, so the
directory can be opened from disk, attached to a CI run or copied anywhere. Commit
messages, notes and diffs are written by LLMs and users, so every string is escaped
unless it is markup this module built itself (the Html type).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gitevo.config import Config, Objective
from gitevo.results import allocation, isolation, plots, report, tree
from gitevo.results.lines import rung_line
from gitevo.results.plots import ReportError
from gitevo.store import ledger
from gitevo.store.fitness import VALID
from gitevo.store.gitstore import Store, best_ref, ledger_ref, llm_notes_ref
from gitevo.store.individuals import Individual, by_commit, load_all

FRONT_PNG = "front.png"
PROGRESS_PNG = "progress.png"
RATE_KINDS = ("template", "persona", "operator")
DIFF_LINES = 400  # per diff; past that the page says how to see the rest


# ---------------------------------------------------------------------------------------------
# What the report shows, as data
# ---------------------------------------------------------------------------------------------


@dataclass
class GenerationRow:
    generation: int
    offspring: int
    valid_rate: float | None
    statuses: dict[str, int]
    rejected: dict[str, int]
    hypervolume: float | None
    best: dict[str, float | None]
    time: dict[str, float]  # seconds per phase; "wall" is the whole generation when present
    tokens: int | None
    cost: float | None
    cascade: list[dict] = field(default_factory=list)  # per screening rung (stats.cascade)


@dataclass
class Rate:
    """How one template, persona or operator fared over all generations."""

    key: str
    offspring: int = 0
    valid: int = 0  # status ok
    survived: int = 0  # in its generation's population.json

    def share(self, count: int) -> float:
        return count / self.offspring if self.offspring else 0.0


@dataclass
class Ancestor:
    id: str
    generation: int
    operator: str
    parents: list[str]
    subject: str
    objectives: dict[str, float]
    status: str


@dataclass
class ParentDiff:
    parent_id: str
    parent_commit: str
    diff: str


@dataclass
class TopIndividual:
    rank: int
    id: str
    commit: str
    generation: int
    objectives: dict[str, float]
    violation: float
    operator: str
    block: str
    prompt: str  # template, or template+persona
    model: str
    temperature: float | None
    usage: dict[str, float]
    message: str
    diffs: list[ParentDiff]
    lineage: list[Ancestor]
    champion: bool


@dataclass
class ReportData:
    run: str
    generation: int
    ledger_commit: str
    individuals: int
    objectives: list[Objective]
    champion: str | None
    generations: list[GenerationRow]
    top: list[TopIndividual]
    rates: dict[str, list[Rate]] = field(default_factory=dict)
    llm_total: dict[str, float] = field(default_factory=dict)
    isolation: str = ""  # what confined the population's evaluations
    tree: list[tree.Node] = field(default_factory=list)  # every individual and refusal
    hints: list[str] = field(default_factory=list)  # the person's hints and how they fared
    config: Config | None = None
    allocation: str = "offline"  # how the next calls are drawn
    arms: list[allocation.ArmRow] = field(default_factory=list)


def gather(store: Store, config: Config, run: str) -> ReportData:
    """Everything the report shows, read from the run's refs, notes and ledger."""
    history = plots.require_history(store, run)
    latest = history[-1]
    everyone = load_all(store, run)
    champion = by_commit(everyone).get(store.resolve_ref(best_ref(run)) or "")
    mode, arms = allocation.rows(store, config, run)
    return ReportData(
        run=run, generation=latest.generation,
        ledger_commit=store.resolve_ref(ledger_ref(run)) or "",
        individuals=len(everyone), objectives=list(config.objectives),
        champion=champion.id if champion else None,
        generations=generation_rows(history),
        top=top_individuals(store, run, latest, everyone, champion.id if champion else None),
        rates=success_rates(history), llm_total=dict(latest.stats.get("llm_total") or {}),
        allocation=mode, arms=arms,
        isolation=isolation.line([everyone[m.id] for m in latest.population
                                  if m.id in everyone]),
        tree=tree.nodes(store, config, run, everyone, champion.id if champion else None),
        config=config, hints=report.hint_lines(store, config, run))


def generation_rows(history: list[ledger.Generation]) -> list[GenerationRow]:
    rows = []
    for gen in history:
        s = gen.stats
        rows.append(GenerationRow(
            generation=gen.generation, offspring=int(s.get("offspring", len(gen.offspring))),
            valid_rate=s.get("valid_rate"), statuses=dict(s.get("statuses") or {}),
            rejected=dict(s.get("rejected") or {}), hypervolume=s.get("hypervolume"),
            best=dict(s.get("best") or {}),
            # "time" (wall, llm, validate, fitness, ...) is the newer, finer split
            time=dict(s.get("time") or s.get("seconds") or {}),
            tokens=s.get("tokens"), cost=s.get("cost"), cascade=list(s.get("cascade") or [])))
    return rows


def success_rates(history: list[ledger.Generation]) -> dict[str, list[Rate]]:
    """Per template, persona and operator: offspring, valid ones, and survivors of the
    selection in the generation that made them. Generation 0 (the seed) is no offspring."""
    rates: dict[str, dict[str, Rate]] = {kind: {} for kind in RATE_KINDS}
    for gen in history:
        if gen.generation == 0:
            continue
        survivors = {m.id for m in gen.population}
        for row in gen.offspring:
            for kind in RATE_KINDS:
                key = str(row.get(kind) or "-")
                rate = rates[kind].setdefault(key, Rate(key))
                rate.offspring += 1
                rate.valid += row.get("status") in VALID
                rate.survived += row.get("id") in survivors
    return {kind: sorted(found.values(), key=lambda r: (-r.offspring, r.key))
            for kind, found in rates.items()}


def top_individuals(store: Store, run: str, latest: ledger.Generation,
                    everyone: dict[str, Individual], champion: str | None) -> list[TopIndividual]:
    """The latest hall of fame, best first, each with its diffs and lineage."""
    commits = by_commit(everyone)
    out = []
    for rank, member in enumerate(latest.hall_of_fame, 1):
        ind = everyone.get(member.id)
        commit = ind.commit if ind else member.commit
        diffs = [ParentDiff(commits[p].id if p in commits else p[:10], p, store.diff(p, commit))
                 for p in store.parents(commit)] if (ind is None or ind.generation) else []
        out.append(TopIndividual(
            rank=rank, id=member.id, commit=commit,
            generation=ind.generation if ind else 0, objectives=dict(member.objectives),
            violation=member.violation, operator=ind.operator if ind else "",
            block=ind.block if ind else "", prompt=ind.prompt if ind else "",
            model=ind.model if ind else "", temperature=ind.temperature if ind else None,
            usage=_usage(store, run, commit), message=store.message(commit),
            diffs=diffs, lineage=lineage(member.id, everyone), champion=member.id == champion))
    return out


def _usage(store: Store, run: str, commit: str) -> dict[str, float]:
    text = store.read_note(llm_notes_ref(run), commit)
    if not text:
        return {}
    try:
        usage = json.loads(text).get("usage") or {}
    except (ValueError, AttributeError):
        return {}  # a hand-edited or foreign note is no reason to fail the whole report
    return {k: v for k, v in usage.items() if isinstance(v, (int, float))}


def lineage(ident: str, everyone: dict[str, Individual]) -> list[Ancestor]:
    """The individual and every ancestor, newest generation first, each listing its
    parents (both of a merge); an ancestor shared by several paths appears once."""
    seen, queue, found = {ident}, [ident], []
    while queue:
        ind = everyone.get(queue.pop(0))
        if ind is None:
            continue
        ev = ind.evaluation
        found.append(Ancestor(ind.id, ind.generation, ind.operator, list(ind.parents),
                              ind.subject, dict(ev.objectives) if ev else {}, ind.status))
        for parent in ind.parents:
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return sorted(found, key=lambda a: (-a.generation, a.id))


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------


class Html(str):
    """Markup built here; any other str is text and gets escaped."""


def _h(value: object) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def _join(parts: Iterable[object], sep: str = "") -> Html:
    return Html(sep.join(_h(p) for p in parts))


def _tag(name: str, content: object = "", **attrs: object) -> Html:
    attributes = "".join(f' {k.rstrip("_").replace("_", "-")}="{_h(v)}"'
                         for k, v in attrs.items() if v is not None)
    return Html(f"<{name}{attributes}>{_h(content)}</{name}>")


def _table(headers: list[object], rows: list[list[object]], keys: list[str] | None = None,
           **attrs: object) -> Html:
    head = _tag("tr", _join(_tag("th", h) for h in headers))
    body = [_tag("tr", _join(_tag("td", c) for c in row), data_key=keys[i] if keys else None)
            for i, row in enumerate(rows)]
    return _tag("table", _join([_tag("thead", head), _tag("tbody", _join(body))]), **attrs)


def _num(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) else "-"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


TIME_ORDER = ("produce", "evaluate", "llm", "validate", "fitness", "other")


def _time(split: dict[str, float]) -> str:
    # pipeline order reads better than the ledger's alphabetical one
    keys = sorted(split, key=lambda k: (TIME_ORDER.index(k) if k in TIME_ORDER else 99, k))
    parts = ", ".join(f"{k} {split[k]:.1f} s" for k in keys
                      if k != "wall" and isinstance(split[k], (int, float)))
    wall = split.get("wall")
    if isinstance(wall, (int, float)):
        return f"{wall:.1f} s ({parts})" if parts else f"{wall:.1f} s"
    return parts or "-"


def _objectives(values: dict[str, float], objectives: list[Objective]) -> str:
    return " ".join(f"{o.name}={_num(values.get(o.name))}" for o in objectives)


def _anchor(ident: str) -> str:
    return f"ind-{ident}"


def render(data: ReportData, images: dict[str, str]) -> str:
    """The whole page; `images` maps a title to a file name beside index.html."""
    title = f"gitevo report: run {data.run}"
    sections = [
        _tag("h1", title), _summary(data), _nav(data),
        _tag("section", _join([_tag("h2", "Family tree"), _tree(data)]), id="tree"),
        _tag("section", _join([_tag("h2", "Plots"), _figures(images)]), id="plots"),
        _tag("section", _join([_tag("h2", "Generations"), _generations(data)]),
             id="generations"),
        _tag("section", _join([_tag("h2", "Top individuals (hall of fame of generation "
                                          f"{data.generation})"), _top(data)]), id="top"),
        _tag("section", _join([_tag("h2", "Success rates"), _rates(data)]), id="rates"),
    ]
    if data.arms:
        sections.append(_tag("section", _join([_tag("h2", "Allocation"), _arms(data)]),
                             id="allocation"))
    if data.hints:
        sections.append(_tag("section", _join([_tag("h2", "Hints"),
                                               _tag("pre", "\n".join(data.hints))]),
                             id="hints"))
    if data.tree:
        sections.append(Html(f'<script type="application/json" id="tree-data">'
                             f'{tree.data_json(data.tree)}</script>'))
        sections.append(Html(f"<script>{tree.SCRIPT}</script>"))
    head = _join([Html('<meta charset="utf-8">'),
                  Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                  _tag("title", title), Html(f"<style>{CSS}</style>")])
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n"
            + _tag("head", head) + "\n" + _tag("body", _join(sections, "\n")) + "\n</html>\n")


def _summary(data: ReportData) -> Html:
    facts = [f"generation {data.generation}", f"{data.individuals} individuals",
             "objectives " + ", ".join(f"{o.name} ({o.sense})" for o in data.objectives),
             f"champion {data.champion or '-'}", f"ledger {data.ledger_commit[:10]}"]
    if data.isolation:
        facts.append(data.isolation)
    tokens = sum(v for k, v in data.llm_total.items() if k.endswith("_tokens"))
    if tokens:
        facts.append(f"LLM {tokens:,} tokens, ${data.llm_total.get('cost', 0.0):.4f}")
    return _tag("p", " · ".join(facts), class_="summary")


def _nav(data: ReportData) -> Html:
    links = [("tree", "Family tree"), ("plots", "Plots"), ("generations", "Generations"),
             ("top", "Top individuals"),
             ("rates", "Success rates")] + ([("allocation", "Allocation")] if data.arms else [])
    return _tag("nav", _join((_tag("a", text, href=f"#{ident}") for ident, text in links),
                             " | "))


def _figures(images: dict[str, str]) -> Html:
    return _join(_tag("figure", _join([Html(f'<img src="{_h(src)}" alt="{_h(alt)}">'),
                                       _tag("figcaption", alt)]))
                 for alt, src in images.items())


def _generations(data: ReportData) -> Html:
    llm = any(r.tokens or r.cost for r in data.generations)
    headers: list[object] = ["generation", "offspring", "valid", "statuses", "rejected",
                             "hypervolume"]
    headers += [f"best {o.name} ({o.sense})" for o in data.objectives] + ["time"]
    headers += ["LLM tokens", "LLM cost"] if llm else []
    cascaded = any(r.cascade for r in data.generations)
    headers += ["cascade"] if cascaded else []
    rows = []
    for r in data.generations:
        seed = r.generation == 0
        row: list[object] = [r.generation if not seed else "0 (seed)", r.offspring,
                             "-" if seed else _pct(r.valid_rate), _counts(r.statuses),
                             _counts(r.rejected), _num(r.hypervolume)]
        row += [_num(r.best.get(o.name)) for o in data.objectives]
        row.append(_time(r.time))
        row += [f"{r.tokens or 0:,}", f"${r.cost or 0:.4f}"] if llm else []
        row += ["; ".join(rung_line(c) for c in r.cascade) or "-"] if cascaded else []
        rows.append(row)
    return _table(headers, rows, [str(r.generation) for r in data.generations],
                  id="generations-table")


def _top(data: ReportData) -> Html:
    if not data.top:
        return _tag("p", "The hall of fame is empty (nothing feasible yet).")
    headers = ["rank", "id", *[f"{o.name} ({o.sense})" for o in data.objectives], "operator",
               "prompt", "generation"]
    rows = [[t.rank, _tag("a", t.id, href=f"#{_anchor(t.id)}"),
             *[_num(t.objectives.get(o.name)) for o in data.objectives], t.operator,
             t.prompt or "-", t.generation] for t in data.top]
    overview = _table(headers, rows, [t.id for t in data.top], id="top-table")
    return _join([overview, *(_individual(t, data.objectives) for t in data.top)])


def _individual(t: TopIndividual, objectives: list[Objective]) -> Html:
    heading = f"#{t.rank} {t.id}" + (" (champion)" if t.champion else "")
    facts = [("commit", t.commit), ("objectives", _objectives(t.objectives, objectives)),
             ("constraint violation", _num(t.violation)),
             ("operator", f"{t.operator} {t.block}".strip() or "-"),
             ("prompt (template+persona)", t.prompt or "-"), ("model", t.model or "-"),
             ("temperature", _num(t.temperature))]
    usage = {k: v for k, v in t.usage.items() if v}
    if usage:
        facts.append(("LLM usage", ", ".join(f"{k} {_num(v)}" for k, v in usage.items())))
    details = _tag("dl", _join(_join([_tag("dt", k), _tag("dd", v)]) for k, v in facts))
    parts = [_tag("h3", heading), details, _tag("h4", "commit message"),
             _tag("pre", t.message.rstrip(), class_="message")]
    if not t.diffs:
        parts.append(_tag("p", "The seed: no parent to compare with."))
    for d in t.diffs:
        parts.append(_tag("details", _join([
            _tag("summary", f"diff against {d.parent_id} ({d.parent_commit[:10]})"),
            _diff(d.diff, t.id)]), open=""))
    parts += [_tag("h4", "lineage"), _lineage(t.lineage, objectives)]
    return _tag("section", _join(parts), id=_anchor(t.id), class_="individual")


def _diff(text: str, ident: str) -> Html:
    lines = text.splitlines()
    shown = []
    for line in lines[:DIFF_LINES]:
        kind = ("add" if line.startswith("+") and not line.startswith("+++") else
                "del" if line.startswith("-") and not line.startswith("---") else
                "hunk" if line.startswith("@@") else None)
        shown.append(_tag("span", line, class_=kind) if kind else _h(line))
    if len(lines) > DIFF_LINES:
        shown.append(_h(f"... {len(lines) - DIFF_LINES} more lines: gitevo show {ident}"))
    if not lines:
        shown.append(_h("(no change)"))
    return _tag("pre", _join(shown, "\n"), class_="diff")


def _lineage(ancestors: list[Ancestor], objectives: list[Objective]) -> Html:
    headers = ["id", "generation", "operator", "parents", "objectives", "status", "subject"]
    rows = [[a.id, a.generation, a.operator, " + ".join(a.parents) or "-",
             _objectives(a.objectives, objectives), a.status, a.subject] for a in ancestors]
    return _table(headers, rows, [a.id for a in ancestors], class_="lineage")


def _rates(data: ReportData) -> Html:
    parts = [_tag("p", "Over all generations: offspring planned, the share that evaluated ok, "
                       "and the share that survived selection into its generation's "
                       "population.")]
    titles = {"template": "prompt template", "persona": "persona", "operator": "operator"}
    for kind in RATE_KINDS:
        rows = [[r.key, r.offspring, f"{r.valid} ({_pct(r.share(r.valid))})",
                 f"{r.survived} ({_pct(r.share(r.survived))})"] for r in data.rates.get(kind, [])]
        parts += [_tag("h3", f"per {titles[kind]}"),
                  _table([titles[kind], "offspring", "valid", "survived"], rows,
                         [r.key for r in data.rates.get(kind, [])], id=f"rates-{kind}")]
    return _join(parts)


def _tree(data: ReportData) -> Html:
    if not data.tree:
        return _tag("p", "No individuals yet.")
    options = [(f"{o.name}:{o.sense}", f"colour by {o.name} ({o.sense})")
               for o in data.config.objectives] + [("rank", "colour by non-dominated rank")]
    select = _tag("select", _join(_tag("option", label, value=value) for value, label in options),
                  id="tree-colour")
    counts: dict[str, int] = {}
    for n in data.tree:
        counts[n.status] = counts.get(n.status, 0) + 1
    legend = _tag("p", f"{len(data.tree)} nodes ({_counts(counts)}); a grey node was not "
                       "measured; a black ring marks the champion and its ancestors, a red "
                       "ring an invalid, crashed or refused one. Drag to pan, wheel to zoom, "
                       "click a node (or a point of the scatter) for its details.",
                  class_="legend")
    scatter = tree.scatter(data.tree, data.config, _h)
    return _join([legend, select,
                  _tag("div", _join([_tag("div", Html(tree.svg(data.tree, _h)), id="tree-box"),
                                     _tag("div", "Click a node.", id="tree-details")]),
                       class_="tree-layout"),
                  Html(scatter)])


def _arms(data: ReportData) -> Html:
    parts = [_tag("p", f"How the LLM calls are drawn ({data.allocation}): per model, mutation "
                       "direction and persona, the children whose call used the arm, their "
                       "mean reward (0 no valid child, 0.2 valid but dominated by its parent, "
                       "0.6 not dominated, +0.4 entered the population), the cost per "
                       "improvement (a child that entered the population), and the share of "
                       "the next calls.")]
    rows = [[r.factor, r.name, r.calls, "-" if r.mean_reward is None else f"{r.mean_reward:.3f}",
             f"${r.cost:.4f}", r.improvements, allocation.cost_per_improvement(r),
             _pct(r.share)] for r in data.arms]
    parts.append(_table(["factor", "arm", "children", "mean reward", "cost", "improvements",
                         "cost/improvement", "next share"], rows,
                        [f"{r.factor}:{r.name}" for r in data.arms], id="arms"))
    return _join(parts)


TREE_CSS = """
.tree-layout { display: flex; gap: 1em; align-items: flex-start; }
#tree-box { flex: 3; border: 1px solid #d0d7de; height: 520px; overflow: hidden; }
#tree-svg { width: 100%; height: 100%; cursor: grab; }
#tree-details { flex: 2; max-height: 520px; overflow: auto; font-size: 13px; }
#tree-details pre { white-space: pre-wrap; background: #f6f8fa; padding: .4em; }
.edge { stroke: #c3cad3; stroke-width: 1; }
.edge.champion { stroke: #1d1d1f; stroke-width: 2.5; }
.node { stroke: #fff; stroke-width: 1; cursor: pointer; }
.node.champion { stroke: #1d1d1f; stroke-width: 2.5; }
.node.status-invalid, .node.status-crashed, .node.status-timeout, .node.status-rejected {
  stroke: #d1242f; stroke-width: 2; }
.node.chosen { stroke: #0b57d0; stroke-width: 3.5; }
.node.hinted { stroke-dasharray: 2 1; }
.gen { font-size: 9px; fill: #57606a; }
#pareto-svg { width: 580px; height: 330px; border: 1px solid #d0d7de; margin-top: 1em; }
.point { fill: #9aa5b1; cursor: pointer; } .point.front { fill: #d1242f; }
"""

CSS = TREE_CSS + """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px;
       padding: 0 1em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: .2em; margin-top: 1.8em; }
nav a { color: #0b57d0; }
.summary { color: #444; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #e3e6ea; }
figcaption { color: #555; font-size: 12px; }
section.individual { border: 1px solid #d0d7de; border-radius: 6px; padding: .4em 1em;
                     margin: 1.2em 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; }
dt { font-weight: 600; }
dd { margin: 0; font-family: ui-monospace, monospace; }
pre { background: #f6f8fa; padding: .6em; overflow-x: auto; font-size: 12px;
      white-space: pre-wrap; word-break: break-word; }
pre.diff .add { color: #116329; background: #e6ffec; }
pre.diff .del { color: #82071e; background: #ffebe9; }
pre.diff .hunk { color: #6639ba; }
summary { cursor: pointer; font-weight: 600; }
"""


def write(store: Store, config: Config, run: str, directory: Path) -> Path:
    """Write index.html and its PNGs into `directory` (created if needed); returns the page."""
    data = gather(store, config, run)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{directory}: cannot create: {exc.strerror or exc}") from None
    plots.pareto(store, config, run, directory / FRONT_PNG)
    plots.progress(store, config, run, directory / PROGRESS_PNG)
    images = {"objective space and Pareto fronts by generation": FRONT_PNG,
              "best value per objective and hypervolume by generation": PROGRESS_PNG}
    page = directory / "index.html"
    try:
        page.write_text(render(data, images), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{page}: cannot write: {exc.strerror or exc}") from None
    return page
