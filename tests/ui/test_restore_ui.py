"""Image > Restore...: the dialog offers the restorers found, the demo restorer and the diffusion restore; a
restorer's result is staged at the picture's size and accepted as one undo step, the diffusion restore queues
an img2img of the whole picture at strength 0.25 with the panel's model and prompt (on the FakeBackend)."""

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialogButtonBox

from desktop.core import paths
from desktop.core.gallery.metadata import read_image_meta
from desktop.core.geometry import Bounds, Extent
from desktop.core.postprocess import DEMO_RESTORER_NAME, UpscaleRequest
from desktop.ui.canvas.restore_dialog import RestoreDialog
from tests.ui.test_canvas import open_photo, photo


def ask_restore(window, qtbot, choose=None) -> dict:
    """Image > Restore... with the dialog answered by `choose(dialog)`; returns what the dialog offered."""
    seen = {}

    def answer():
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, RestoreDialog)
        box = dialog.model_box
        seen["models"] = [box.itemText(i) for i in range(box.count())]
        seen["chosen"] = box.currentText()
        if choose is not None:
            choose(dialog)
        seen["summary"] = dialog.summary.text()
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    QTimer.singleShot(0, answer)
    window.restore_action.trigger()
    return seen


def choose_model(label):
    return lambda dialog: dialog.model_box.setCurrentIndex(dialog.model_box.findText(label))


def test_restore_with_the_demo_restorer_is_staged_at_its_size_and_accepted_in_one_undo_step(make_window, qtbot,
                                                                                            fake_backend):
    window = make_window()
    assert "Restore..." in [a.text() for a in window.menuBar().actions()[3].menu().actions()]
    doc = open_photo(window, photo(96, 80))
    before, layers = doc.composite().copy(), len(doc.layers)
    with qtbot.waitSignal(window.results_shown, timeout=10_000) as shown:
        seen = ask_restore(window, qtbot, lambda d: (choose_model(DEMO_RESTORER_NAME)(d),
                                                    d.kind_box.setCurrentIndex(d.kind_box.findData("denoise"))))
    assert seen["models"] == [DEMO_RESTORER_NAME, "Diffusion (the panel's model, strength 0.25)"]
    assert seen["chosen"].startswith("Diffusion"), "with no restorer file, the diffusion restore is chosen"
    request = fake_backend.jobs[-1].request
    assert isinstance(request, UpscaleRequest) and request.restore == "denoise" and request.scale == 1
    (image, _seed, path), = shown.args[0]
    assert image.shape[:2] == (80, 96) and path.name.endswith("-denoise.png")
    assert read_image_meta(path)[0].parameters == f"Postprocess restore: {DEMO_RESTORER_NAME}"
    assert "Denoise, 96x80 px" in window.generation.bar.label.text()
    assert doc.extent == Extent(96, 80) and len(doc.layers) == layers, "nothing changes before Accept"
    window.generation.accept()
    assert doc.extent == Extent(96, 80) and len(doc.layers) == layers + 1
    assert doc.active.name == "Denoise, 96x80"
    assert window.statusBar().currentMessage() == "Denoise: the result is a new layer on top (Ctrl+Z to undo)."
    window.undo_action.trigger()
    assert len(doc.layers) == layers and np.array_equal(doc.composite(), before), "one undo step"


def test_a_failed_restore_says_the_restore_failed(make_window, qtbot, fake_backend):
    window = make_window()
    doc = open_photo(window, photo(96, 80))
    fake_backend.run_error, fake_backend.fail_at_step = RuntimeError("tile exploded"), 2
    with qtbot.waitSignal(window.worker.job_failed, timeout=10_000):
        ask_restore(window, qtbot, choose_model(DEMO_RESTORER_NAME))
    assert window.error_banner.text().startswith("The restore failed (RuntimeError: tile exploded).")
    assert not window.generation.staged and doc.extent == Extent(96, 80)


