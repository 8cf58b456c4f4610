"""The canvas as a person uses it: drag to paint a mask, zoom and pan, generate into the frame, accept."""

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QColor, QWheelEvent
from PySide6.QtWidgets import QApplication

from desktop.core.document import CanvasDocument
from desktop.core.geometry import Bounds, Extent
from desktop.core.request import Mode
from desktop.ui.canvas.tools import Tool
from tests.support.drops import drop
from tests.support.requests import make_request

TIMEOUT = 60_000


def quick(window, **fields):
    base = {"prompt": "a red door", "steps": 3, "seed": 7, "sampler": "Euler a", "schedule": "Automatic",
            "mask_blur": 2}
    request = make_request(**{**base, **fields})
    window.panel.set_request(request.replace(width=window.doc.frame.width, height=window.doc.frame.height))


def photo(w=96, h=80, seed=4):
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return pixels


def open_photo(window, pixels):
    window.files.set_document(CanvasDocument.from_image(pixels, "photo"), name="photo")
    window.canvas.fit()
    return window.doc


def at(window, x, y) -> QPoint:
    """The widget position of document point (x, y)."""
    return window.canvas.to_widget(QPointF(x + 0.5, y + 0.5)).toPoint()


def drag(qtbot, widget, points, button=Qt.MouseButton.LeftButton):
    qtbot.mousePress(widget, button, pos=points[0])
    for point in points[1:]:
        qtbot.mouseMove(widget, point)
    qtbot.mouseRelease(widget, button, pos=points[-1])


