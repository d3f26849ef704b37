"""Figures of a run: the objective space with its Pareto fronts, and progress per generation.

Everything is read back from the repository (branches, fitness notes, the ledger), so a
clone that fetched a run can draw it. matplotlib is imported inside the functions and
drives the Agg canvas directly (no pyplot, no display, no global backend switch):
importing gitevo and `gitevo status` must not pay for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitevo.config import Config, Objective
from gitevo.pipeline import selection
from gitevo.store import ledger
from gitevo.store.fitness import Evaluation
from gitevo.store.gitstore import GitError, Store
from gitevo.store.individuals import load_all

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SEED_COLOR = "#e6194b"  # a red that the generation colour map (viridis) never produces
INFEASIBLE_COLOR = "#8a8a8a"
LINE_COLOR = "#1f5fa8"
COLOR_MAP = "viridis"
DPI = 100


class ReportError(GitError):
    """A figure or report cannot be made: no ledger yet, an unknown objective, an
    unwritable output. A GitError so the CLI prints it as one line and exits with 2."""


@dataclass(frozen=True)
class Point:
    """One evaluated (status ok) individual in objective space."""

    id: str
    generation: int
    values: dict[str, float]
    violation: float  # summed over the config's constraints; inf when a metric is missing

    @property
    def feasible(self) -> bool:
        return self.violation == 0

    @property
    def is_seed(self) -> bool:
        return self.generation == 0


@dataclass
class ParetoData:
    run: str
    axes: list[Objective]  # what is plotted: [x, y], or the single objective
    points: list[Point]
    # generation -> the feasible non-dominated set (on `axes`) of everything evaluated up to
    # and including that generation
    fronts: dict[int, list[Point]]

    @property
    def last_generation(self) -> int:
        return max(p.generation for p in self.points)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def require_history(store: Store, run: str) -> list[ledger.Generation]:
    history = ledger.history(store, run)
    if not history:
        raise ReportError(f"{store.root}: run {run!r} has no finished generation yet "
                          "(run `gitevo init` or `gitevo generation`)")
    return history


def violation(config: Config, evaluation: Evaluation) -> float:
    """Constraint violation as selection computes it, under the config given."""
    total = 0.0
    for constraint in config.evolution.constraints:
        value = evaluation.metrics.get(constraint.metric,
                                       evaluation.objectives.get(constraint.metric))
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return math.inf  # unmeasured counts as violated: nothing vouches for it
        total += constraint.violation(float(value))
    return total


def pick_axes(config: Config, x: str | None = None, y: str | None = None) -> list[Objective]:
    """The objectives to plot: --x/--y if given, else the first two (or the only one)."""
    by_name = {o.name: o for o in config.objectives}
    for option, name in (("--x", x), ("--y", y)):
        if name is not None and name not in by_name:
            raise ReportError(f"{option}: no objective {name!r} in {config.path.name} "
                              f"(objectives: {', '.join(by_name)})")
    if len(by_name) == 1:
        return list(by_name.values())
    if x is not None and x == y:
        raise ReportError(f"--x and --y both name {x!r}; pick two different objectives")
    names = [n for n in (x, y) if n is not None]
    names += [n for n in by_name if n not in names][: 2 - len(names)]
    if x is None and y is not None:
        names.reverse()  # only --y given: it goes on y, the first other objective on x
    return [by_name[n] for n in names]


def pareto_data(store: Store, config: Config, run: str, x: str | None = None,
                y: str | None = None) -> ParetoData:
    axes = pick_axes(config, x, y)
    require_history(store, run)
    names = [o.name for o in axes]
    points = []
    for ind in load_all(store, run).values():
        ev = ind.evaluation
        values = _values(ev.objectives, names) if ev is not None and ev.ok else None
        if values is not None:
            points.append(Point(ind.id, ind.generation, values, violation(config, ev)))
    if not points:
        raise ReportError(f"run {run!r} has no evaluated individual with {', '.join(names)}")
    return ParetoData(run, axes, points, _fronts(points, axes))


def _values(objectives: dict[str, Any], names: list[str]) -> dict[str, float] | None:
    """The named objectives as floats; None when one is missing or not a finite number
    (a note from before an objective was added, or edited by hand)."""
    found = {n: objectives.get(n) for n in names}
    if all(isinstance(v, (int, float)) and math.isfinite(v) for v in found.values()):
        return {n: float(v) for n, v in found.items()}
    return None


def _fronts(points: list[Point], axes: list[Objective]) -> dict[int, list[Point]]:
    senses = [o.sense for o in axes]
    fronts = {}
    for gen in range(max(p.generation for p in points) + 1):
        pool = [p for p in points if p.feasible and p.generation <= gen]
        values = [[p.values[o.name] for o in axes] for p in pool]
        front = selection.pareto_front(values, senses, [0.0] * len(pool)) if pool else []
        fronts[gen] = [pool[i] for i in front]
    return fronts


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def generation_colors(count: int) -> list[tuple[float, float, float, float]]:
    """The colour of generations 0..count-1, evenly spread over the colour map."""
    from matplotlib import colormaps

    cmap = colormaps[COLOR_MAP]
    if count <= 1:
        return [cmap(0.0)]
    return [cmap(i / (count - 1)) for i in range(count)]


def axis_label(objective: Objective) -> str:
    return f"{objective.name} ({objective.sense})"


def pareto(store: Store, config: Config, run: str, out: Path, x: str | None = None,
           y: str | None = None) -> Path:
    """Draw the objective space of every evaluated individual and the fronts into `out`."""
    data = pareto_data(store, config, run, x, y)
    fig = _figure((8, 6))
    ax = fig.add_subplot()
    colors = generation_colors(data.last_generation + 1)
    if len(data.axes) == 1:
        _one_objective(ax, data, colors)
    else:
        _two_objectives(ax, data, colors)
    _generation_colorbar(fig, ax, colors)
    feasible = sum(p.feasible for p in data.points)
    ax.set_title(f"run {data.run}: {len(data.points)} evaluated individuals "
                 f"({len(data.points) - feasible} infeasible), generations 0-"
                 f"{data.last_generation}", fontsize=10)
    return save(fig, out)


def _two_objectives(ax: Any, data: ParetoData, colors: list) -> None:
    xo, yo = data.axes
    feasible = [p for p in data.points if p.feasible]
    infeasible = [p for p in data.points if not p.feasible]
    ax.scatter([p.values[xo.name] for p in feasible], [p.values[yo.name] for p in feasible],
               c=[colors[p.generation] for p in feasible], s=22, alpha=0.6,
               edgecolors="none", zorder=2)
    _infeasible(ax, [(p.values[xo.name], p.values[yo.name]) for p in infeasible])
    # a staircase is the front's attainment surface: the boundary of what it dominates
    steps = "steps-pre" if xo.sense == "max" else "steps-post"
    for gen, front in sorted(data.fronts.items()):
        front = sorted(front, key=lambda p: p.values[xo.name])
        ax.plot([p.values[xo.name] for p in front], [p.values[yo.name] for p in front],
                drawstyle=steps, color=colors[gen], linewidth=1.6, zorder=3 + gen / 1000)
        ax.plot([p.values[xo.name] for p in front], [p.values[yo.name] for p in front],
                linestyle="none", marker="o", markersize=6, color=colors[gen],
                markeredgecolor="none", zorder=3 + gen / 1000)
    _seed(ax, [(p.values[xo.name], p.values[yo.name]) for p in data.points if p.is_seed])
    ax.set_xlabel(axis_label(xo))
    ax.set_ylabel(axis_label(yo))
    _log_if_wide(ax.set_xscale, xo, [p.values[xo.name] for p in data.points])
    _log_if_wide(ax.set_yscale, yo, [p.values[yo.name] for p in data.points])
    _legend(ax, "Pareto front of everything up to a generation", bool(infeasible))


def _log_if_wide(set_scale: Any, objective: Objective, values: list[float]) -> None:
    """Costs (parameters, latency, FLOPs) can span a decade when one child grows 10x, and a
    linear axis then squashes everyone else into a sliver. Scores to maximise stay linear:
    a broken child at 10% accuracy is no reason to bend the accuracy axis."""
    if (objective.sense == "min" and values and min(values) > 0
            and max(values) / min(values) >= 10):
        set_scale("log")


def _one_objective(ax: Any, data: ParetoData, colors: list) -> None:
    from matplotlib.ticker import MaxNLocator

    (obj,) = data.axes
    xs = _spread(data.points)
    feasible = [(xs[p.id], p.values[obj.name], colors[p.generation])
                for p in data.points if p.feasible]
    if feasible:
        ax.scatter([f[0] for f in feasible], [f[1] for f in feasible],
                   c=[f[2] for f in feasible], s=22, alpha=0.6, edgecolors="none", zorder=2)
    _infeasible(ax, [(xs[p.id], p.values[obj.name]) for p in data.points if not p.feasible])
    best = [(gen, front[0]) for gen, front in sorted(data.fronts.items()) if front]
    ax.plot([g for g, _ in best], [p.values[obj.name] for _, p in best], drawstyle="steps-post",
            color=INFEASIBLE_COLOR, linewidth=1.2, zorder=3)
    ax.scatter([g for g, _ in best], [p.values[obj.name] for _, p in best],
               c=[colors[g] for g, _ in best], s=50, zorder=4)
    _seed(ax, [(xs[p.id], p.values[obj.name]) for p in data.points if p.is_seed])
    ax.set_xlabel("generation")
    ax.set_ylabel(axis_label(obj))
    _log_if_wide(ax.set_yscale, obj, [p.values[obj.name] for p in data.points])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax, "best feasible up to a generation", any(not p.feasible for p in data.points))


def _spread(points: list[Point]) -> dict[str, float]:
    """x positions around each generation's integer, so a generation's points do not stack."""
    by_gen: dict[int, list[str]] = {}
    for p in points:
        by_gen.setdefault(p.generation, []).append(p.id)
    out = {}
    for gen, ids in by_gen.items():
        width = 0.5 if len(ids) > 1 else 0.0
        for i, ident in enumerate(sorted(ids)):
            out[ident] = gen + (i / (len(ids) - 1) - 0.5) * width if len(ids) > 1 else gen
    return out


def _infeasible(ax: Any, xy: list[tuple[float, float]]) -> None:
    if xy:
        ax.scatter([v[0] for v in xy], [v[1] for v in xy], s=34, facecolors="none",
                   edgecolors=INFEASIBLE_COLOR, linewidths=1.3, zorder=2)


def _seed(ax: Any, xy: list[tuple[float, float]]) -> None:
    if xy:
        ax.scatter([v[0] for v in xy], [v[1] for v in xy], marker="*", s=320,
                   color=SEED_COLOR, edgecolors="black", linewidths=0.7, zorder=20)


def _legend(ax: Any, front: str, infeasible: bool) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="*", markersize=14, color=SEED_COLOR, linestyle="none",
                      markeredgecolor="black", label="seed"),
               Line2D([], [], marker="o", color="#555555", linewidth=1.6, label=front),
               Line2D([], [], marker="o", color="#555555", alpha=0.6, linestyle="none",
                      markeredgecolor="none", label="evaluated individual")]
    if infeasible:
        handles.append(Line2D([], [], marker="o", markerfacecolor="none", linestyle="none",
                              markeredgecolor=INFEASIBLE_COLOR, label="infeasible (constraint)"))
    # outside the axes: inside, it would hide whichever individual sits in its corner
    ax.figure.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                     fontsize=8, frameon=False)


def _generation_colorbar(fig: Figure, ax: Any, colors: list) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.ticker import MaxNLocator

    norm = BoundaryNorm([g - 0.5 for g in range(len(colors) + 1)], len(colors))
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=ListedColormap(colors)), ax=ax,
                       label="generation")
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()


def progress(store: Store, config: Config, run: str, out: Path) -> Path:
    """Best feasible value per objective and the hypervolume, one subplot each, per generation."""
    from matplotlib.ticker import MaxNLocator

    history = require_history(store, run)
    gens = [g.generation for g in history]
    panels = [(axis_label(o), f"best feasible {o.name}",
               [_number(g.stats.get("best", {}).get(o.name)) for g in history])
              for o in config.objectives]
    reference = ", ".join(f"{v:g}" for v in history[-1].reference)
    panels.append(("hypervolume", f"hypervolume (reference point {reference})",
                   [_number(g.stats.get("hypervolume")) for g in history]))
    fig = _figure((8, 0.6 + 2.3 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, title, values) in zip(axes, panels, strict=True):
        ax.plot(gens, values, marker="o", color=LINE_COLOR, linewidth=1.8)
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("generation")
    fig.suptitle(f"run {run}: generations {gens[0]}-{gens[-1]}", fontsize=10)
    return save(fig, out)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out: Path) -> Path:
    """Write the figure; the format follows the file's extension (png, svg, pdf)."""
    out = Path(out)
    try:
        fig.savefig(out, dpi=DPI)
    except OSError as exc:
        raise ReportError(f"{out}: cannot write: {exc.strerror or exc}") from None
    except ValueError as exc:  # an extension matplotlib has no writer for
        raise ReportError(f"{out}: {exc}") from None
    return out
