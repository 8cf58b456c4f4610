"""The gallery's Recreate on the real engine: a picture made again says it is identical in the status line; one
whose stored parameters no longer match shows the original against the recreated picture, with the figures and
the difference picture; neither adds a picture to the gallery."""

import json

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from desktop.core.imageio import load_image, replace_png
from desktop.core.outputs import metadata_chunks
from desktop.core.recreate import IDENTICAL
from desktop.core.request import GenerationRequest
from desktop.ui.qimage import from_qimage
from tests.support.requests import change, make_request

TIMEOUT = 60_000


@pytest.mark.engine
def test_recreate_says_identical_then_shows_what_differs(make_window, qtbot):
    window = make_window()
    window.panel.set_request(make_request(prompt="a red kite", steps=3, width=64, height=64, seed=5,
                                          sampler="Euler a", schedule="Automatic"))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        window.generate()
    (_image, _seed, path), = shown.args[0]
    gallery = window.gallery
    window.tabs.setCurrentWidget(gallery)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=TIMEOUT)
    gallery.select_row(0)
    button = gallery.buttons["recreate"]
    assert button.isEnabled() and button.text() == "Recreate"

    with qtbot.waitSignal(window.worker.job_finished, timeout=TIMEOUT) as finished:
        button.click()
    assert finished.args[1] == [], "a check: no new picture"
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == IDENTICAL, timeout=5000)
    assert not gallery.comparing()

    record = GenerationRequest.from_dict(json.loads(Image.open(path).text["sfumato"])["request"])
    original = load_image(path, keep_alpha=False)
    replace_png(path, original, metadata_chunks(change(record, cfg_scale=12.0), 5, "tiny-sd1"))
    with qtbot.waitSignal(window.worker.job_finished, timeout=TIMEOUT):
        button.click()
    qtbot.waitUntil(gallery.comparing, timeout=5000)
    caption = gallery.compare_caption.text()
    assert "not identical" in caption and "of the pixels differ" in caption and "CPU and GPU" in caption
    assert gallery.compare_view.labels == ("Original", "Recreated")
    assert gallery.diff_button.isVisible()
    qtbot.mouseClick(gallery.diff_button, Qt.MouseButton.LeftButton)
    assert gallery.compare_view.labels == ("Original", "Difference")
    assert gallery.diff_button.text() == "Show the recreated picture"
    diff = from_qimage(gallery.compare_view.after, alpha=False)
    assert diff.shape == (64, 64, 3) and diff.max() == 255, "the largest difference is white"
    assert (diff[..., 0] == diff[..., 2]).all(), "grey: black where equal"
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith(f"Recreated {path.name}: not identical"),
                    timeout=5000)
    gallery.close_compare()
    assert not gallery.diff_button.isVisible() and gallery.model.rowCount() == 1, "nothing added to the gallery"
