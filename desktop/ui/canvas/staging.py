"""The staging strip: generated results wait on their frame to be accepted as a layer or discarded."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget


class StagingBar(QFrame):
    """Signals:
    step_requested(int): -1 for the previous result, +1 for the next.
    accept_requested(): keep the shown result as a new layer (Enter).
    discard_requested(): drop the shown result (Delete).
    discard_all_requested(): drop every waiting result.
    compare_toggled(bool): show the picture before left of a split line, the result right of it (C).
    """

    step_requested = Signal(int)
    accept_requested = Signal()
    discard_requested = Signal()
    discard_all_requested = Signal()
    compare_toggled = Signal(bool)

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("stagingBar")
        self.setAutoFillBackground(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#stagingBar { background: palette(window); border: 1px solid palette(mid);"
                           " border-radius: 6px; }")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 3, 6, 3)
        self.previous = _button("◀", "Previous result (Left)", lambda: self.step_requested.emit(-1))
        self.label = QLabel()
        self.next = _button("▶", "Next result (Right)", lambda: self.step_requested.emit(1))
        self.accept = _button("Accept", "Keep this result as a new layer (Enter)", self.accept_requested.emit)
        self.accept.setObjectName("acceptResult")
        self.accept.setStyleSheet("#acceptResult { font-weight: bold; }")
        self.discard = _button("Discard", "Drop this result; it stays in the output folder (Delete)",
                               self.discard_requested.emit)
        self.discard_all = _button("Discard all", "Drop every waiting result", self.discard_all_requested.emit)
        self.compare = _button("Compare", "Compare with the picture before: before left of the line, the result"
                               " right of it; move the pointer over the result to move the line (C)",
                               lambda: self.compare_toggled.emit(self.compare.isChecked()))
        self.compare.setCheckable(True)
        for widget in (self.previous, self.label, self.next, self.compare, self.accept, self.discard,
                       self.discard_all):
            layout.addWidget(widget)
        self.hide()

    def show_state(self, index: int, count: int, seed: int | None, note: str = "") -> None:
        """`note`: what else to say about the shown result ("Upscale x2 to 1024x1024")."""
        if count == 0:
            self.hide()
            return
        self.label.setText(f"Result {index + 1} of {count}" + (f"  ·  seed {seed}" if seed is not None else "")
                           + (f"  ·  {note}" if note else ""))
        self.previous.setEnabled(index > 0)
        self.next.setEnabled(index < count - 1)
        self.discard_all.setVisible(count > 1)
        self.adjustSize()
        self.show()
        self.raise_()

    def place_under(self, frame: QRect) -> None:
        """Sit centred under the frame on screen, kept inside the canvas."""
        parent = self.parentWidget().rect()
        self.adjustSize()
        x = frame.center().x() - self.width() // 2
        y = frame.bottom() + 8
        if y + self.height() > parent.bottom() - 4:
            y = min(frame.bottom(), parent.bottom()) - self.height() - 8
        x = max(4, min(x, parent.right() - self.width() - 4))
        y = max(4, y)
        self.move(x, y)


def _button(text: str, tip: str, slot) -> QToolButton:
    button = QToolButton(text=text)
    button.setToolTip(tip)
    button.setAutoRaise(True)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    button.clicked.connect(slot)
    return button
