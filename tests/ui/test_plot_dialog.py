"""Generate > X/Y/Z plot... as a person uses it: the live count and time, the sentence for a wrong value, OK queues
the plot over what Generate would send; a finished plot's grid lands in the gallery and opens as a grid whose cells
give their own parameters."""

from __future__ import annotations

import itertools
import json

import numpy as np
from PySide6.QtCore import Qt

from desktop.core.document import CanvasDocument
from desktop.core.request import Mode
from desktop.core.runs import decode_run
from desktop.core.xyz import PlotRun
from desktop.ui.plot_dialog import UNKNOWN_TIME
from tests.support.requests import make_request

TIMEOUT = 20_000


def open_dialog(window, qtbot):
    action = next(a for a in window.findChildren(type(window.generate_action)) if a.text() == "X/Y/Z plot...")
    action.trigger()
    dialog = window.plot_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=TIMEOUT)
    return dialog


def type_axis(qtbot, dialog, row, name, values):
    dialog.rows[row].type.setCurrentText(name)
    dialog.rows[row].values.clear()
    qtbot.keyClicks(dialog.rows[row].values, values)


def test_the_live_line_counts_the_pictures_and_a_wrong_value_is_a_red_sentence(make_window, qtbot):
    window = make_window()
    dialog = open_dialog(window, qtbot)
    assert not dialog.ok.isEnabled() and not dialog.problem.text()
    type_axis(qtbot, dialog, 0, "CFG Scale", "3,5,7")
    type_axis(qtbot, dialog, 1, "Steps", "4-8 (+2)")
    assert dialog.count.text() == f"9 pictures · {UNKNOWN_TIME}"
    assert dialog.ok.isEnabled() and not dialog.problem.text()
    type_axis(qtbot, dialog, 2, "Seed", "1-4")
    assert dialog.count.text().startswith("36 pictures · ")
    qtbot.keyClicks(dialog.rows[1].values, ", lots")
    assert dialog.problem.isVisible() and not dialog.ok.isEnabled()
    assert dialog.problem.text() == ("The Steps axis's value 'lots' is not a whole number or a range such as 1-5.")
    dialog.rows[1].values.setText("4-8 (+2)")
    assert dialog.ok.isEnabled() and not dialog.problem.text()
    dialog.reject()


def test_the_time_comes_from_the_speed_of_the_last_job(make_window, qtbot):
    window = make_window()
    ticks = itertools.count()
    window.jobs.clock = lambda: 0.5 * next(ticks)  # every step takes half a second
    window.panel.set_request(make_request(prompt="a kite", steps=4, width=64, height=64, seed=3))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    dialog = open_dialog(window, qtbot)
    type_axis(qtbot, dialog, 0, "CFG Scale", "3,5,7")  # 3 pictures of 4 steps at 0.5 s a step
    dialog.rows[1].type.setCurrentText("Nothing")
    assert dialog.count.text() == "3 pictures · about 6 s"
    type_axis(qtbot, dialog, 1, "Steps", "100-150 (+10)")  # 3 x (100 + 110 + ... + 150) steps: 1125 s
    assert dialog.count.text() == "18 pictures · about 19 min"
    dialog.reject()


def test_ok_queues_a_plot_over_what_generate_would_send(make_window, qtbot, monkeypatch):
    window = make_window()
    window.files.set_document(CanvasDocument.from_image(np.full((64, 64, 3), 90, np.uint8), "photo"), name="photo")
    window.panel.set_request(make_request(prompt="a quay at dawn", steps=5, width=64, height=64, seed=8,
                                          strength=0.6))
    qtbot.waitUntil(lambda: window.panel.mode is Mode.IMG2IMG, timeout=TIMEOUT)
    queued = []
    monkeypatch.setattr(window, "submit_run", queued.append)
    dialog = open_dialog(window, qtbot)
    type_axis(qtbot, dialog, 0, "Seed", "1,2")
    type_axis(qtbot, dialog, 1, "Denoising", "0.3-0.7 (+0.2)")
    assert dialog.count.text().startswith("6 pictures · ")
    qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    [plot] = queued
    assert isinstance(plot, PlotRun) and plot.z is None
    assert (plot.x.name, plot.x.values) == ("Seed", (1, 2))
    assert (plot.y.name, plot.y.values) == ("Denoising", (0.3, 0.5, 0.7))
    expected = window.generation.request(window.panel.request())
    assert plot.base.mode is Mode.IMG2IMG and np.array_equal(plot.base.images.init, expected.images.init)
    assert plot.base.replace(images=expected.images) == expected