def wheel(widget, pos: QPoint, steps: int):
    event = QWheelEvent(QPointF(pos), QPointF(widget.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def choose_tool(qtbot, window, tool: Tool):
    qtbot.mouseClick(window.tool_bar.buttons[tool], Qt.MouseButton.LeftButton)
    assert window.tools.tool is tool


def test_a_drag_paints_the_mask_under_the_stroke_and_ctrl_z_removes_it(make_window, qtbot):
    window = make_window()
    pixels = photo()
    doc = open_photo(window, pixels)
    qtbot.mouseClick(window.canvas, Qt.MouseButton.RightButton, pos=QPoint(3, 3))  # focus the canvas
    assert window.canvas.hasFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_M)  # the Mask tool's shortcut
    assert window.tools.tool is Tool.MASK
    window.tools.set_brush(size=12, hardness=1.0)
    path = [at(window, x, 40) for x in range(20, 76, 4)]
    drag(qtbot, window.canvas, path)
    mask = doc.mask()
    assert mask[40, 20:76].min() == 255, "painted all along the drag"
    assert mask[5, 5] == 0 and mask[40, 90] == 0
    assert np.array_equal(doc.composite()[..., :3], pixels), "the photo is untouched: the mask is its own layer"
    qtbot.waitUntil(lambda: window.panel.mode is Mode.INPAINT, timeout=2000)
    assert "Inpaint" in window.panel.mode_label.text()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not doc.mask().any()
    qtbot.waitUntil(lambda: window.panel.mode is Mode.IMG2IMG, timeout=2000)


def test_brush_and_eraser_paint_the_active_layer_in_the_chosen_colour(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, np.full((64, 64, 3), 255, np.uint8))
    choose_tool(qtbot, window, Tool.BRUSH)
    window.tools.set_brush(size=8, hardness=1.0, opacity=1.0)
    window.tools.set_colour(QColor("red"))
    drag(qtbot, window.canvas, [at(window, 10, 10), at(window, 30, 10)])
    assert tuple(doc.composite()[10, 20]) == (255, 0, 0, 255)
    choose_tool(qtbot, window, Tool.ERASER)
    drag(qtbot, window.canvas, [at(window, 20, 10), at(window, 20, 11)])
    assert doc.composite()[10, 20, 3] == 0
    choose_tool(qtbot, window, Tool.PICKER)
    qtbot.mouseClick(window.canvas, Qt.MouseButton.LeftButton, pos=at(window, 40, 40))
    assert window.tools.colour.name() == "#ffffff"


def test_wheel_zoom_and_middle_drag_pan_keep_the_painted_point_under_the_cursor(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(128, 128))
    canvas = window.canvas
    pointer = at(window, 50, 60)
    before = canvas.to_document(QPointF(pointer))
    zoom = canvas.zoom
    wheel(canvas, pointer, 3)
    assert canvas.zoom == pytest.approx(zoom * 1.2**3)
    after = canvas.to_document(QPointF(pointer))
    assert abs(after.x() - before.x()) < 0.01 and abs(after.y() - before.y()) < 0.01
    drag(qtbot, canvas, [pointer, pointer + QPoint(40, 25)], Qt.MouseButton.MiddleButton)
    moved = pointer + QPoint(40, 25)
    assert abs(canvas.to_document(QPointF(moved)).x() - before.x()) < 0.01
    window.tools.set_tool(Tool.MASK)
    window.tools.set_brush(size=4, hardness=1.0)
    drag(qtbot, canvas, [moved, moved])
    assert doc.mask()[60, 50] == 255
    canvas.fit()
    assert canvas.to_document(QPointF(0, 0)).x() < 0, "fit shows the whole picture with a margin"


def test_space_drag_pans_instead_of_painting(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo())
    canvas = window.canvas
    window.tools.set_tool(Tool.MASK)
    canvas.setFocus()
    start = canvas.to_document(QPointF(100, 100))
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    drag(qtbot, canvas, [QPoint(100, 100), QPoint(130, 100)])
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    assert not doc.mask().any()
    assert canvas.to_document(QPointF(130, 100)).x() == pytest.approx(start.x())


@pytest.mark.engine
def test_inpaint_from_the_canvas_leaves_unmasked_pixels_unchanged(make_window, qtbot):
    window = make_window()
    pixels = photo(64, 64)
    doc = open_photo(window, pixels)
    quick(window)
    window.tools.set_tool(Tool.MASK)
    window.tools.set_brush(size=10, hardness=1.0)
    drag(qtbot, window.canvas, [at(window, 20, 30), at(window, 40, 30)])
    painted = doc.mask() > 0
    qtbot.waitUntil(lambda: window.panel.mode is Mode.INPAINT, timeout=2000)
    previews = []
    window.worker.step.connect(lambda job, i, n, p: previews.append(window.canvas.picture("preview")))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        qtbot.mouseClick(window.panel.generate_button, Qt.MouseButton.LeftButton)
    shown = [p for p in previews if p is not None]
    assert shown, "a preview was painted while it ran"
    assert all(not image.isNull() and region == doc.frame for image, region in shown), "in the frame"
    assert window.generation.bar.isVisible()
    layers = len(doc.layers)
    qtbot.mouseClick(window.generation.bar.accept, Qt.MouseButton.LeftButton)
    assert len(doc.layers) == layers + 1 and not window.generation.bar.isVisible()
    keep = np.ones(painted.shape, bool)
    reach = Bounds.of_mask(painted).pad(2 + 1)
    keep[reach.slices] = False
    result = doc.composite()
    assert np.array_equal(result[keep][:, :3], pixels[keep])
    assert not np.array_equal(result[painted][:, :3], pixels[painted]), "the masked part was repainted"


def test_moving_the_frame_past_the_edge_and_generating_grows_the_document(make_window, qtbot):
    window = make_window()
    pixels = photo(64, 64)
    doc = open_photo(window, pixels)
    quick(window)
    choose_tool(qtbot, window, Tool.FRAME)
    centre = at(window, 32, 32)
    step = window.canvas.zoom * 24
    drag(qtbot, window.canvas, [centre, centre + QPoint(round(step / 2), 0), centre + QPoint(round(step), 0)])
    assert doc.frame == Bounds(24, 0, 64, 64)
    qtbot.waitUntil(lambda: window.panel.mode is Mode.OUTPAINT, timeout=2000)
    assert "Outpaint" in window.canvas._frame_caption
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)  # accept
    assert doc.extent == Extent(88, 64)
    np.testing.assert_array_equal(doc.composite()[:, :20, :3], pixels[:, :20])
    assert doc.composite()[:, 70:, 3].min() == 255, "the new strip is painted"
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert doc.extent == Extent(64, 64) and len(doc.layers) == 2


def test_the_frame_covers_a_picture_off_the_grid_and_its_edge_can_be_dragged_back_to_the_picture(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(100, 75))
    assert doc.frame == Bounds(0, 0, 100, 75), "the last rows are in the frame"
    assert (window.panel.width_box.value(), window.panel.height_box.value()) == (100, 75)
    window.panel.height_box.setFocus()
    qtbot.keyClick(window.panel.height_box, Qt.Key.Key_Return)
    assert doc.frame == Bounds(0, 0, 100, 75), "the size box kept the frame's size"
    choose_tool(qtbot, window, Tool.FRAME)
    edge = window.canvas.to_widget(QPointF(50, 75)).toPoint() - QPoint(0, 2)
    drag(qtbot, window.canvas, [edge, edge - QPoint(0, round(window.canvas.zoom * 6))])
    assert doc.frame == Bounds(0, 0, 100, 72), "on the grid inside the picture"
    edge = window.canvas.to_widget(QPointF(50, 72)).toPoint() - QPoint(0, 2)
    drag(qtbot, window.canvas, [edge, edge + QPoint(0, round(window.canvas.zoom * 2))])
    assert doc.frame == Bounds(0, 0, 100, 75), "back on the picture's edge"


