"""The family tree of a run, for the HTML report: every individual (and every refused
proposal) as a node laid out by generation, with edges to its parents, coloured by an
objective or by non-dominated rank, marked by status, the champion's ancestry drawn
bold; and the page's script that shows a node's details on a click.

The nodes are SVG drawn here (so the page shows them with scripts off); their details
travel as one JSON document in the page, read by a small script that writes them with
textContent only: an LLM's text never becomes markup. Pan with a drag, zoom with the
wheel, so a thousand nodes stay legible.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from gitevo.config import Config
from gitevo.pipeline.arms import dominates
from gitevo.store import ledger
from gitevo.store.gitstore import Store
from gitevo.store.individuals import Individual

STEP_X, STEP_Y, RADIUS = 18, 70, 6
DIFF_CHARS = 12_000  # per diff in the page; `gitevo show ID` has the whole of it


@dataclass
class Node:
    id: str
    generation: int
    parents: list[str]
    status: str
    operator: str
    block: str = ""
    prompt: str = ""
    model: str = ""
    temperature: float | None = None
    objectives: dict[str, float] = field(default_factory=dict)
    rank: int | None = None  # non-dominated rank among the valid ones (0: the front)
    champion_line: bool = False  # the champion or one of its ancestors
    subject: str = ""
    message: str = ""
    diffs: list[dict[str, str]] = field(default_factory=list)  # {"parent", "diff"}
    error: str = ""
    hints: list[str] = field(default_factory=list)  # the person's hints its prompt showed
    x: float = 0.0
    y: float = 0.0


def nodes(store: Store, config: Config, run: str, everyone: dict[str, Individual],
          champion: str | None) -> list[Node]:
    """Every individual, and every proposal refused before it had a commit."""
    found = [_node(store, ind) for ind in everyone.values()]
    known = {n.id for n in found}
    for gen in ledger.history(store, run):
        for row in gen.offspring:
            if row.get("id") not in known and row.get("status") == "rejected":
                found.append(Node(row["id"], gen.generation, list(row.get("parents") or []),
                                  "rejected", row.get("operator", ""), row.get("block", ""),
                                  error=str(row.get("error", ""))[:500]))
    _rank(found, config)
    _champion_line(found, champion)
    _place(found)
    return found


def _node(store: Store, ind: Individual) -> Node:
    ev = ind.evaluation
    diffs = [{"parent": p, "diff": store.diff(p, ind.commit)[:DIFF_CHARS]}
             for p in store.parents(ind.commit)] if ind.generation else []
    return Node(ind.id, ind.generation, list(ind.parents), ind.status, ind.operator,
                ind.block, ind.prompt, ind.model, ind.temperature,
                dict(ev.objectives) if ev else {}, subject=ind.subject,
                message=store.message(ind.commit), diffs=diffs,
                error=(ev.error or "")[:500] if ev else "", hints=list(ind.hints))


def _rank(found: list[Node], config: Config) -> None:
    """Non-dominated sorting of the valid nodes (rank 0: nobody beats them)."""
    names, senses = config.objective_names, config.senses
    left = [n for n in found if n.status == "ok" and all(k in n.objectives for k in names)]
    rank = 0
    while left:
        points = {n.id: [n.objectives[k] for k in names] for n in left}
        front = [n for n in left
                 if not any(dominates(points[o.id], points[n.id], senses) for o in left)]
        for n in front:
            n.rank = rank
        left = [n for n in left if n.rank is None]
        rank += 1


def _champion_line(found: list[Node], champion: str | None) -> None:
    by_id = {n.id: n for n in found}
    queue = [champion] if champion in by_id else []
    while queue:
        node = by_id.get(queue.pop())
        if node is None or node.champion_line:
            continue
        node.champion_line = True
        queue.extend(node.parents)


def _place(found: list[Node]) -> None:
    """Each generation a row, its members in id order."""
    rows: dict[int, list[Node]] = {}
    for node in sorted(found, key=lambda n: n.id):
        rows.setdefault(node.generation, []).append(node)
    for generation, row in rows.items():
        for i, node in enumerate(row):
            node.x, node.y = 20 + i * STEP_X, 20 + generation * STEP_Y


# ---- SVG and script ----------------------------------------------------------------------------


def svg(found: list[Node], escape) -> str:
    """The tree as SVG; `escape` makes text safe for HTML attributes and content."""
    by_id = {n.id: n for n in found}
    width = max((n.x for n in found), default=0) + 40
    height = max((n.y for n in found), default=0) + 40
    edges = []
    for n in found:
        for p in n.parents:
            parent = by_id.get(p)
            if parent is None:
                continue
            bold = " champion" if n.champion_line and parent.champion_line else ""
            edges.append(f'<line class="edge{bold}" x1="{parent.x}" y1="{parent.y}" '
                         f'x2="{n.x}" y2="{n.y}"></line>')
    circles = [f'<circle class="node status-{escape(n.status)}'
               f'{" champion" if n.champion_line else ""}{" hinted" if n.hints else ""}" '
               f'data-id="{escape(n.id)}" '
               f'cx="{n.x}" cy="{n.y}" r="{RADIUS}"><title>{escape(n.id)} {escape(n.status)}'
               f'</title></circle>' for n in found]
    labels = [f'<text class="gen" x="2" y="{20 + g * STEP_Y - 10}">generation {g}</text>'
              for g in sorted({n.generation for n in found})]
    return (f'<svg id="tree-svg" viewBox="0 0 {width} {height}" '
            f'data-width="{width}" data-height="{height}">'
            + "".join(labels) + "".join(edges) + "".join(circles) + "</svg>")


def data_json(found: list[Node]) -> str:
    """The nodes' details as JSON safe inside a <script> element."""
    text = json.dumps({n.id: asdict(n) for n in found}, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById("tree-data").textContent);
  const svg = document.getElementById("tree-svg");
  const panel = document.getElementById("tree-details");
  const colour = document.getElementById("tree-colour");
  const nodes = Array.from(svg.querySelectorAll("circle.node"));
  function hue(value, lo, hi, better) {
    if (value === undefined || hi === lo) { return "#9aa5b1"; }
    let t = (value - lo) / (hi - lo);
    if (better === "min") { t = 1 - t; }
    return "hsl(" + Math.round(10 + 110 * t) + ",70%,45%)";
  }
  function recolour() {
    const how = colour.value;
    if (how === "rank") {
      const worst = Math.max(0, ...Object.values(data).map(n => n.rank || 0));
      nodes.forEach(c => { const n = data[c.dataset.id];
        c.style.fill = n.rank === null ? "#d0d7de" : hue(worst - n.rank, 0, worst || 1, "max"); });
      return;
    }
    const [name, sense] = how.split(":");
    const values = Object.values(data).map(n => n.objectives[name]).filter(v => v !== undefined);
    const lo = Math.min(...values), hi = Math.max(...values);
    nodes.forEach(c => { const n = data[c.dataset.id];
      c.style.fill = n.status === "ok" ? hue(n.objectives[name], lo, hi, sense) : "#d0d7de"; });
  }
  function line(label, value) {
    const p = document.createElement("p");
    const b = document.createElement("b"); b.textContent = label + ": ";
    p.appendChild(b); p.appendChild(document.createTextNode(value)); return p;
  }
  function show(id) {
    const n = data[id];
    if (!n) { return; }
    nodes.forEach(c => c.classList.toggle("chosen", c.dataset.id === id));
    panel.replaceChildren();
    const h = document.createElement("h3"); h.textContent = n.id; panel.appendChild(h);
    const objectives = Object.entries(n.objectives).map(([k, v]) => k + "=" + v).join(" ");
    [["status", n.status + (n.error ? " (" + n.error + ")" : "")],
     ["objectives", objectives || "-"], ["operator", n.operator], ["block", n.block || "-"],
     ["parents", n.parents.join(", ") || "-"], ["prompt", n.prompt || "-"],
     ["model", (n.model || "-") + (n.temperature === null ? "" : " at " + n.temperature)],
     ["hints shown", n.hints.length ? n.hints.join(", ") : "-"]]
      .forEach(([k, v]) => panel.appendChild(line(k, v)));
    if (n.message) { const pre = document.createElement("pre"); pre.className = "message";
      pre.textContent = n.message; panel.appendChild(pre); }
    n.diffs.forEach(d => {
      panel.appendChild(line("diff against", d.parent.slice(0, 10)));
      const pre = document.createElement("pre"); pre.className = "diff";
      pre.textContent = d.diff; panel.appendChild(pre); });
  }
  svg.addEventListener("click", e => {
    const id = e.target.dataset && e.target.dataset.id;
    if (id) { history.replaceState(null, "", "#" + id); show(id); }
  });
  document.querySelectorAll("[data-node]").forEach(a => a.addEventListener("click", e => {
    e.preventDefault(); history.replaceState(null, "", "#" + a.dataset.node);
    show(a.dataset.node); document.getElementById("tree").scrollIntoView(); }));
  let box = [0, 0, +svg.dataset.width, +svg.dataset.height], drag = null;
  function apply() { svg.setAttribute("viewBox", box.join(" ")); }
  svg.addEventListener("wheel", e => { e.preventDefault();
    const k = e.deltaY > 0 ? 1.2 : 1 / 1.2, r = svg.getBoundingClientRect();
    const fx = (e.clientX - r.left) / r.width, fy = (e.clientY - r.top) / r.height;
    const w = box[2] * k, h = box[3] * k;
    box = [box[0] + (box[2] - w) * fx, box[1] + (box[3] - h) * fy, w, h]; apply(); },
    {passive: false});
  svg.addEventListener("mousedown", e => { drag = [e.clientX, e.clientY]; });
  window.addEventListener("mouseup", () => { drag = null; });
  window.addEventListener("mousemove", e => { if (!drag) { return; }
    const r = svg.getBoundingClientRect();
    box[0] -= (e.clientX - drag[0]) * box[2] / r.width;
    box[1] -= (e.clientY - drag[1]) * box[3] / r.height;
    drag = [e.clientX, e.clientY]; apply(); });
  colour.addEventListener("change", recolour);
  recolour();
  if (location.hash.length > 1) { show(decodeURIComponent(location.hash.slice(1))); }
  // when the tree was ready, for bench/report.py
  document.body.setAttribute("data-tree-ms", String(Math.round(performance.now())));
})();
"""


def scatter(found: list[Node], config: Config, escape) -> str:
    """The valid nodes on the first two objectives (or the first against generation): an
    SVG whose points select the same nodes in the tree."""
    names = [o.name for o in config.objectives][:2]
    points = [n for n in found if n.status == "ok" and all(k in n.objectives for k in names)]
    if not points:
        return ""

    def axis(values: list[float]) -> tuple[float, float]:
        lo, hi = min(values), max(values)
        return (lo, hi) if hi > lo else (lo - 1.0, hi + 1.0)

    xs = [n.objectives[names[-1]] if len(names) > 1 else float(n.generation) for n in points]
    ys = [n.objectives[names[0]] for n in points]
    (x0, x1), (y0, y1) = axis(xs), axis(ys)
    dots = []
    for n, x, y in zip(points, xs, ys, strict=True):
        cx, cy = 40 + 520 * (x - x0) / (x1 - x0), 300 - 260 * (y - y0) / (y1 - y0)
        dots.append(f'<circle class="point{" front" if n.rank == 0 else ""}" '
                    f'data-node="{escape(n.id)}" cx="{cx:.1f}" cy="{cy:.1f}" r="4">'
                    f'<title>{escape(n.id)}</title></circle>')
    x_name = names[-1] if len(names) > 1 else "generation"
    return (f'<svg id="pareto-svg" viewBox="0 0 580 330"><text x="40" y="325">{escape(x_name)}'
            f' ({x0:.4g} .. {x1:.4g})</text><text x="2" y="14">{escape(names[0])} ({y0:.4g} ..'
            f' {y1:.4g})</text>' + "".join(dots) + "</svg>")