def test_a_checkpoint_axis_takes_the_pickers_names_and_loads_their_models(make_window, qtbot, monkeypatch):
    window = make_window()
    window.panel.set_models([("/models/alpha.safetensors", "alpha", "sd1"), ("demo", "Demo model", "sd1")], "demo")
    queued = []
    monkeypatch.setattr(window, "submit_run", queued.append)
    dialog = open_dialog(window, qtbot)
    dialog.rows[1].type.setCurrentText("Nothing")
    type_axis(qtbot, dialog, 0, "Checkpoint name", "beta")
    assert dialog.problem.text() == "The Checkpoint name axis's value 'beta' is not one of the models (alpha, Demo " \
                                    "model, /models/alpha.safetensors, demo)."
    dialog.rows[0].values.clear()
    qtbot.mouseClick(dialog.rows[0].fill, Qt.MouseButton.LeftButton)  # every model the picker lists
    assert dialog.rows[0].values.text() == "alpha, Demo model"
    qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    assert queued[0].x.values == ("/models/alpha.safetensors", "demo")
    # stored in the queue and read back after a restart, it loads the same models
    assert decode_run(json.loads(json.dumps(queued[0].encode()))) == queued[0]


def test_a_finished_plot_opens_as_a_grid_and_a_cell_gives_its_parameters(make_window, qtbot):
    window = make_window()
    qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
    window.panel.set_request(make_request(prompt="a harbour", steps=3, cfg_scale=5.0, width=64, height=64, seed=21))
    dialog = open_dialog(window, qtbot)
    type_axis(qtbot, dialog, 0, "Steps", "2,3")
    type_axis(qtbot, dialog, 1, "CFG Scale", "3,7")
    type_axis(qtbot, dialog, 2, "Seed", "21,22")
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        qtbot.mouseClick(dialog.ok, Qt.MouseButton.LeftButton)
    assert len(shown.args[0]) == 9  # the grid, then its 8 cells
    gallery = window.gallery
    window.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 9, timeout=TIMEOUT)
    row = gallery.model.row_of(gallery.store.index.by_path(gallery.store.relative(shown.args[0][0][2])).id)
    gallery.select_row(row)
    qtbot.waitUntil(lambda: gallery.buttons["grid"].isEnabled(), timeout=TIMEOUT)
    qtbot.mouseClick(gallery.buttons["grid"], Qt.MouseButton.LeftButton)
    grid = gallery.plot_view.grid
    assert (grid.columns(), grid.rows()) == (2, 2) and grid.plot.missing() == 0
    assert gallery.plot_view.axes.text() == "X: Steps   ·   Y: CFG Scale"
    assert {(c.x, c.y, c.z) for c in grid.plot.cells} == set(itertools.product((0, 1), (0, 1), (0, 1)))
    qtbot.waitUntil(lambda: len(grid.thumbnails) == 8, timeout=TIMEOUT)
    z_box = gallery.plot_view.z_box
    assert z_box.isVisible() and [z_box.itemText(i) for i in range(2)] == ["Seed: 21", "Seed: 22"]
    z_box.setCurrentIndex(1)  # the second grid
    window.panel.set_request(make_request(prompt="something else", steps=9, cfg_scale=11.0))
    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.cell_rect(0, 1).center())  # Steps 2, CFG 7
    qtbot.waitUntil(lambda: gallery.buttons["use"].isEnabled(), timeout=TIMEOUT)
    qtbot.mouseClick(gallery.buttons["use"], Qt.MouseButton.LeftButton)
    settings = window.panel.settings
    qtbot.waitUntil(lambda: settings.steps == 2, timeout=TIMEOUT)
    assert (settings.cfg_scale, settings.prompt, settings.seed) == (7.0, "a harbour", 22)
