"""The gallery's grid view of an X/Y/Z plot and its side-by-side compare, as a person uses them: a plot's grid
picture opens as a grid of clickable cells, a cell shows its own picture and Use all parameters puts that cell's
values in the panel, a missing cell is shown as missing; Compare parameters puts the selected pictures in a row with
exactly the parameters that differ highlighted."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt

from desktop.core.gallery.plots import PLOT_KEY
from desktop.core.gallery.store import GalleryStore
from desktop.core.imageio import save_png
from desktop.ui.gallery import view
from tests.support.requests import make_request
from tests.ui.test_gallery import open_gallery

TIMEOUT = 20_000
STEPS, CFGS = (4, 8), (3.0, 7.0)


def seed_plot(home: Path, missing: tuple[int, int] | None = None) -> dict[tuple[int, int], int]:
    """A 2x2 plot (Steps 4, 8 x CFG scale 3, 7) in the gallery, as a plot saves it: its cells in the day folder,
    its grid in grids/ with the plot chunk; the cell at `missing` is deleted afterwards. Returns the cells' seeds."""
    store = GalleryStore(home / "outputs", home / "cache" / "thumbnails")
    cells, seeds = [], {}
    for y, cfg in enumerate(CFGS):
        for x, steps in enumerate(STEPS):
            seed = 700 + 10 * y + x
            picture = np.full((64, 64, 3), (60 * x + 40, 60 * y + 40, 90), np.uint8)
            request = make_request(prompt="a lighthouse at dusk", seed=seed, steps=steps, cfg_scale=cfg, width=64,
                                   height=64, sampler="DDIM", schedule="Automatic").resolved()
            path = store.add_result(picture, request, seed, "painter")
            cells.append({"file": Path("..", path.relative_to(store.folder)).as_posix(), "x": x, "y": y, "z": 0,
                          "seed": seed})
            seeds[(x, y)] = seed
            if (x, y) == missing:
                path.unlink()
    plot = {"x": {"name": "Steps", "labels": [str(s) for s in STEPS]},
            "y": {"name": "CFG scale", "labels": [f"{c:g}" for c in CFGS]}, "z": None, "cells": cells}
    grid = save_png(store.folder / "grids" / "plot-0001.png", np.full((140, 140, 3), 200, np.uint8),
                    {"parameters": "a lighthouse at dusk\nSteps: 4, Seed: 700", PLOT_KEY: json.dumps(plot)})
    store.index_files([grid])
    store.close()
    return seeds


def row_of_grid(gallery) -> int:
    return next(row for row in range(gallery.model.rowCount()) if "grids/" in gallery.model.record(row).path)


def open_grid_view(make_window, qtbot, home, missing=None, double_click=False):
    seeds = seed_plot(home, missing)
    window, gallery = open_gallery(make_window, qtbot)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 5 - (missing is not None), timeout=TIMEOUT)
    row = row_of_grid(gallery)
    gallery.select_row(row)
    qtbot.waitUntil(lambda: gallery.buttons["grid"].isEnabled(), timeout=TIMEOUT)
    if double_click:  # a plot's tile opens its grid, not the canvas
        at = gallery.list.visualRect(gallery.model.index(row)).center()
        qtbot.mouseClick(gallery.list.viewport(), Qt.MouseButton.LeftButton, pos=at)  # as with a real mouse
        qtbot.mouseDClick(gallery.list.viewport(), Qt.MouseButton.LeftButton, pos=at)
    else:
        qtbot.mouseClick(gallery.buttons["grid"], Qt.MouseButton.LeftButton)
    assert window.tabs.currentIndex() == 1
    assert gallery.plot_open()
    return window, gallery, seeds


def click_cell(qtbot, gallery, x, y):
    grid = gallery.plot_view.grid
    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.cell_rect(x, y).center())


