"""`gitevo pareto` and `gitevo plot` on real runs: the data behind the figures, and the PNGs
themselves opened and inspected pixel by pixel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from gitevo import config
from gitevo.results import plots
from gitevo.store import ledger
from gitevo.store.gitstore import Store
from tests.conftest import cli, copy_repo, git

# ---- helpers shared with test_html_report ----------------------------------------------------


def read_png(path: Path):
    """The image as an (height, width, 3) array of floats in [0, 1]."""
    image = imread(str(path))
    assert image.ndim == 3 and image.shape[2] in (3, 4), image.shape
    return image[:, :, :3]


def pixels_near(image, color, tolerance: float = 0.04) -> int:
    """How many pixels are within `tolerance` of `color` on every channel."""
    return int((np.abs(image - np.array(to_rgb(color))) <= tolerance).all(axis=2).sum())


def ink_share(image) -> float:
    """The share of pixels that are not (near) white: 0 for a blank image."""
    return float((image.min(axis=2) < 0.9).mean())


# ---- data --------------------------------------------------------------------------------------


def _open(repo: Path):
    store = Store(repo)
    return store, config.load(repo / "gitevo.toml")


def _dominates(a: list[float], b: list[float], senses: list[str]) -> bool:
    better = [x >= y if s == "max" else x <= y for x, y, s in zip(a, b, senses, strict=True)]
    return all(better) and a != b


def _check_fronts(data: plots.ParetoData) -> None:
    """Each generation's front is exactly the non-dominated feasible set of everything
    evaluated up to then (checked here by brute force, not by pymoo)."""
    senses = [o.sense for o in data.axes]
    names = [o.name for o in data.axes]
    for gen, front in data.fronts.items():
        pool = [p for p in data.points if p.feasible and p.generation <= gen]
        expected = {p.id for p in pool
                    if not any(_dominates([q.values[n] for n in names],
                                          [p.values[n] for n in names], senses) for q in pool)}
        assert {p.id for p in front} == expected, gen


def test_pareto_data_holds_every_evaluated_individual_and_the_fronts(toy_run):
    store, conf = _open(toy_run)
    data = plots.pareto_data(store, conf, "main")
    assert [o.name for o in data.axes] == ["accuracy", "l1"]
    notes = {}
    for ident in [f"g{g:03d}-{i:03d}" for g in range(1, 4) for i in range(8)] + ["g000-000"]:
        note = git(toy_run, "notes", "--ref", "gitevo/main", "show", f"gitevo/main/{ident}")
        notes[ident] = json.loads(note)
    assert {p.id for p in data.points} == {i for i, n in notes.items() if n["status"] == "ok"}
    for p in data.points:
        assert p.values == {k: pytest.approx(v) for k, v in notes[p.id]["objectives"].items()}
    assert sorted(data.fronts) == [0, 1, 2, 3]
    assert [p.id for p in data.fronts[0]] == ["g000-000"]
    _check_fronts(data)
    best = max(data.points, key=lambda p: p.values["accuracy"])
    assert best.id in {p.id for p in data.fronts[3]}


def test_pareto_png_colours_generations_and_marks_the_seed(toy_run, tmp_path):
    out = tmp_path / "front.png"
    assert f"wrote {out}" in cli("-C", str(toy_run), "pareto", "--out", str(out))
    image = read_png(out)
    assert image.shape == (600, 800, 3)
    assert ink_share(image) > 0.05
    plot_area = image[:, :680]  # left of the colour bar
    colors = plots.generation_colors(4)
    for gen in (1, 2, 3):  # generation 0's front is the seed alone, under its star
        assert pixels_near(plot_area, colors[gen]) > 15, f"generation {gen} is not drawn"
    assert pixels_near(plot_area, plots.SEED_COLOR) > 60
    assert pixels_near(image[:, 680:], colors[0]) > 500  # the colour bar shows generation 0


def test_infeasible_individuals_are_hollow_grey_and_never_on_a_front(toy_run, tmp_path):
    repo = copy_repo(toy_run, tmp_path / "tight")
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace('"l1 <= 10"', '"l1 <= 2.0"'))
    store, conf = _open(repo)
    data = plots.pareto_data(store, conf, "main")
    infeasible = {p.id for p in data.points if not p.feasible}
    assert infeasible == {p.id for p in data.points if p.values["l1"] > 2.0}
    assert "g000-000" in infeasible and len(infeasible) > 5  # the seed's l1 is 2.1
    assert data.fronts[0] == []
    for front in data.fronts.values():
        assert not {p.id for p in front} & infeasible
    _check_fronts(data)

    tight, loose = tmp_path / "tight.png", tmp_path / "loose.png"
    cli("-C", str(repo), "pareto", "--out", str(tight))
    cli("-C", str(toy_run), "pareto", "--out", str(loose))
    grey = [pixels_near(read_png(p)[:, :680], plots.INFEASIBLE_COLOR, 0.02)
            for p in (tight, loose)]
    assert grey[0] > grey[1] + 150, grey
    assert pixels_near(read_png(tight), plots.SEED_COLOR) > 60  # still starred


def test_x_and_y_pick_the_objectives(toy_run, tmp_path):
    store, conf = _open(toy_run)
    assert [o.name for o in plots.pick_axes(conf, "l1", None)] == ["l1", "accuracy"]
    assert [o.name for o in plots.pick_axes(conf, None, "l1")] == ["accuracy", "l1"]
    swapped = plots.pareto_data(store, conf, "main", x="l1", y="accuracy")
    default = plots.pareto_data(store, conf, "main")
    assert {g: {p.id for p in f} for g, f in swapped.fronts.items()} == \
           {g: {p.id for p in f} for g, f in default.fronts.items()}
    swapped_png, default_png = tmp_path / "swapped.png", tmp_path / "default.png"
    cli("-C", str(toy_run), "pareto", "--x", "l1", "--y", "accuracy", "--out", str(swapped_png))
    cli("-C", str(toy_run), "pareto", "--out", str(default_png))
    assert read_png(swapped_png).shape == (600, 800, 3)
    assert read_png(swapped_png).tobytes() != read_png(default_png).tobytes()


def test_one_objective_is_plotted_against_generation(toy_run, tmp_path):
    repo = copy_repo(toy_run, tmp_path / "one")
    toml = repo / "gitevo.toml"
    toml.write_text(toml.read_text().replace('l1 = "min"\n', ""))
    store, conf = _open(repo)
    data = plots.pareto_data(store, conf, "main")
    assert [o.name for o in data.axes] == ["accuracy"]
    best = [front[0].values["accuracy"] for _, front in sorted(data.fronts.items())]
    assert all(len(front) == 1 for front in data.fronts.values())
    assert best == sorted(best) and best[-1] == max(p.values["accuracy"] for p in data.points)

    out = tmp_path / "one.png"
    cli("-C", str(repo), "pareto", "--out", str(out))
    image = read_png(out)
    assert image.shape == (600, 800, 3) and ink_share(image) > 0.03
    for gen, color in enumerate(plots.generation_colors(4)[1:], 1):
        assert pixels_near(image[:, :680], color) > 15, gen
    assert pixels_near(image[:, :680], plots.SEED_COLOR) > 60


def test_progress_draws_one_panel_per_objective_and_hypervolume(toy_run, tmp_path):
    out = tmp_path / "progress.png"
    assert f"wrote {out}" in cli("-C", str(toy_run), "plot", "--out", str(out))
    image = read_png(out)
    assert image.shape == (750, 800, 3)  # 3 panels: accuracy, l1, hypervolume
    assert ink_share(image) > 0.03
    for top in (0, 250, 500):  # each panel has its line
        assert pixels_near(image[top:top + 250], plots.LINE_COLOR) > 200, top
    history = ledger.history(Store(toy_run), "main")
    assert [g.generation for g in history] == [0, 1, 2, 3]
    assert history[-1].stats["hypervolume"] > history[0].stats["hypervolume"]


def test_errors_are_one_line_with_exit_status_2(toy_run, tmp_path):
    out = cli("-C", str(toy_run), "pareto", "--x", "loss", expect=2)
    assert out.strip() == ("gitevo: error: --x: no objective 'loss' in gitevo.toml "
                           "(objectives: accuracy, l1)")
    out = cli("-C", str(toy_run), "pareto", "--x", "l1", "--y", "l1", expect=2)
    assert "pick two different objectives" in out
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for command in ("pareto", "plot"):
        out = cli("-C", str(toy_run), command, "--out", str(blocker / "x.png"), expect=2)
        assert out.startswith(f"gitevo: error: {blocker / 'x.png'}: cannot write")
        assert len(out.strip().splitlines()) == 1
    out = cli("-C", str(toy_run), "plot", "--out", str(tmp_path / "x.nope"), expect=2)
    assert "x.nope" in out and len(out.strip().splitlines()) == 1

    fresh = tmp_path / "fresh"
    cli("init", str(fresh), "--template", "toy", "--no-eval")
    for args in (["pareto"], ["plot"]):
        out = cli("-C", str(fresh), *args, expect=2)
        assert "has no finished generation yet" in out
    assert not (fresh / "front.png").exists()


def test_relative_out_is_taken_from_the_repository_given_with_C(toy_run, tmp_path):
    repo = copy_repo(toy_run, tmp_path / "copy")
    cli("-C", str(repo), "pareto", "--out", "front.svg")
    assert (repo / "front.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.torch
@pytest.mark.slow
def test_exquisitenet_run_plots(exquisite_run, tmp_path):
    """The guided ExquisiteNetV2 run: parameter counts on one axis, accuracy on the other."""
    store, conf = _open(exquisite_run)
    data = plots.pareto_data(store, conf, "main", x="params", y="accuracy")
    assert {p.generation for p in data.points} == {0, 1, 2}
    assert all(p.feasible for p in data.points)  # the template sets no constraint
    _check_fronts(data)
    front, progress = tmp_path / "front.png", tmp_path / "progress.png"
    cli("-C", str(exquisite_run), "pareto", "--x", "params", "--out", str(front))
    cli("-C", str(exquisite_run), "plot", "--out", str(progress))
    image = read_png(front)
    assert image.shape == (600, 800, 3)
    assert pixels_near(image[:, :680], plots.SEED_COLOR) > 60
    for gen, color in enumerate(plots.generation_colors(3)[1:], 1):
        assert pixels_near(image[:, :680], color) > 15, gen
    assert read_png(progress).shape == (750, 800, 3)
