"""Image > Upscale...: the dialog, the job on the worker's queue and progress bar, the staged result, Accept and
Discard, cancel; on the FakeBackend (which resizes with Lanczos), and once end to end with the demo upscaler."""

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from desktop.core.gallery.metadata import read_image_meta
from desktop.core.geometry import Extent
from desktop.core.layers import ImageLayer, MaskLayer
from desktop.core.postprocess import DEMO_UPSCALER_NAME, UpscaleRequest
from desktop.ui.canvas.upscale_dialog import UpscaleDialog
from tests.ui.test_canvas import TIMEOUT, open_photo, photo

CTRL_ALT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier


def ask_upscale(window, qtbot, choose=None, accept=True) -> list:
    """Image > Upscale (Ctrl+Alt+U) with the dialog answered by `choose(dialog)`; returns what it said."""
    seen = []

    def answer():
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, UpscaleDialog)
        if choose is not None:
            choose(dialog)
        seen.append(dialog.summary.text())
        if accept:
            qtbot.keyClick(dialog, Qt.Key.Key_Return)
        else:
            qtbot.keyClick(dialog, Qt.Key.Key_Escape)

    window.canvas.setFocus()  # as after a click on the picture; the dialog gives the focus back to it
    QTimer.singleShot(0, answer)
    qtbot.keyClick(window.canvas, Qt.Key.Key_U, CTRL_ALT)
    window.activateWindow()  # the window manager's job when a dialog closes; offscreen there is none
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    return seen


def painted_mask(doc):
    mask = next(layer for layer in doc.layers if isinstance(layer, MaskLayer))
    mask.writable()[20:40, 30:60] = 255  # painted without the brush: masks are not composited
    return mask


def test_image_menu_upscale_dialog_says_the_result_size_for_each_scale_and_a_size(make_window, qtbot):
    window = make_window()
    open_photo(window, photo(96, 80))
    assert "Upscale..." in [a.text() for a in window.menuBar().actions()[3].menu().actions()]
    said = {}

    def choose(dialog):
        labels = [dialog.upscaler_box.itemText(i) for i in range(dialog.upscaler_box.count())]
        said["upscalers"] = labels
        for index in range(dialog.scale_box.count()):
            dialog.scale_box.setCurrentIndex(index)
            said[dialog.scale_box.currentText()] = dialog.summary.text()
        dialog.width_box.selectAll()
        qtbot.keyClicks(dialog.width_box, "300")
        said["size"] = (dialog.size_button.isChecked(), dialog.height_box.value(), dialog.summary.text())

    ask_upscale(window, qtbot, choose, accept=False)
    assert DEMO_UPSCALER_NAME in said["upscalers"], "the demo upscaler is always there"
    assert said["upscalers"][-2:] == ["Lanczos (no model)", "Nearest (no model)"]
    assert "144 × 120 px" in said["x1.5"] and "192 × 160 px" in said["x2"]
    assert "288 × 240 px" in said["x3"] and "384 × 320 px" in said["x4"]
    assert said["size"][:2] == (True, 250) and "300 × 250 px" in said["size"][2], "typing a width picks Size"
    assert not window.worker.is_busy() and not window.generation.staged, "cancelled: nothing queued"


