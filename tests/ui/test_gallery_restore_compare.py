"""The gallery's Restore... (a restorer model on each selected picture, the result saved beside it) and Compare
(two pictures split by a divider to drag: two selected, or a result and its source), on the FakeBackend."""

import numpy as np
from PIL import Image
from PySide6.QtCore import QItemSelectionModel, QPoint, Qt, QTimer
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QLabel

from desktop.core.gallery.metadata import read_image_meta
from desktop.core.postprocess import DEMO_RESTORER_NAME, UpscaleRequest
from desktop.ui.canvas.restore_dialog import RestoreDialog
from desktop.ui.compare_view import CompareView
from tests.support.requests import make_request
from tests.ui.test_gallery import gallery_of

RED, BLUE = (220, 30, 30), (30, 40, 220)


def answer_restore(qtbot, model_label: str, kind: str) -> dict:
    """Answer the next Restore dialog with `model_label` and `kind`; returns what it offered."""
    seen = {}

    def answer():
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, RestoreDialog)
        seen["models"] = [dialog.model_box.itemText(i) for i in range(dialog.model_box.count())]
        dialog.model_box.setCurrentIndex(dialog.model_box.findText(model_label))
        dialog.kind_box.setCurrentIndex(dialog.kind_box.findData(kind))
        seen["heading"] = dialog.findChildren(QLabel)[0].text()
        seen["summary"] = dialog.summary.text()
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    QTimer.singleShot(0, answer)
    return seen


def select_rows(gallery, rows: list[int]) -> None:
    selection = gallery.list.selectionModel()
    selection.clearSelection()
    if not rows:
        selection.setCurrentIndex(gallery.model.index(-1), QItemSelectionModel.SelectionFlag.Clear)
    for row in rows:
        selection.setCurrentIndex(gallery.model.index(row), QItemSelectionModel.SelectionFlag.Select)


def colour_at(widget, x: float, y: float) -> tuple[int, int, int]:
    colour = widget.grab().toImage().pixelColor(QPoint(round(x), round(y)))
    return colour.red(), colour.green(), colour.blue()


def near(colour, expected, tolerance=6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected))


def filled(rgb, width=64, height=64) -> QImage:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(*rgb))
    return image


def test_gallery_restore_queues_one_restore_per_picture_saved_beside_it_and_shown_in_the_gallery(
        make_window, qtbot, sfumato_home, fake_backend):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["a red door", "a blue boat"])
    canvas_before = (window.doc.extent, len(window.doc.layers))
    gallery.list.selectAll()
    sources = [gallery.store.path(record) for record in gallery.selected()]
    parameters = {path.name: read_image_meta(path)[0].parameters for path in sources}
    assert gallery.buttons["restore"].isEnabled()
    finished, notes = [], []
    window.worker.job_finished.connect(lambda job, saved: finished.append(saved))
    window.statusBar().messageChanged.connect(notes.append)
    seen = answer_restore(qtbot, DEMO_RESTORER_NAME, "denoise")
    qtbot.mouseClick(gallery.buttons["restore"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(finished) == 2, timeout=10_000)
    assert DEMO_RESTORER_NAME in seen["models"]
    assert seen["heading"] == "2 pictures; the first is 64 × 64 px"
    assert seen["summary"].endswith("Each result is saved beside its picture with its parameters.")
    assert "canvas" not in seen["summary"], "the gallery's results do not wait on the canvas"
    requests = [job.request for job in fake_backend.jobs]
    assert all(isinstance(r, UpscaleRequest) and r.restore == "denoise" and r.scale == 1 for r in requests)
    assert sorted(r.beside for r in requests) == sorted(str(path) for path in sources), "one per picture"
    for source in sources:
        result = source.with_name(f"{source.stem}-denoise.png")
        meta, width, height = read_image_meta(result)
        assert (width, height) == (64, 64)
        assert meta.parameters == f"{parameters[source.name]}, Postprocess restore: {DEMO_RESTORER_NAME}"
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 4, timeout=5000)
    assert "2 pictures queued to restore; the results are saved beside them." in notes
    assert not window.generation.staged and (window.doc.extent, len(window.doc.layers)) == canvas_before

    # The result knows its source: Compare shows the source before and the restore after.
    row = next(r for r in range(4) if gallery.model.record(r).path.endswith("-denoise.png"))
    select_rows(gallery, [row])
    assert gallery.buttons["compare"].isEnabled()
    before, after = gallery.compare_pair()
    assert after.path.endswith("-denoise.png") and after.path == before.path[:-4] + "-denoise.png"


