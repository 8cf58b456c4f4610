"""Parts of the main window's frame that must never make it wider: the error banner and the status bar."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QSizeGrip, QStatusBar, QStyle, QStyleOption, QWidget

GAP = 12  # between the end of a status message and the first permanent widget


NOTICE_STYLE = "background: palette(alternate-base); border: 1px solid palette(mid); border-radius: 4px; padding: 8px;"
ERROR_STYLE = "padding: 8px; border-radius: 4px; color: white; background: #a33a3a; border: 1px solid #7a2020;"


class Banner(QLabel):
    """A message across the window that wraps onto more lines however long it is; a click dismisses it.
    Hidden until shown; `name` is its object name, `style` its look (NOTICE_STYLE or ERROR_STYLE)."""

    clicked = Signal()

    def __init__(self, name: str, style: str = NOTICE_STYLE, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setObjectName(name)
        self.setToolTip("Click to dismiss")
        self.setStyleSheet(f"#{name} {{ {style} }}")
        self.clicked.connect(self.hide)
        self.hide()

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(event.position().toPoint()):
            self.clicked.emit()
        super().mouseReleaseEvent(event)


class StatusBar(QStatusBar):
    """A status bar whose message ends in "…" before the permanent widgets (Device, progress) instead of
    running into them; the whole message is its tooltip."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.messageChanged.connect(self._message_changed)

    def _message_changed(self, text: str) -> None:
        self.setToolTip(text)
        self.update()

    def message_rect(self) -> QRect:
        """Where the message is written: left of the first permanent widget, with a gap."""
        right = self.width() - 12
        for widget in self._items():
            if widget.x() > 0:
                right = min(right, widget.x() - GAP)
        return QRect(6, 0, max(0, right - 6), self.height())

    def shown_message(self) -> str:
        """The message as painted: elided to fit its room."""
        return self.fontMetrics().elidedText(self.currentMessage(), Qt.TextElideMode.ElideRight,
                                             self.message_rect().width())

    def _items(self) -> list[QWidget]:
        return [w for w in self.findChildren(QWidget, options=Qt.FindChildOption.FindDirectChildrenOnly)
                if w.isVisible() and not isinstance(w, QSizeGrip) and not w.isWindow()]

    def paintEvent(self, event) -> None:
        message = self.currentMessage()
        if not message:
            super().paintEvent(event)
            return
        # What QStatusBar paints with a message (its panel and the permanent widgets' frames), but the
        # message itself elided, so it never reaches the Device label.
        painter = QPainter(self)
        option = QStyleOption()
        option.initFrom(self)
        self.style().drawPrimitive(QStyle.PrimitiveElement.PE_PanelStatusBar, option, painter, self)
        for widget in self._items():
            frame = QStyleOption()
            frame.rect = widget.geometry().adjusted(-2, -1, 2, 1)
            frame.palette = self.palette()
            frame.state = QStyle.StateFlag.State_None
            self.style().drawPrimitive(QStyle.PrimitiveElement.PE_FrameStatusBarItem, frame, painter, widget)
        painter.setPen(self.palette().windowText().color())
        painter.drawText(self.message_rect(), Qt.AlignmentFlag.AlignLeading | Qt.AlignmentFlag.AlignVCenter
                         | Qt.TextFlag.TextSingleLine, self.shown_message())
        painter.end()


class ReplicaLabel(QLabel):
    """ "2 of 3 replicas working": beside the Device label while a server with several replicas runs jobs;
    hidden otherwise (this computer, a server with one replica, nothing running)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setToolTip("How many of the server's replicas (one per GPU) are running a job of yours now")
        self.setContentsMargins(0, 0, 8, 0)  # apart from the Device label
        self.hide()

    def show_working(self, working: int, slots: int) -> None:
        self.setText(f"{working} of {slots} replicas working")
        self.setVisible(slots > 1 and working > 0)
