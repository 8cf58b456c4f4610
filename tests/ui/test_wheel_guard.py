"""Scrolling the prompt panel with the wheel never changes the field under the pointer."""

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QScrollArea


def wheel(widget, steps=-3):
    """A wheel turn over the middle of `widget` (negative: towards the person, scrolling down)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_panel_past_an_unfocused_field_and_turns_a_focused_one(make_window, qtbot):
    window = make_window()
    window.resize(1180, 654)  # the smallest window: the panel scrolls
    qtbot.waitUntil(lambda: window.panel.findChild(QScrollArea).verticalScrollBar().maximum() > 0)
    panel = window.panel
    scroll = panel.findChild(QScrollArea)
    assert scroll.verticalScrollBar().maximum() > 0, "the panel must scroll at this size for the test to mean anything"
    width, steps, sampler = panel.width_box.value(), panel.steps.value(), panel.sampler.currentText()
    for field in (panel.width_box, panel.steps, panel.sampler):
        wheel(field)
    assert (panel.width_box.value(), panel.steps.value(), panel.sampler.currentText()) == (width, steps, sampler)
    assert scroll.verticalScrollBar().value() > 0, "the wheel scrolled the panel instead"
    panel.steps.setFocus()
    qtbot.waitUntil(panel.steps.hasFocus)
    wheel(panel.steps, 1)
    assert panel.steps.value() != steps, "a field the person clicked into takes the wheel"