def test_the_diffusion_restore_in_the_gallery_repaints_each_picture_lightly_with_the_panels_model_and_prompt(
        make_window, qtbot, sfumato_home, fake_backend):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["a red door"])
    window.panel.prompt.setPlainText("an old photograph")
    gallery.list.selectAll()
    source = gallery.store.path(gallery.selected()[0])
    finished = []
    window.worker.job_finished.connect(lambda job, saved: finished.append(saved))
    answer_restore(qtbot, "Diffusion (the panel's model, strength 0.25)", "restore")
    qtbot.mouseClick(gallery.buttons["restore"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(finished) == 1, timeout=10_000)
    request, = [job.request for job in fake_backend.jobs]
    assert isinstance(request, UpscaleRequest) and request.restore == "restore" and request.scale == 1
    assert request.beside == str(source) and request.detail.sampling.strength == 0.25
    assert request.detail.conditioning.prompt == "an old photograph" and request.detail.sampling.batch_size == 1
    assert source.with_name(f"{source.stem}-restore.png").exists()
    assert not window.generation.staged, "the result is saved beside the picture, not staged on the canvas"


def test_fix_faces_in_the_gallery_queues_a_face_restore_of_each_picture_saved_beside_it(make_window, qtbot,
                                                                                       sfumato_home, fake_backend):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["a portrait"])
    gallery.list.selectAll()
    source = gallery.store.path(gallery.selected()[0])
    finished = []
    window.worker.job_finished.connect(lambda job, saved: finished.append(saved))
    answer_restore(qtbot, DEMO_RESTORER_NAME, "face")
    qtbot.mouseClick(gallery.buttons["restore"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(finished) == 1, timeout=10_000)
    request, = [job.request for job in fake_backend.jobs]
    assert request.restore == "face" and request.faces is not None and request.faces.mask is None
    assert request.beside == str(source) and source.with_name(f"{source.stem}-face.png").exists()


def test_compare_is_offered_for_two_selected_pictures_only(make_window, qtbot, sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["one", "two", "three"])
    for rows, enabled in (([], False), ([0], False), ([0, 1], True), ([0, 1, 2], False), ([2, 0], True)):
        select_rows(gallery, rows)
        assert len(gallery.selected()) == len(rows)
        assert gallery.buttons["compare"].isEnabled() is enabled, rows
    qtbot.keyClick(gallery.list, Qt.Key.Key_C)  # rows 2 and 0 of three: "one" (older) and "three"
    assert gallery.comparing() and gallery.compare_view.hasFocus()
    assert "Before: " in gallery.compare_caption.text()
    select_rows(gallery, [0, 1, 2])
    qtbot.keyClick(gallery.compare_view, Qt.Key.Key_Escape)
    assert not gallery.comparing() and gallery.list.isVisible()
    qtbot.keyClick(gallery.list, Qt.Key.Key_C)
    assert not gallery.comparing(), "three pictures: nothing to compare"
    assert window.statusBar().currentMessage().startswith("Select two pictures to compare")


def test_compare_shows_the_older_picture_left_of_the_divider_and_dragging_moves_it(make_window, qtbot,
                                                                                 sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["older", "newer"])
    store = gallery.store
    older, newer = sorted(store.records(store.search(gallery.model.query)).values(), key=lambda r: r.id)
    store_pixels = {older.id: RED, newer.id: BLUE}
    for record in (older, newer):  # repaint the two files in colours easy to tell apart
        Image.fromarray(np.full((64, 64, 3), store_pixels[record.id], np.uint8)).save(store.path(record))
    select_rows(gallery, [0, 1])
    qtbot.mouseClick(gallery.buttons["compare"], Qt.MouseButton.LeftButton)
    view = gallery.compare_view
    qtbot.waitUntil(lambda: not view.after.isNull(), timeout=5000)
    rect = view.picture_rect()
    x, y = view.split_x(), rect.center().y()
    assert abs(x - rect.center().x()) < 1
    assert near(colour_at(view, x - 20, y), RED) and near(colour_at(view, x + 20, y), BLUE)

    target = round(rect.left() + rect.width() * 0.8)
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(round(x), round(y)))
    qtbot.mouseMove(view, QPoint(target, round(y)))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(target, round(y)))
    assert abs(view.split_x() - target) <= 1 and abs(view.split - 0.8) < 0.02
    assert near(colour_at(view, target - 20, y), RED), "the divider moved: before shows where after did"
    assert near(colour_at(view, target + 10, y), BLUE)
    qtbot.mouseClick(gallery.close_compare_button, Qt.MouseButton.LeftButton)
    assert not gallery.comparing()