def test_accept_adds_an_undoable_layer_and_results_can_be_stepped_and_discarded(make_window, qtbot):
    window = make_window()
    doc = window.doc
    quick(window, batch_size=3, width=64, height=64)
    window.panel.set_size(64, 64)
    window.panel.size_changed.emit(64, 64)
    assert doc.frame.width == 64
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    generation = window.generation
    assert len(generation.staged) == 3 and generation.current == 0
    assert "1 of 3" in generation.bar.label.text()
    qtbot.mouseClick(generation.bar.next, Qt.MouseButton.LeftButton)
    assert generation.current == 1 and "seed 8" in generation.bar.label.text()
    qtbot.mouseClick(generation.bar.discard, Qt.MouseButton.LeftButton)
    assert len(generation.staged) == 2 and generation.staged[generation.current].seed == 9
    staged = generation.staged[generation.current].image
    qtbot.mouseClick(generation.bar.accept, Qt.MouseButton.LeftButton)
    layer = doc.active
    assert layer.name.startswith("Seed 9") and layer.bounds == Bounds(0, 0, 64, 64)
    np.testing.assert_array_equal(doc.composite(Bounds(0, 0, 64, 64))[..., :3], staged)
    assert generation.staged == [] and window.canvas.picture("staged") is None
    window.undo()
    assert layer not in doc.layers and not doc.composite().any()
    window.redo()
    assert layer in doc.layers


def test_frame_size_follows_the_panel_and_the_panel_follows_the_frame(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(256, 256))
    window.panel.width_box.setValue(128)
    assert doc.frame.width == 128
    doc.set_frame(Bounds(16, 16, 192, 64))
    assert (window.panel.width_box.value(), window.panel.height_box.value()) == (192, 64)
    window.panel.set_request(make_request(width=96, height=80))
    assert (doc.frame.width, doc.frame.height) == (96, 80)


def test_dropping_a_png_file_imports_it(make_window, qtbot, tmp_path):
    window = make_window()
    doc = open_photo(window, photo(128, 128))
    path = tmp_path / "drop.png"
    Image.new("RGBA", (20, 10), (0, 255, 0, 255)).save(path)
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    drop(window.canvas, at(window, 64, 64), data)
    qtbot.waitUntil(lambda: len(doc.layers) == 3, timeout=10_000)
    layer = doc.active
    assert layer.name == "drop" and layer.bounds.extent == Extent(20, 10)
    assert abs(layer.bounds.x + 10 - 64.5) <= 1 and abs(layer.bounds.y + 5 - 64.5) <= 1, "centred where dropped"
    assert tuple(doc.composite()[64, 64]) == (0, 255, 0, 255)


def test_a_picture_dropped_on_a_blank_canvas_becomes_the_document(make_window, qtbot, tmp_path):
    window = make_window()
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo(120, 88)).save(path)
    window.files.drop_files([str(path)], QPointF(5, 5))
    qtbot.waitUntil(lambda: window.doc.extent == Extent(120, 88), timeout=10_000)
    assert window.doc.frame == Bounds(0, 0, 120, 88)
    assert [l.name for l in window.doc.layers] == ["photo", "Mask"]


def test_a_broken_picture_says_why_and_keeps_the_document(make_window, qtbot, tmp_path):
    window = make_window()
    doc = open_photo(window, photo())
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    window.files.import_layer(path)
    qtbot.waitUntil(window.error_banner.isVisible, timeout=10_000)
    assert "broken.png" in window.error_banner.text() and window.doc is doc and len(doc.layers) == 2