def test_a_plot_opens_as_a_grid_and_a_cells_use_parameters_fills_the_panel(make_window, qtbot, sfumato_home):
    window, gallery, seeds = open_grid_view(make_window, qtbot, sfumato_home)
    grid = gallery.plot_view.grid
    assert (grid.columns(), grid.rows()) == (2, 2)
    assert grid.plot.x.labels == ("4", "8") and grid.plot.y.labels == ("3", "7")
    assert gallery.plot_view.axes.text() == "X: Steps   ·   Y: CFG scale"
    assert gallery.plot_view.caption.text().startswith("plot-0001.png: 4 pictures.")
    assert {(c.x, c.y): c.seed for c in grid.plot.cells if c.present} == seeds
    qtbot.waitUntil(lambda: len(grid.thumbnails) == 4, timeout=TIMEOUT)  # every cell's picture, drawn
    # no cell chosen yet: the details are the grid picture's, and Use all parameters gives its (the first cell's)
    assert gallery.info.text().startswith("140 x 140") and "grids/plot-0001.png" in gallery.info.text()
    assert gallery.buttons["use"].isEnabled()
    qtbot.mouseClick(gallery.buttons["use"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.panel.settings.seed == 700, timeout=TIMEOUT)
    assert window.panel.settings.steps == 4

    click_cell(qtbot, gallery, 1, 1)  # Steps 8, CFG 7
    assert gallery.current().seed == seeds[(1, 1)]
    assert gallery.info.text().startswith("64 x 64")
    qtbot.waitUntil(lambda: gallery.buttons["use"].isEnabled(), timeout=TIMEOUT)
    qtbot.mouseClick(gallery.buttons["use"], Qt.MouseButton.LeftButton)
    settings = window.panel.settings
    qtbot.waitUntil(lambda: settings.steps == 8, timeout=TIMEOUT)
    assert (settings.steps, settings.cfg_scale, settings.seed) == (8, 7.0, seeds[(1, 1)])

    click_cell(qtbot, gallery, 0, 1)  # another cell: Steps 4, CFG 7
    qtbot.mouseClick(gallery.buttons["use"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: settings.steps == 4, timeout=TIMEOUT)
    assert (settings.cfg_scale, settings.seed) == (7.0, seeds[(0, 1)])

    qtbot.keyClick(grid, Qt.Key.Key_Escape)  # back to the thumbnails, the grid picture shown again
    assert not gallery.plot_open() and "grids/" in gallery.current().path


def test_a_missing_cell_is_shown_missing_not_a_crash(make_window, qtbot, sfumato_home):
    window, gallery, _ = open_grid_view(make_window, qtbot, sfumato_home, missing=(1, 0), double_click=True)
    grid = gallery.plot_view.grid
    assert (grid.columns(), grid.rows()) == (2, 2)
    assert gallery.plot_view.caption.text().startswith("plot-0001.png: 4 pictures, 1 missing.")
    qtbot.waitUntil(lambda: len(grid.thumbnails) == 3, timeout=TIMEOUT)
    click_cell(qtbot, gallery, 1, 0)
    assert gallery.current() is None and gallery.info.text().startswith("Missing: ")
    assert gallery.parameters.placeholderText() == \
        "This cell's picture is missing: it was moved or deleted outside Sfumato."  # a grid is saved after every cell
    assert not gallery.buttons["use"].isEnabled() and not window.error_banner.isVisible()
    click_cell(qtbot, gallery, 0, 0)  # the others still open
    qtbot.waitUntil(lambda: gallery.buttons["use"].isEnabled(), timeout=TIMEOUT)


def test_a_double_click_on_a_plot_tile_opens_its_grid_while_the_grid_picture_is_still_decoding(
        make_window, qtbot, sfumato_home, monkeypatch):
    """A large grid picture (a 3x3 plot of 1024-pixel cells is ~10 megapixels) takes a while to decode: a
    double-click on its tile, not shown before, arrives before the picture is read."""
    seed_plot(sfumato_home)
    slow = view.read_picture
    monkeypatch.setattr(view, "read_picture", lambda path: (time.sleep(0.5), slow(path))[1])
    window, gallery = open_gallery(make_window, qtbot)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 5, timeout=TIMEOUT)
    row = row_of_grid(gallery)
    gallery.select_row(0 if row != 0 else 1)
    qtbot.waitUntil(lambda: not gallery.picture.image.isNull(), timeout=TIMEOUT)
    at = gallery.list.visualRect(gallery.model.index(row)).center()
    qtbot.mouseClick(gallery.list.viewport(), Qt.MouseButton.LeftButton, pos=at)
    qtbot.wait(150)  # a person's double-click
    qtbot.mouseDClick(gallery.list.viewport(), Qt.MouseButton.LeftButton, pos=at)
    assert window.tabs.currentIndex() == 1, "the grid picture was sent to the canvas"
    assert gallery.plot_open() and gallery.plot_view.grid.columns() == 2
    qtbot.waitUntil(lambda: not gallery.picture.image.isNull(), timeout=TIMEOUT)  # the decode ends: still the grid
    assert gallery.plot_open() and window.tabs.currentIndex() == 1


def test_a_cell_outside_the_gallery_folder_and_a_place_without_a_cell_are_said_apart(make_window, qtbot,
                                                                                       sfumato_home, tmp_path):
    store = GalleryStore(sfumato_home / "outputs", sfumato_home / "cache" / "thumbnails")
    inside = store.add_result(np.full((64, 64, 3), 90, np.uint8), make_request(prompt="a kite", seed=5).resolved(), 5,
                              "painter")
    outside = save_png(tmp_path / "elsewhere" / "cell.png", np.zeros((64, 64, 3), np.uint8))
    cells = [{"file": Path("..", inside.relative_to(store.folder)).as_posix(), "x": 0},
             {"file": Path(os.path.relpath(outside, store.folder / "grids")).as_posix(), "x": 1}]
    plot = {"x": {"name": "Seed", "labels": ["5", "6", "7"]}, "cells": cells}
    grid = save_png(store.folder / "grids" / "plot-0002.png", np.full((64, 192, 3), 200, np.uint8),
                    {"parameters": "a kite\nSteps: 4, Seed: 5", PLOT_KEY: json.dumps(plot)})
    store.index_files([grid])
    store.close()
    window, gallery = open_gallery(make_window, qtbot)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 2, timeout=TIMEOUT)
    gallery.select_row(row_of_grid(gallery))
    qtbot.waitUntil(lambda: gallery.buttons["grid"].isEnabled(), timeout=TIMEOUT)
    qtbot.mouseClick(gallery.buttons["grid"], Qt.MouseButton.LeftButton)
    click_cell(qtbot, gallery, 1, 0)
    assert gallery.info.text() == "Not opened: cell.png"
    assert gallery.parameters.placeholderText() == (
        f"This cell's picture is outside the gallery's folder ({store.folder}), so the gallery does not open it: keep "
        "a plot's grid picture and its cells' pictures in the output folder.")
    click_cell(qtbot, gallery, 2, 0)
    assert gallery.parameters.placeholderText() == "The plot has no picture for this cell."
    click_cell(qtbot, gallery, 0, 0)
    qtbot.waitUntil(lambda: gallery.buttons["use"].isEnabled(), timeout=TIMEOUT)


