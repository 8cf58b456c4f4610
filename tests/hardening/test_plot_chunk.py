"""A grid picture's plot chunk comes from a file anyone can write: reading it never raises, and a cell can never
point the gallery at a file outside its folder."""

from __future__ import annotations

import json

import numpy as np

from desktop.core.gallery.plots import MAX_TEXT, PLOT_KEY, parse_plot, read_plot
from desktop.core.imageio import save_png

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