def test_layers_panel_hides_renames_reorders_and_locks(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(64, 64))
    panel = window.layers
    qtbot.mouseClick(panel.buttons["new"], Qt.MouseButton.LeftButton)
    assert [l.name for l in doc.layers] == ["photo", "Layer 1", "Mask"] and doc.active.name == "Layer 1"
    row = panel.model.row(doc.layers[0])
    index = panel.model.index(row)
    panel.model.setData(index, Qt.CheckState.Unchecked.value, Qt.ItemDataRole.CheckStateRole)
    assert not doc.layers[0].visible and not doc.composite().any()
    panel.model.setData(index, "  the photo ", Qt.ItemDataRole.EditRole)
    assert doc.layers[0].name == "the photo"
    # Drag "the photo" (bottom row) above "Mask" (top row).
    mime = panel.model.mimeData([index])
    target = panel.list.visualRect(panel.model.index(0)).topLeft() + QPoint(5, 2)
    drop(panel.list.viewport(), target, mime, Qt.DropAction.MoveAction)
    assert [l.name for l in doc.layers] == ["Layer 1", "Mask", "the photo"]
    doc.set_active(doc.layers[0])
    qtbot.mouseClick(panel.buttons["lock"], Qt.MouseButton.LeftButton)
    assert doc.layers[0].locked
    window.tools.set_tool(Tool.BRUSH)
    messages = []
    window.canvas.message.connect(messages.append)
    drag(qtbot, window.canvas, [at(window, 10, 10), at(window, 20, 10)])
    assert messages and "locked" in messages[0]
    for _ in range(5):
        window.undo()
    assert [l.name for l in doc.layers] == ["photo", "Mask"] and doc.layers[0].visible


def test_the_lock_button_shows_whether_the_active_layer_is_locked(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(64, 64))
    lock = window.layers.buttons["lock"]
    assert not lock.isChecked() and lock.text() == "Lock"
    qtbot.mouseClick(lock, Qt.MouseButton.LeftButton)
    assert doc.active.locked and lock.isChecked() and lock.text() == "Locked"
    window.layers.list.setCurrentIndex(window.layers.model.index(0))  # the mask
    assert not lock.isChecked() and lock.text() == "Lock"
    window.layers.list.setCurrentIndex(window.layers.model.index(1))
    assert lock.isChecked() and lock.text() == "Locked"
    window.undo()
    assert not doc.layers[0].locked and not lock.isChecked() and lock.text() == "Lock"


def test_undo_keeps_the_layer_below_chosen_in_the_layers_panel(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(64, 64))
    qtbot.mouseClick(window.layers.buttons["new"], Qt.MouseButton.LeftButton)
    window.undo()
    assert doc.active.name == "photo"
    assert window.layers.list.currentIndex().row() == window.layers.model.row(doc.layers[0])


def test_opacity_slider_and_merge_down(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, np.zeros((64, 64, 3), np.uint8))
    panel = window.layers
    window.files.add_picture(np.full((64, 64, 3), 255, np.uint8), "white")
    top = doc.active
    panel.opacity.setValue(50)
    assert top.opacity == 0.5 and 126 <= doc.composite()[0, 0, 0] <= 129
    assert [l.name for l in doc.layers] == ["photo", "white", "Mask"]
    seen = doc.composite().copy()
    qtbot.mouseClick(panel.buttons["merge"], Qt.MouseButton.LeftButton)
    assert len(doc.layers) == 2 and doc.active.name == "photo"
    np.testing.assert_array_equal(doc.composite(), seen)


def test_save_and_open_an_ora_file(make_window, qtbot, tmp_path, answer_dialogs):
    window = make_window()
    doc = open_photo(window, photo())
    window.tools.set_tool(Tool.MASK)
    drag(qtbot, window.canvas, [at(window, 30, 30), at(window, 50, 30)])
    assert window.windowTitle().startswith("photo *")
    answer_dialogs["path"] = str(tmp_path / "work")
    window.files.save()
    path = tmp_path / "work.ora"
    qtbot.waitUntil(lambda: not doc.modified, timeout=10_000)
    assert path.is_file() and window.windowTitle().startswith("work —")
    window.files.new()
    assert window.doc is not doc and window.doc.extent == Extent(96, 80)
    window.files.open(path)
    qtbot.waitUntil(lambda: window.files.path == path, timeout=10_000)
    np.testing.assert_array_equal(window.doc.composite(), doc.composite())
    np.testing.assert_array_equal(window.doc.mask(), doc.mask())


def test_closing_with_unsaved_changes_asks_and_cancel_keeps_the_window(make_window, qtbot, answer_dialogs):
    window = make_window()
    open_photo(window, photo())
    window.layers.buttons["new"].click()
    answer_dialogs["save_changes"] = "cancel"
    window.close()
    assert window.isVisible()
    answer_dialogs["save_changes"] = "discard"


