"""A grid picture's plot chunk comes from a file anyone can write: reading it never raises, a cell can never
point the gallery at a file outside its folder, and no chunk can freeze the grid view."""

from __future__ import annotations

import json
import time

import numpy as np
from PySide6.QtCore import QPoint
from PySide6.QtGui import QPixmap

from desktop.core.gallery.plots import MAX_TEXT, PLOT_KEY, parse_plot, read_plot
from desktop.core.imageio import save_png
from desktop.core.xyz import MAX_CELLS
from desktop.ui.gallery.plot_view import PlotGrid, PlotView

AXES = {"x": {"name": "Steps", "labels": ["4", "8"]}}


def plot_text(*cells) -> str:
    return json.dumps({**AXES, "cells": list(cells)})


def test_cells_outside_the_gallery_folder_are_missing(tmp_path):
    root = tmp_path / "outputs"
    (root / "day").mkdir(parents=True)
    save_png(root / "day" / "in.png", np.zeros((8, 8, 3), np.uint8))
    save_png(tmp_path / "secret.png", np.zeros((8, 8, 3), np.uint8))
    plot = parse_plot(plot_text({"file": "../day/in.png", "x": 0}, {"file": "../../secret.png", "x": 1}),
                      root / "grids", root)
    assert [(c.x, c.present) for c in plot.cells] == [(0, True), (1, False)]


def test_what_is_not_a_plot_gives_none_and_bad_cells_are_left_out(tmp_path):
    for text in ("", "not json", "[1, 2]", "{}", json.dumps({"cells": []}), "[" * 100_000,
                 json.dumps({**AXES, "cells": "many"}), " " * (MAX_TEXT + 1)):
        assert parse_plot(text, tmp_path, tmp_path) is None, text[:40]
    plot = parse_plot(plot_text({"file": "a.png", "x": 5}, {"file": "b.png", "x": True}, {"file": 3, "x": 0},
                                {"x": 0}, "cell", {"file": "nul\0.png", "x": 0}, {"file": "c.png", "x": "8"},
                                {"file": "d.png", "x": 0, "seed": "1"}), tmp_path, tmp_path)
    assert [(c.path.name, c.x, c.seed) for c in plot.cells] == [("c.png", 1, None), ("d.png", 0, None)]
    assert plot.missing() == 2


def test_a_picture_file_without_the_chunk_or_not_a_png_is_no_plot(tmp_path):
    plain = save_png(tmp_path / "plain.png", np.zeros((8, 8, 3), np.uint8), {"parameters": "a cat"})
    assert read_plot(plain) is None
    (tmp_path / "text.png").write_text("hello")
    assert read_plot(tmp_path / "text.png") is None
    assert read_plot(tmp_path / "gone.png") is None
    grid = save_png(tmp_path / "grid.png", np.zeros((8, 8, 3), np.uint8), {PLOT_KEY: plot_text({"file": "x.png"})})
    assert read_plot(grid).x.labels == ("4", "8")


def grid_text(columns: int, rows: int, cells: int | None = None) -> str:
    count = columns * rows if cells is None else cells
    return json.dumps({"x": {"name": "Seed", "labels": [str(i) for i in range(columns)]},
                       "y": {"name": "Steps", "labels": [str(i) for i in range(rows)]},
                       "cells": [{"file": f"c{i}.png", "x": i % columns, "y": i // columns % rows} for i in range(count)]})


def test_a_chunk_with_more_places_than_a_plot_makes_pictures_is_not_a_plot(tmp_path):
    """A crafted chunk of 1000 x 1000 labels would have the grid view draw a million cells, the window frozen."""
    started = time.perf_counter()
    assert parse_plot(grid_text(1000, 1000, cells=10_000), tmp_path, tmp_path) is None
    assert time.perf_counter() - started < 2
    assert parse_plot(grid_text(MAX_CELLS + 1, 1), tmp_path, tmp_path) is None
    assert parse_plot(grid_text(21, 20), tmp_path, tmp_path) is None
    plot = parse_plot(grid_text(20, 20), tmp_path, tmp_path)  # the largest plot Sfumato makes
    assert len(plot.cells) == MAX_CELLS and plot.cell(19, 19, 0).path.name == "c399.png"


def test_the_grid_view_paints_only_the_cells_it_shows(qtbot, tmp_path, monkeypatch):
    view = PlotView()
    qtbot.addWidget(view)
    view.resize(640, 420)
    view.set_plot("grid.png", parse_plot(grid_text(20, 20), tmp_path, tmp_path))
    view.show()
    qtbot.waitExposed(view)
    painted = []
    paint = PlotGrid._paint_cell
    monkeypatch.setattr(PlotGrid, "_paint_cell", lambda grid, *args: (painted.append(args[1:]), paint(grid, *args)))
    shown = view.grid.visibleRegion()  # what the scroll area shows of the grid: what the window paints
    assert shown.boundingRect().width() < view.grid.width()
    started = time.perf_counter()
    view.grid.render(QPixmap(view.grid.size()), QPoint(), shown)
    assert time.perf_counter() - started < 1
    assert (0, 0) in painted and 0 < len(painted) < 100  # a corner of the 20 x 20 grid, not all 400 cells