def test_upscale_stages_the_result_and_accept_makes_the_canvas_that_size_in_one_undo_step(make_window, qtbot,
                                                                                             fake_backend):
    window = make_window()
    pixels = photo(96, 80)
    doc = open_photo(window, pixels)
    mask = painted_mask(doc)
    before, layers = doc.composite().copy(), len(doc.layers)
    steps = []
    window.worker.step.connect(lambda job, i, n, preview: steps.append((i, n, preview, window.progress.maximum())))
    formats = []
    window.worker.step.connect(lambda *_: formats.append(window.progress.format()))  # after the window's slot
    with qtbot.waitSignal(window.results_shown, timeout=10_000) as shown:
        said = ask_upscale(window, qtbot)
    assert "192 × 160 px" in said[0]
    assert [(i, n, p) for i, n, p, _ in steps] == [(1, 4, None), (2, 4, None), (3, 4, None), (4, 4, None)]
    assert window.progress.maximum() == 4 and window.progress.value() == 4, "one step per tile on the bar"
    assert [text.split(" · ")[0] for text in formats] == ["Tile 1/4", "Tile 2/4", "Tile 3/4", "Tile 4/4"]
    (image, _seed, path), = shown.args[0]
    assert image.shape[:2] == (160, 192)
    staged = window.generation.staged
    assert len(staged) == 1 and staged[0].image.shape[:2] == (160, 192)
    assert window.generation.bar.isVisible() and "Upscale x2 to 192x160 px" in window.generation.bar.label.text()
    assert doc.extent == Extent(96, 80) and len(doc.layers) == layers, "nothing changes before Accept"
    # Saved in the output folder with A1111 Extras' keys, and in the gallery's index.
    assert path is not None and path.parent.parent == window.settings.output_path() and path.name.endswith("-x2.png")
    meta, width, height = read_image_meta(path)
    assert (width, height) == (192, 160)
    assert meta.parameters == f"Postprocess upscale by: 2, Postprocess upscaler: {DEMO_UPSCALER_NAME}"
    store = window.gallery_store
    assert store.index.by_path(store.relative(path)) is not None
    assert isinstance(fake_backend.jobs[-1].request, UpscaleRequest)

    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)  # Accept
    assert doc.extent == Extent(192, 160)
    assert len(doc.layers) == layers + 1 and not window.generation.bar.isVisible()
    top = doc.active
    assert isinstance(top, ImageLayer) and top.name == "Upscaled x2" and top.bounds == doc.bounds
    assert np.array_equal(doc.composite(), image), "the upscaled picture shows"
    assert all(layer.bounds == doc.bounds for layer in doc.layers), "every layer scaled with the canvas"
    assert mask.pixels[50, 100] == 255 and mask.pixels[30, 40] == 0, "the mask still covers what it covered"
    assert window.undo_action.text() == "Undo upscale"
    assert "768" not in window.statusBar().currentMessage() and "192 × 160 px" in window.statusBar().currentMessage()
    shown_rect = window.canvas.widget_rect(doc.bounds)
    assert window.canvas.rect().contains(shown_rect), "the whole grown picture is in view"

    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert doc.extent == Extent(96, 80) and len(doc.layers) == layers
    assert np.array_equal(doc.composite(), before), "one undo puts the picture back as it was"
    assert mask.pixels.shape == (80, 96) and mask.pixels[30, 40] == 255
    qtbot.keyClick(window.canvas, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert doc.extent == Extent(192, 160) and len(doc.layers) == layers + 1


def test_discarding_an_upscale_leaves_the_canvas_as_it_was(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(96, 80))
    before, layers, undo = doc.composite().copy(), len(doc.layers), window.undo_action.text()
    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        ask_upscale(window, qtbot, lambda dialog: dialog.scale_box.setCurrentText("x1.5"))
    assert window.generation.staged[0].image.shape[:2] == (120, 144)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Delete)  # Discard
    assert not window.generation.staged and not window.generation.bar.isVisible()
    assert doc.extent == Extent(96, 80) and len(doc.layers) == layers and np.array_equal(doc.composite(), before)
    assert window.undo_action.text() == undo


def test_an_upscale_of_a_canvas_that_changed_size_since_is_not_accepted_stretched(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(96, 80))
    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        ask_upscale(window, qtbot)
    doc.resize_canvas(16, 0, 0, 0)
    layers = len(doc.layers)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    assert doc.extent == Extent(112, 80) and len(doc.layers) == layers and window.generation.staged
    assert window.error_banner.text() == ("The canvas changed size since this upscale was asked for (96 × 80 px, now "
                                          "112 × 80 px); discard it and upscale the picture again.")


def test_an_upscale_to_a_size_is_staged_at_that_size(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(96, 80))

    def choose(dialog):
        dialog.keep_ratio.setChecked(False)
        dialog.width_box.setValue(200)
        dialog.height_box.setValue(100)

    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        ask_upscale(window, qtbot, choose)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    assert doc.extent == Extent(200, 100) and doc.active.name == "Upscaled to 200x100"


def test_esc_cancels_a_running_upscale_and_the_queue_names_waiting_ones(make_window, qtbot, fake_backend):
    window = make_window()
    doc = open_photo(window, photo(96, 80))
    fake_backend.step_delay = 0.5
    with qtbot.waitSignal(window.worker.job_started, timeout=10_000):
        ask_upscale(window, qtbot)
    waiting = window.worker.submit(UpscaleRequest(doc.composite(), 3.0))
    window.jobs.submitted(waiting, window.worker.pending()[0][1], doc.bounds)
    qtbot.waitUntil(lambda: window.queue.list.count() == 1, timeout=5000)
    assert window.queue.list.item(0).text() == "Upscale x3  ·  96x80 to 288x240"
    assert window.cancel_button.isEnabled()
    window.queue.remove_requested.emit(waiting)
    with qtbot.waitSignal(window.worker.job_cancelled, timeout=5000):
        qtbot.keyClick(window.canvas, Qt.Key.Key_Escape)
    assert window.progress.format() == "Cancelled"
    assert not window.generation.staged and doc.extent == Extent(96, 80)