def test_an_autosave_is_offered_back_after_a_crash(make_window, qtbot, answer_dialogs, tmp_path):
    from desktop.core import autosave

    window = make_window()
    doc = open_photo(window, photo())
    window.files.save_as(tmp_path / "street.ora", wait=True)
    window.tools.set_tool(Tool.MASK)
    drag(qtbot, window.canvas, [at(window, 30, 30), at(window, 50, 30)])
    window.files.autosave_now()
    qtbot.waitUntil(autosave.exists, timeout=10_000)
    composite, mask = doc.composite().copy(), doc.mask().copy()
    window.files.autosave_timer.stop()
    window.files.closing = lambda: None  # as if the app crashed: the autosave stays
    window.close()
    answer_dialogs["restore"] = True
    again = make_window()
    qtbot.waitUntil(lambda: again.windowTitle() == "street * — Sfumato", timeout=10_000)  # its own name
    np.testing.assert_array_equal(again.doc.composite(), composite)
    np.testing.assert_array_equal(again.doc.mask(), mask)
    assert again.doc.modified and again.files.path == tmp_path / "street.ora"  # Ctrl+S saves it there


def test_the_preview_of_only_masked_inpainting_is_drawn_in_its_crop(make_window, qtbot):
    from desktop.core.request import InpaintArea

    window = make_window()
    doc = open_photo(window, photo(128, 128))
    quick(window, inpaint_area=InpaintArea.ONLY_MASKED, inpaint_padding=8, mask_blur=2, steps=2)
    window.tools.set_tool(Tool.MASK)
    window.tools.set_brush(size=10, hardness=1.0)
    drag(qtbot, window.canvas, [at(window, 100, 100), at(window, 110, 100)])
    regions = []
    window.worker.step.connect(lambda *args: regions.append(window.canvas.picture("preview")[1]))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    region = regions[-1]
    assert doc.frame.contains(region) and region.width < 128 and region.x > 64
    assert doc.mask()[region.slices].any()


def test_results_waiting_on_one_picture_do_not_land_in_the_next(make_window, qtbot):
    window = make_window()
    open_photo(window, photo(64, 64))
    quick(window)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    assert window.generation.staged
    window.files.new()
    assert window.generation.staged == [] and window.canvas.picture("staged") is None
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Return)
    assert len(window.doc.layers) == 2 and not window.doc.composite().any()


def test_a_pasted_picture_too_wide_for_the_canvas_is_explained(make_window, qtbot):
    window = make_window()
    window.files.add_picture(np.zeros((4, 16400, 3), np.uint8), "panorama")
    assert window.error_banner.isVisible() and "16400" in window.error_banner.text()
    assert window.doc.extent != Extent(16400, 4)


def test_ctrl_z_during_a_stroke_undoes_it_and_the_rest_of_the_drag_paints_nothing(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo())
    before = doc.composite().copy()
    window.tools.set_tool(Tool.BRUSH)
    window.tools.set_brush(size=6, hardness=1.0)
    canvas = window.canvas
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=at(window, 10, 10))
    qtbot.mouseMove(canvas, at(window, 30, 10))
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.mouseMove(canvas, at(window, 60, 40))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=at(window, 60, 40))
    np.testing.assert_array_equal(doc.composite(), before)
    assert len(doc.history) == 0 and doc.history.redo_label == "Brush stroke"


def pen_stroke(widget, points, pressures, pointer=None):
    """A pen drawn across the widget: press, moves and release, each with its pressure."""
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QInputDevice, QPointingDevice, QTabletEvent

    pointer = pointer or QPointingDevice.PointerType.Pen
    device = QPointingDevice("test pen", 7, QInputDevice.DeviceType.Stylus, pointer,
                             QInputDevice.Capability.Position | QInputDevice.Capability.Pressure, 1, 3)
    kinds = [QEvent.Type.TabletPress] + [QEvent.Type.TabletMove] * (len(points) - 1) + [QEvent.Type.TabletRelease]
    for kind, point, pressure in zip(kinds, [*points, points[-1]], [*pressures, 0.0], strict=True):
        button = Qt.MouseButton.NoButton if kind == QEvent.Type.TabletMove else Qt.MouseButton.LeftButton
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.TabletRelease else Qt.MouseButton.LeftButton
        event = QTabletEvent(kind, device, QPointF(point), QPointF(widget.mapToGlobal(point)), pressure, 0.0, 0.0,
                             0.0, 0.0, 0.0, Qt.KeyboardModifier.NoModifier, button, buttons)
        QApplication.sendEvent(widget, event)
        assert event.isAccepted(), "the canvas took the pen event itself"