def test_compare_parameters_highlights_exactly_what_differs(make_window, qtbot, sfumato_home):
    store = GalleryStore(sfumato_home / "outputs", sfumato_home / "cache" / "thumbnails")
    picture = np.full((64, 64, 3), 90, np.uint8)
    for seed, cfg in ((11, 5.0), (12, 5.0), (13, 6.5)):
        request = make_request(prompt="a red kite", seed=seed, steps=9, cfg_scale=cfg, width=64, height=64,
                               sampler="DDIM", schedule="Automatic").resolved()
        store.add_result(picture, request, seed, "painter")
    store.close()
    window, gallery = open_gallery(make_window, qtbot)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 3, timeout=TIMEOUT)
    gallery.select_row(0)
    qtbot.waitUntil(lambda: not gallery.picture.image.isNull(), timeout=TIMEOUT)
    assert not gallery.buttons["compare_params"].isEnabled() and not gallery.buttons["grid"].isEnabled()
    gallery.list.selectAll()
    assert gallery.buttons["compare_params"].isEnabled()
    qtbot.mouseClick(gallery.buttons["compare_params"], Qt.MouseButton.LeftButton)
    view = gallery.side_by_side
    assert gallery.pages.currentWidget() is view and len(view.columns) == 3
    for column in view.columns:
        assert column.highlighted == ["CFG scale", "Seed"]  # in the order the parameters text has them
        assert dict(column.rows)["Steps"] == "9"
    assert view.caption.text() == "Highlighted: the 2 parameters that differ (CFG scale, Seed)."
    qtbot.waitUntil(lambda: all(not c.picture.image.isNull() for c in view.columns), timeout=TIMEOUT)
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert gallery.pages.currentIndex() == 0

    # two pictures that differ in one parameter: said in the singular
    rows = [row for row in range(3) if gallery.model.record(row).seed in (11, 12)]
    gallery.select_row(rows[0])
    qtbot.mouseClick(gallery.list.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                     gallery.list.visualRect(gallery.model.index(rows[1])).center())
    qtbot.mouseClick(gallery.buttons["compare_params"], Qt.MouseButton.LeftButton)
    assert len(view.columns) == 2
    assert view.caption.text() == "Highlighted: the 1 parameter that differs (Seed)."
