"""An X/Y/Z plot (desktop/core/xyz.py) queued in the window: one bar over its cells, every cell and the grid saved
into the gallery, the grid first among the pictures shown."""

from __future__ import annotations

import json

from PIL import Image

from desktop.core import credentials
from desktop.core.xyz import PLOT_KEY, PlotRun, parse_axis
from tests.support.requests import make_request

TIMEOUT = 60_000  # a busy machine (others run tests beside it) can take a while


def test_a_plot_in_the_window_saves_its_cells_and_grid_into_the_gallery(make_window, fake_backend, qtbot):
    window = make_window()
    qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
    bar, said = [], []
    window.worker.step.connect(lambda job, i, n, preview: bar.append((i, n)))
    window.worker.status.connect(said.append)
    plot = PlotRun(make_request(model="demo", prompt="a quay", width=64, height=64, steps=2, seed=4),
                   parse_axis("Steps", "2,3"), parse_axis("CFG Scale", "3,7"))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        window.submit_run(plot)
    saved = shown.args[0]
    assert len(saved) == 5 and saved[0][1] == -1
    grid = saved[0][2]
    assert grid.parent == window.settings.output_path() / "grids"
    files = [grid.parent / cell["file"] for cell in json.loads(Image.open(grid).text[PLOT_KEY])["cells"]]
    assert [path.resolve() for path in files] == [path.resolve() for _, _, path in saved[1:]]
    assert bar[-1] == (10, 10) and [i for i, _ in bar] == list(range(1, 11))
    qtbot.waitUntil(lambda: window.gallery.model.rowCount() == 5, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: any(text.startswith("Plot done in ") for text in said), timeout=TIMEOUT)
    assert {credentials.read(path).state for _, _, path in saved} == {credentials.UNTRUSTED}  # grid and cells signed