def test_a_pen_paints_thinner_as_it_lifts_and_its_eraser_end_erases(make_window, qtbot):
    from PySide6.QtGui import QPointingDevice

    window = make_window()
    doc = open_photo(window, np.full((120, 160, 3), 255, np.uint8))
    choose_tool(qtbot, window, Tool.MASK)
    window.tools.set_brush(size=30, hardness=1.0)
    xs = list(range(20, 141, 8))
    pen_stroke(window.canvas, [at(window, x, 40) for x in xs], [1 - i / (len(xs) - 1) for i in range(len(xs))])
    mask = doc.mask()
    thick, thin = int((mask[:, 24] > 127).sum()), int((mask[:, 136] > 127).sum())
    assert 26 <= thick <= 32 and thin <= 8, f"{thick} px where the pen pressed hard, {thin} where it lifted"
    assert (mask[40, 20:141] == 255).all()
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not doc.mask().any(), "the pen stroke is one undo step"

    qtbot.keyClick(window.canvas, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert doc.mask()[40, 24] == 255, "and redone"
    pen_stroke(window.canvas, [at(window, 60, 40), at(window, 61, 40), at(window, 62, 40)], [1.0, 1.0, 1.0],
               pointer=QPointingDevice.PointerType.Eraser)
    assert doc.mask()[40, 61] == 0 and doc.mask()[40, 24] == 255, "the eraser end unmasks where it touched"
    assert window.tools.tool is Tool.MASK


def test_ctrl_y_and_ctrl_shift_z_both_redo(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo())
    choose_tool(qtbot, window, Tool.MASK)
    drag(qtbot, window.canvas, [at(window, 20, 20), at(window, 40, 20)])
    for redo in (Qt.KeyboardModifier.ControlModifier,
                 Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier):
        qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert not doc.mask().any()
        qtbot.keyClick(window.canvas, Qt.Key.Key_Y if redo == Qt.KeyboardModifier.ControlModifier else Qt.Key.Key_Z,
                       redo)
        assert doc.mask()[20, 30] == 255


def test_canvas_size_grows_around_the_anchor_and_undoes_in_one_step(make_window, qtbot):
    from PySide6.QtCore import QTimer

    from desktop.ui.canvas.canvas_size_dialog import CanvasSizeDialog

    window = make_window()
    doc = open_photo(window, photo(96, 80))
    before = doc.composite().copy()
    seen = []

    def answer():
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, CanvasSizeDialog)
        dialog.width_box.selectAll()
        qtbot.keyClicks(dialog.width_box, "160")
        dialog.height_box.selectAll()
        qtbot.keyClicks(dialog.height_box, "120")
        qtbot.mouseClick(dialog.anchors.button(8), Qt.MouseButton.LeftButton)  # bottom right
        seen.append(dialog.summary.text())
        qtbot.keyClick(dialog, Qt.Key.Key_Return)

    QTimer.singleShot(0, answer)
    qtbot.keyClick(window.canvas, Qt.Key.Key_C,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
    assert seen == ["Adds 64 px on the left, adds 40 px at the top."]
    assert doc.extent == Extent(160, 120)
    assert np.array_equal(doc.composite()[40:, 64:], before), "the picture sits at the bottom right"
    assert doc.composite()[:40, :, 3].max() == 0 and doc.composite()[:, :64, 3].max() == 0, "new room is empty"
    assert "160 × 120" in window.statusBar().currentMessage()
    window.activateWindow()  # the window manager's job when a dialog closes; offscreen there is none
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    qtbot.keyClick(window.canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert doc.extent == Extent(96, 80) and np.array_equal(doc.composite(), before)


def test_a_running_job_paints_and_stages_where_its_frame_moved_when_the_canvas_grew_left(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, photo(64, 64))
    quick(window, steps=3)
    previews = []
    window.worker.job_started.connect(lambda *args: doc.resize_canvas(16, 8, 0, 0))  # while the job runs
    window.worker.step.connect(lambda *args: previews.append(window.canvas.picture("preview")[1]))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    moved = Bounds(16, 8, 64, 64)
    assert doc.frame == moved and previews and set(previews) == {moved}
    assert window.generation.staged[0].frame == moved and window.canvas.picture("staged")[1] == moved