def test_gallery_upscale_saves_each_selected_picture_beside_it_with_its_parameters_and_postprocess_keys(
        make_window, qtbot, sfumato_home):
    from tests.ui.test_gallery import gallery_of

    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["a red door", "a blue boat"])
    canvas_before = (window.doc.extent, len(window.doc.layers))
    gallery.list.selectAll()
    sources = [gallery.store.path(record) for record in gallery.selected()]
    parameters = {path.name: read_image_meta(path)[0].parameters for path in sources}
    assert gallery.buttons["upscale"].isEnabled()
    said = {}

    def answer():
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, UpscaleDialog)
        said["size enabled"] = dialog.size_button.isEnabled()
        dialog.scale_box.setCurrentText("x3")
        said["summary"] = dialog.summary.text()
        qtbot.keyClick(dialog, Qt.Key.Key_Return)

    finished = []
    window.worker.job_finished.connect(lambda job, saved: finished.append(saved))
    QTimer.singleShot(0, answer)
    qtbot.mouseClick(gallery.buttons["upscale"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(finished) == 2, timeout=10_000)
    assert said == {"size enabled": False,
                    "summary": "The first result is 192 × 192 px, saved beside its picture with its parameters."}
    for source in sources:
        result = source.with_name(f"{source.stem}-x3.png")
        meta, width, height = read_image_meta(result)
        assert (width, height) == (192, 192)
        assert meta.parameters == (f"{parameters[source.name]}, Postprocess upscale by: 3, "
                                   f"Postprocess upscaler: {DEMO_UPSCALER_NAME}")
        assert meta.prompt in ("a red door", "a blue boat"), "the source's prompt is still read from it"
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 4, timeout=5000)
    assert not window.generation.staged and (window.doc.extent, len(window.doc.layers)) == canvas_before


def test_gallery_upscale_of_an_unreadable_picture_says_so_and_does_the_others(make_window, qtbot, sfumato_home):
    from tests.ui.test_gallery import gallery_of

    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["a red door", "a blue boat"])
    gallery.list.selectAll()
    broken, kept = [gallery.store.path(record) for record in gallery.selected()]
    broken.write_bytes(b"not a png")
    finished = []
    window.worker.job_finished.connect(lambda job, saved: finished.append(saved))
    QTimer.singleShot(0, lambda: qtbot.keyClick(QApplication.activeModalWidget(), Qt.Key.Key_Return))
    qtbot.mouseClick(gallery.buttons["upscale"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(finished) == 1, timeout=10_000)
    assert kept.with_name(f"{kept.stem}-x2.png").exists() and not broken.with_name(f"{broken.stem}-x2.png").exists()
    assert window.error_banner.isVisible()
    assert window.error_banner.text().startswith(f"{broken.name} is not a picture Sfumato can read")
    assert window.error_banner.text().endswith("It was not upscaled.")


def test_a_failed_upscale_says_the_upscale_failed_and_the_canvas_is_unchanged(make_window, qtbot, fake_backend):
    window = make_window()
    doc = open_photo(window, photo(96, 80))
    fake_backend.run_error, fake_backend.fail_at_step = RuntimeError("tile exploded"), 2
    with qtbot.waitSignal(window.worker.job_failed, timeout=10_000):
        ask_upscale(window, qtbot)
    assert window.error_banner.text() == ("The upscale failed (RuntimeError: tile exploded). The app keeps working; "
                                          "try again or another model.")
    assert window.progress.format() == "Failed" and not window.generation.staged and doc.extent == Extent(96, 80)


@pytest.mark.engine
def test_upscale_on_the_engine_with_the_demo_upscaler(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(64, 48))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        ask_upscale(window, qtbot)
    (image, _seed, path), = shown.args[0]
    assert image.shape[:2] == (96, 128)
    meta, _, _ = read_image_meta(path)
    assert f"Postprocess upscaler: {DEMO_UPSCALER_NAME}" in meta.parameters
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    assert doc.extent == Extent(128, 96) and doc.active.bounds == doc.bounds


@pytest.mark.engine
def test_add_detail_uses_the_panels_model_prompt_and_seed_at_the_chosen_strength(make_window, qtbot):
    from tests.support.requests import make_request

    window = make_window()
    doc = open_photo(window, photo(64, 48))
    window.panel.set_request(make_request(model=window.panel.request().model, prompt="a red boat",
                                          negative_prompt="fog", steps=4, seed=21,
                                          sampler="Euler a", schedule="Automatic", width=64, height=48))
    steps = []
    window.worker.step.connect(lambda job, i, n, preview: steps.append((i, n, preview)))

    def choose(dialog):
        assert dialog.detail_box.isVisible() and not dialog.detail_box.isChecked()
        assert not dialog.strength_box.isEnabled() and dialog.strength_box.value() == 0.35
        dialog.detail_box.setChecked(True)
        dialog.strength_box.setValue(0.5)

    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        said = ask_upscale(window, qtbot, choose)
    assert "Then 2 steps of Euler a at denoising strength 0.5 add detail" in said[0]
    (image, _seed, path), = shown.args[0]
    assert image.shape[:2] == (96, 128)
    assert any(p is not None for _, _, p in steps), "the detail pass shows the whole picture as it goes"
    meta, _, _ = read_image_meta(path)
    assert meta.parameters.startswith("a red boat\nNegative prompt: fog\nSteps: 4, Sampler: Euler a")
    assert "Seed: 21" in meta.parameters and "Denoising strength: 0.5" in meta.parameters
    assert meta.parameters.endswith(f"Postprocess upscale by: 2, Postprocess upscaler: {DEMO_UPSCALER_NAME}")
    assert "with detail" in window.generation.bar.label.text()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    assert doc.extent == Extent(128, 96)