def test_a_restorer_file_is_offered_first(make_window, qtbot, fake_backend):
    from desktop.engine import tiny_upscaler

    tiny_upscaler.build_restorer(paths.models_dir() / "restorers" / "1x-SCUNet.safetensors")
    tiny_upscaler.build(paths.models_dir() / "upscalers" / "4x-Tiny.safetensors")
    window = make_window()
    qtbot.waitUntil(lambda: bool(window.model_lists.restorers), timeout=10_000)  # the model scan found them
    open_photo(window, photo(64, 48))
    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        seen = ask_restore(window, qtbot)
    assert seen["models"][0] == "1x-SCUNet" and "4x-Tiny" not in seen["models"] and seen["chosen"] == "1x-SCUNet"
    assert fake_backend.jobs[-1].request.upscaler.endswith("1x-SCUNet.safetensors")


def test_the_diffusion_restore_is_a_tiled_detail_pass_of_the_whole_picture_at_low_strength(make_window, qtbot,
                                                                                          fake_backend):
    window = make_window()
    doc = open_photo(window, photo(96, 80))
    window.panel.prompt.setPlainText("an old photograph")
    with qtbot.waitSignal(window.results_shown, timeout=10_000) as shown:
        seen = ask_restore(window, qtbot)
    assert "strength 0.25" in seen["summary"]
    request = fake_backend.jobs[-1].request
    assert isinstance(request, UpscaleRequest) and request.restore == "restore" and request.upscaler == "Lanczos"
    detail = request.detail
    assert request.source == Extent(96, 80) and detail.sampling.strength == 0.25
    assert detail.conditioning.prompt == "an old photograph" and detail.sampling.batch_size == 1
    assert np.array_equal(request.image, doc.composite()[..., :3])
    (image, _seed, _path), = shown.args[0]
    assert image.shape[:2] == (80, 96)


def test_restore_of_the_frames_area_changes_only_that_area(make_window, qtbot, fake_backend):
    """With the frame inside the picture, the dialog offers its area beside the whole picture (the default); the
    frame's area is restored, staged over it and accepted as a layer there, the canvas keeping its size."""
    window = make_window()
    doc = open_photo(window, photo(160, 120))
    doc.set_frame(Bounds(16, 8, 96, 64))
    offered = {}

    def frame_area(dialog):
        offered["areas"] = [dialog.area_box.itemText(i) for i in range(dialog.area_box.count())]
        offered["default"] = dialog.area_box.currentText()
        choose_model(DEMO_RESTORER_NAME)(dialog)
        offered["whole"] = dialog.summary.text()
        dialog.area_box.setCurrentIndex(1)
        offered["area"] = dialog.summary.text()

    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        ask_restore(window, qtbot, frame_area)
    assert offered["areas"] == ["The whole picture (160 × 120 px)", "The frame's area (96 × 64 px)"]
    assert offered["default"].startswith("The whole picture")
    assert "over the whole picture" in offered["whole"] and "over the frame's area" in offered["area"]
    request = fake_backend.jobs[-1].request
    assert request.source == Extent(96, 64)
    assert np.array_equal(request.image, doc.composite(Bounds(16, 8, 96, 64)))
    layer = window.generation.accept()
    assert doc.extent == Extent(160, 120) and (layer.offset.x, layer.offset.y) == (16, 8)
    assert layer.pixels.shape[:2] == (64, 96)


def test_with_the_frame_as_large_as_the_picture_no_area_is_asked(make_window, qtbot, fake_backend):
    window = make_window()
    open_photo(window, photo(96, 80))
    offered = {}

    def look(dialog):
        offered["rows"] = dialog.area_box.count()
        choose_model(DEMO_RESTORER_NAME)(dialog)

    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        ask_restore(window, qtbot, look)
    assert offered["rows"] == 0 and fake_backend.jobs[-1].request.source == Extent(96, 80)


def test_a_restore_accepted_after_the_canvas_shrank_is_refused_not_grown_back(make_window, qtbot, fake_backend):
    """A restore keeps the canvas's size: when the canvas was cut smaller while its result waited, Accept says
    why it cannot place it instead of growing the canvas back to the old size."""
    window = make_window()
    doc = open_photo(window, photo(160, 120))
    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        ask_restore(window, qtbot, choose_model(DEMO_RESTORER_NAME))
    doc.resize_canvas(0, 0, -60, -40)
    failed = []
    window.generation.failed.connect(failed.append)
    assert window.generation.accept() is None
    assert doc.extent == Extent(100, 80) and "changed since this restore was asked for" in failed[0]