def test_an_upscale_and_its_source_are_compared_at_the_same_displayed_size(qtbot):
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.set_images(filled(RED, 64, 48), filled(BLUE, 128, 96))  # the source, its x2 upscale
    view.show()
    qtbot.waitExposed(view)
    rect = view.picture_rect()
    assert abs(rect.width() / rect.height() - 128 / 96) < 0.01 and rect.height() >= 280
    inside = 3
    assert near(colour_at(view, rect.left() + inside, rect.bottom() - inside), RED), "the source fills its half"
    assert near(colour_at(view, rect.right() - inside, rect.bottom() - inside), BLUE)
    assert near(colour_at(view, rect.left() - inside, rect.center().y()), view.palette().base().color().getRgb()[:3])
    qtbot.keyClick(view, Qt.Key.Key_End)
    assert view.split == 1.0 and near(colour_at(view, rect.right() - inside, rect.bottom() - inside), RED)
    qtbot.keyClick(view, Qt.Key.Key_Left)
    assert abs(view.split - 0.9) < 1e-9


def test_on_a_1280x720_screen_the_details_picture_text_and_actions_do_not_overlap(make_window, qtbot,
                                                                                 sfumato_home):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["one"])
    window.move(0, 0)
    window.resize(1240, 676)  # the window Sfumato opens on a 1280x720 screen
    qtbot.wait(50)
    select_rows(gallery, [0])
    stacked = [gallery.picture, gallery.info, gallery.parameters, gallery.buttons["use"], gallery.buttons["upscale"],
               gallery.buttons["favourite"]]
    boxes = [widget.geometry().translated(widget.parentWidget().mapTo(window, QPoint(0, 0))) for widget in stacked]
    assert all(box.bottom() < below.top() for box, below in zip(boxes, boxes[1:])), boxes
    assert gallery.picture.height() >= 120 and gallery.parameters.height() >= 64


def test_esc_in_the_compare_view_closes_it_and_leaves_a_running_job_alone(make_window, qtbot, sfumato_home,
                                                                        fake_backend):
    """Esc cancels a run from anywhere in the window, except where it closes something the person opened."""
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["one", "two"])
    fake_backend.step_delay = 0.05  # a run that lasts 3 s unless it is cancelled
    window.panel.set_request(make_request(prompt="", steps=60, width=64, height=64, sampler="Euler a",
                                          schedule="Automatic"))
    steps = []
    window.worker.step.connect(lambda job, i, n, preview: steps.append(i))
    window.generate()
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=10_000)
    select_rows(gallery, [0, 1])
    qtbot.keyClick(gallery.list, Qt.Key.Key_C)
    assert gallery.comparing() and gallery.compare_view.hasFocus()
    with qtbot.assertNotEmitted(window.worker.job_cancelled, wait=50):
        qtbot.keyClick(gallery.compare_view, Qt.Key.Key_Escape)
    assert not gallery.comparing()
    with qtbot.waitSignal(window.worker.job_cancelled, timeout=10_000):
        qtbot.keyClick(gallery.list, Qt.Key.Key_Escape)  # now Esc cancels the run, as anywhere else
