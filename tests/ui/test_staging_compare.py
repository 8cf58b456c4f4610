"""Compare on the staging strip (C): a vertical split line across a staged result, the picture before left of
it and the result right of it; the pointer over the result moves the line. Only the view's painting changes:
no layer, no undo step. Jobs run on the FakeBackend; what is checked is the view's pixels, as a person sees them.
"""

import numpy as np
from PySide6.QtCore import QPoint, Qt

from desktop.ui.canvas.staging import StagingBar
from desktop.ui.canvas.tools import Tool
from tests.ui.test_canvas import TIMEOUT, open_photo, photo, quick
from tests.ui.test_upscale_ui import ask_upscale


def shot(view) -> np.ndarray:
    """The view's pixels, HxWx3, as painted."""
    image = view.grab().toImage().convertToFormat(view.grab().toImage().Format.Format_RGB888)
    width, height, stride = image.width(), image.height(), image.bytesPerLine()
    rows = np.frombuffer(image.constBits(), np.uint8, stride * height).reshape(height, stride)
    return rows[:, :width * 3].reshape(height, width, 3).copy()


def sides(view, pixels):
    """The staged result's pixels left and right of the compare line (a margin off the line, under its labels)."""
    rect = view.widget_rect(view.picture("staged")[1]).adjusted(2, 2, -2, -2)
    x = round(view.split_x())
    top, bottom = rect.top() + 40, rect.bottom() - 4
    bar = view.findChild(StagingBar)
    if bar.isVisible():  # the strip may sit over the result's bottom, inside the canvas
        bottom = min(bottom, bar.geometry().top() - 2)
    assert bottom - top > 20
    return pixels[top:bottom, rect.left() + 4:x - 6], pixels[top:bottom, x + 6:rect.right() - 4]


def same(a, b) -> bool:
    """Equal as a person sees them: a clipped smooth scaling may round a channel the other way."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b).max()) <= 2


def generate(window, qtbot):
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        qtbot.mouseClick(window.panel.generate_button, Qt.MouseButton.LeftButton)


def solid(width=96, height=80):
    return np.broadcast_to(np.array([40, 90, 200], np.uint8), (height, width, 3)).copy()


def test_compare_shows_the_picture_before_left_of_the_line_and_the_result_right_of_it(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, solid())
    quick(window)
    view = window.canvas
    before = shot(view)
    generate(window, qtbot)
    bar = window.generation.bar
    result = shot(view)
    assert bar.compare.isVisible() and not bar.compare.isChecked()
    layers, undo = len(doc.layers), len(doc.history._undo)

    qtbot.mouseClick(bar.compare, Qt.MouseButton.LeftButton)
    assert view.comparing and bar.compare.isChecked()
    compared = shot(view)
    left, right = sides(view, compared)
    old_left, _ = sides(view, before)
    _, new_right = sides(view, result)
    assert not same(sides(view, before)[1], new_right), "the result differs from the picture before"
    assert same(left, old_left), "left of the line: the picture before"
    assert same(right, new_right), "right of the line: the result"
    assert len(doc.layers) == layers and len(doc.history._undo) == undo, "no layer, no undo step"

    # The pointer over the result moves the line; a click there moves it too and paints nothing.
    rect = view.widget_rect(view.picture("staged")[1])
    point = QPoint(rect.left() + rect.width() // 4, rect.center().y())
    qtbot.mouseMove(view, point)
    assert abs(view.split_x() - point.x()) <= 1
    window.tools.set_tool(Tool.BRUSH)
    composite = doc.composite().copy()
    point = QPoint(rect.left() + rect.width() * 3 // 4, rect.center().y())
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=point)
    assert abs(view.split_x() - point.x()) <= 1
    assert np.array_equal(doc.composite(), composite), "a click on the compared result does not paint"
    assert view.cursor().shape() == Qt.CursorShape.SplitHCursor, "no brush outline over the compared result"
    assert len(doc.history._undo) == undo
    left, right = sides(view, shot(view))
    assert same(left, sides(view, before)[0]) and same(right, sides(view, result)[1])

    # C toggles it from the keyboard; off, the result shows whole.
    qtbot.mouseMove(view, QPoint(2, 2))  # off the result: with compare off the brush's outline shows again
    window.canvas.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_C)
    assert not view.comparing and not bar.compare.isChecked()
    rect = view.widget_rect(view.picture("staged")[1]).adjusted(4, 4, -4, -4)
    whole = shot(view)[rect.top():rect.bottom(), rect.left():rect.right()]
    assert same(whole, result[rect.top():rect.bottom(), rect.left():rect.right()])
    qtbot.keyClick(view, Qt.Key.Key_C)
    assert view.comparing and bar.compare.isChecked()

    # Accept still works with compare on, and the next results show whole.
    qtbot.mouseClick(bar.accept, Qt.MouseButton.LeftButton)
    assert len(doc.layers) == layers + 1 and not bar.isVisible()
    assert not view.comparing and not bar.compare.isChecked()
    generate(window, qtbot)
    assert not view.comparing


def test_discard_works_while_comparing(make_window, qtbot):
    window = make_window()
    doc = open_photo(window, solid())
    quick(window)
    generate(window, qtbot)
    layers = len(doc.layers)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_C)
    assert window.canvas.comparing
    qtbot.mouseClick(window.generation.bar.discard, Qt.MouseButton.LeftButton)
    assert not window.generation.staged and len(doc.layers) == layers
    assert not window.canvas.comparing and window.canvas.picture("staged") is None


def test_comparing_an_upscale_shows_the_source_scaled_to_the_result_left_of_the_line(make_window, qtbot,
                                                                                   fake_backend):
    window = make_window()
    doc = open_photo(window, photo(96, 80))
    view = window.canvas
    before = shot(view)
    with qtbot.waitSignal(window.results_shown, timeout=10_000):
        ask_upscale(window, qtbot)
    assert window.generation.staged[0].image.shape[:2] == (160, 192)
    result = shot(view)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_C)
    assert view.comparing
    left, right = sides(view, shot(view))
    assert not same(sides(view, before)[1], sides(view, result)[1]), "the upscale shows differently"
    assert same(left, sides(view, before)[0]), "left: the picture before, as large as the result"
    assert same(right, sides(view, result)[1]), "right: the upscaled result"
    qtbot.keyClick(view, Qt.Key.Key_Return)  # Accept
    assert doc.extent.width == 192 and not view.comparing


def test_c_typed_in_the_prompt_is_a_letter_not_compare(make_window, qtbot):
    window = make_window()
    open_photo(window, solid())
    quick(window)
    generate(window, qtbot)
    prompt = window.panel.prompt
    qtbot.mouseClick(prompt.viewport(), Qt.MouseButton.LeftButton)
    qtbot.keyClicks(prompt, "c")
    assert not window.canvas.comparing and prompt.toPlainText().endswith("c")
