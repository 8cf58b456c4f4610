"""Image > Restore... > Fix faces: the dialog shows the face restorers (the files found, the demo one, None), a
visibility, the face detailer with its strength and, when the canvas has a mask, "Only the masked faces"; the
queued request is a face fix of the visible picture (the canvas's mask as the faces when asked), staged like
other restores (on the FakeBackend)."""

import numpy as np
from PySide6.QtWidgets import QDialogButtonBox

from desktop.core import paths
from desktop.core.faces import DEMO_FACE_RESTORER, DEMO_FACE_RESTORER_NAME
from desktop.core.geometry import Extent
from desktop.core.postprocess import UpscaleRequest
from desktop.ui.canvas.restore_dialog import RestoreDialog
from tests.ui.test_canvas import open_photo, photo
from tests.ui.test_restore_ui import ask_restore


def fix_faces(dialog):
    dialog.kind_box.setCurrentIndex(dialog.kind_box.findData("face"))


def test_fix_faces_queues_a_face_fix_with_the_panels_model_for_the_detailer(make_window, qtbot, fake_backend):
    window = make_window()
    doc = open_photo(window, photo(96, 80))
    window.panel.prompt.setPlainText("a portrait")
    seen = {}

    def choose(dialog):
        fix_faces(dialog)
        seen["restorers"] = [dialog.face_box.itemText(i) for i in range(dialog.face_box.count())]
        seen["chosen"] = dialog.face_box.currentText()
        seen["rows"] = {name: dialog.form.isRowVisible(widget) for name, widget in
                        (("model", dialog.model_box), ("face", dialog.face_box), ("masked", dialog.masked_box))}
        seen["detailer"] = dialog.detailer_box.isChecked()
        dialog.face_box.setCurrentIndex(dialog.face_box.findData(DEMO_FACE_RESTORER))
        dialog.visibility.setValue(0.7)
        dialog.detailer_strength.setValue(0.3)

    with qtbot.waitSignal(window.results_shown, timeout=10_000) as shown:
        answered = ask_restore(window, qtbot, choose)
    assert seen["restorers"] == [DEMO_FACE_RESTORER_NAME, "None"]
    assert seen["chosen"] == "None" and seen["detailer"], "with no face restorer file, the face detailer alone"
    assert seen["rows"] == {"model": False, "face": True, "masked": False}, "no mask on the canvas: no mask option"
    assert "restores each with the face restorer and repaints it" in answered["summary"]
    request = fake_backend.jobs[-1].request
    assert isinstance(request, UpscaleRequest) and request.restore == "face" and request.scale == 1
    faces = request.faces
    assert faces.restorer == DEMO_FACE_RESTORER and faces.visibility == 0.7 and faces.mask is None
    assert faces.detailer.sampling.strength == 0.3 and faces.detailer.conditioning.prompt == "a portrait"
    assert faces.detailer.model == window.panel.request().model
    assert np.array_equal(request.image, doc.composite())
    (image, _seed, path), = shown.args[0]
    assert image.shape[:2] == (80, 96) and path.name.endswith("-face.png")
    assert "Fix faces, 96x80 px" in window.generation.bar.label.text()
    window.generation.accept()
    assert doc.extent == Extent(96, 80) and doc.active.name == "Fix faces, 96x80"


def test_only_the_masked_faces_sends_the_canvas_mask(make_window, qtbot, fake_backend):
    window = make_window()
    doc = open_photo(window, photo(96, 80))
    doc.target_mask().pixels[10:30, 20:50] = 255
    seen = {}

    def choose(dialog):
        fix_faces(dialog)
        seen["masked"] = dialog.form.isRowVisible(dialog.masked_box) and dialog.masked_box.isChecked()
        dialog.face_box.setCurrentIndex(dialog.face_box.findData(DEMO_FACE_RESTORER))
        dialog.detailer_box.setChecked(False)

    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        answered = ask_restore(window, qtbot, choose)
    assert seen["masked"] and "the masked parts of the canvas" in answered["summary"]
    faces = fake_backend.jobs[-1].request.faces
    assert faces.detailer is None and faces.mask.dtype == np.bool_ and faces.mask.shape == (80, 96)
    assert faces.mask.sum() == 20 * 30 and faces.mask[10:30, 20:50].all()


def test_a_face_restorer_file_is_chosen_first_and_nothing_chosen_cannot_be_run(qtbot, tmp_path):
    dialog = RestoreDialog(Extent(64, 64), [], face_restorers=[("/m/GFPGANv1.4.pth", "GFPGANv1.4")])
    qtbot.addWidget(dialog)
    fix_faces(dialog)
    assert dialog.face_box.currentText() == "GFPGANv1.4" and not dialog.detailer_box.isChecked()
    assert dialog.faces().restorer == "/m/GFPGANv1.4.pth" and dialog.faces().detailer is None
    dialog.face_box.setCurrentIndex(dialog.face_box.findData(""))
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert not ok.isEnabled() and dialog.summary.text() == "Choose a face restorer, the face detailer, or both."
    assert not dialog.visibility.isEnabled()
    dialog.detailer_box.setChecked(True)
    assert ok.isEnabled()
    dialog.kind_box.setCurrentIndex(dialog.kind_box.findData("denoise"))
    assert dialog.faces() is None and dialog.form.isRowVisible(dialog.model_box)


def test_the_gallery_restore_offers_fix_faces_with_advice_it_can_follow(qtbot):
    dialog = RestoreDialog(Extent(64, 64), [], face_restorers=[], pictures=2)
    qtbot.addWidget(dialog)
    fix_faces(dialog)
    assert dialog.kind() == "face" and not dialog.form.isRowVisible(dialog.masked_box), "no canvas mask here"
    summary = dialog.summary.text()
    assert "for faces it misses, open the picture on the canvas and paint a mask over them" in summary
    assert "none found: paint a mask" not in summary
    canvas = RestoreDialog(Extent(64, 64), [], face_restorers=[])
    qtbot.addWidget(canvas)
    fix_faces(canvas)
    assert "none found: paint a mask over them" in canvas.summary.text()


def test_face_restorer_files_of_the_model_scan_are_offered(make_window, qtbot, fake_backend):
    from desktop.engine import tiny_upscaler

    tiny_upscaler.build_face_restorer(paths.models_dir() / "restorers" / "RestoreFormer-tiny.safetensors")
    window = make_window()
    qtbot.waitUntil(lambda: bool(window.model_lists.faces), timeout=10_000)
    open_photo(window, photo(64, 48))
    seen = {}

    def choose(dialog):
        fix_faces(dialog)
        seen["restorers"] = [dialog.face_box.itemText(i) for i in range(dialog.face_box.count())]
        seen["models"] = [dialog.model_box.itemText(i) for i in range(dialog.model_box.count())]

    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        ask_restore(window, qtbot, choose)
    assert seen["restorers"] == ["RestoreFormer-tiny", DEMO_FACE_RESTORER_NAME, "None"]
    assert "RestoreFormer-tiny" not in seen["models"], "a face restorer is not offered as a restorer"
    assert fake_backend.jobs[-1].request.faces.restorer.endswith("RestoreFormer-tiny.safetensors")


def test_choosing_fix_faces_in_the_open_dialog_makes_room_for_its_rows(qtbot):
    dialog = RestoreDialog(Extent(64, 64), [], face_restorers=[], has_mask=True)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    fix_faces(dialog)
    for widget in (dialog.face_box, dialog.visibility, dialog.detailer_strength, dialog.masked_box):
        assert widget.height() >= widget.sizeHint().height(), "no squeezed rows (seen at 1366x768)"
