"""A before/after split: two pictures on top of each other, the one before left of a vertical divider and the one
after right of it. Drag the divider (or click where it should be; Left/Right move it by a tenth, Home/End to the
edges) to see more of either; Esc or C asks to close it. Pictures of different sizes (an upscale and its source) are shown at the same
displayed size, the after picture's shape, as large as fits.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

MARGIN = 6  # around the pictures, so the divider's handle is never cut
CLOSE_KEYS = (Qt.Key.Key_Escape, Qt.Key.Key_C)


class CompareView(QWidget):
    """Signals:
    split_changed(float): the divider moved; 0 is the pictures' left edge, 1 their right edge.
    close_requested(): Esc or C was pressed on it.
    """

    split_changed = Signal(float)
    close_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.before, self.after = QImage(), QImage()
        self.labels = ("Before", "After")
        self._split = 0.5
        self._dragging = False
        self.setMinimumSize(240, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setCursor(Qt.CursorShape.SplitHCursor)

    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    def set_images(self, before: QImage, after: QImage, labels: tuple[str, str] = ("Before", "After")) -> None:
        self.before, self.after, self.labels = before, after, labels
        self.update()

    @property
    def split(self) -> float:
        return self._split

    def set_split(self, fraction: float) -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        if fraction != self._split:
            self._split = fraction
            self.split_changed.emit(fraction)
            self.update()

    def picture_rect(self) -> QRectF:
        """Where both pictures are drawn: the after picture's shape (else the before's), as large as fits."""
        area = QRectF(self.rect()).adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN)
        shape = self.after if not self.after.isNull() else self.before
        if shape.isNull() or area.width() <= 0 or area.height() <= 0:
            return area
        size = QSize(shape.width(), shape.height()).toSizeF().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        rect = QRectF(QPointF(0, 0), size)
        rect.moveCenter(area.center())
        return rect

    def split_x(self) -> float:
        """The divider's x in the widget."""
        rect = self.picture_rect()
        return rect.left() + rect.width() * self._split

    def _follow(self, x: float) -> None:
        rect = self.picture_rect()
        if rect.width() > 0:
            self.set_split((x - rect.left()) / rect.width())

    # -- input -----------------------------------------------------------------------------------

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._dragging = True
            self._follow(event.position().x())
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._dragging:
            self._follow(event.position().x())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._dragging:
            self._dragging = False
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and event.key() in CLOSE_KEYS \
                and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            event.accept()  # these keys are the view's, before the window's Esc (Cancel) shortcut
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        if event.key() in CLOSE_KEYS and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            self.close_requested.emit()
            event.accept()
            return
        moves = {Qt.Key.Key_Left: self._split - 0.1, Qt.Key.Key_Right: self._split + 0.1,
                 Qt.Key.Key_Home: 0.0, Qt.Key.Key_End: 1.0}
        if event.key() in moves:
            self.set_split(moves[event.key()])
            event.accept()
            return
        super().keyPressEvent(event)

    # -- painting --------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        if self.before.isNull() and self.after.isNull():
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Loading the pictures...")
            return
        rect = self.picture_rect()
        x = self.split_x()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        for image, part in ((self.before, QRectF(rect.left(), rect.top(), x - rect.left(), rect.height())),
                            (self.after, QRectF(x, rect.top(), rect.right() - x, rect.height()))):
            if image.isNull() or part.width() <= 0:
                continue
            painter.save()
            painter.setClipRect(part)
            painter.drawImage(rect, image)
            painter.restore()
        self._draw_divider(painter, rect, x)
        self._draw_labels(painter, rect)

    def _draw_divider(self, painter: QPainter, rect: QRectF, x: float) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(QColor(0, 0, 0, 140), 3))
        painter.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
        painter.setPen(QPen(QColor(255, 255, 255), 1))
        painter.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
        handle = QRectF(0, 0, 14, 28)
        handle.moveCenter(QPointF(x, rect.center().y()))
        painter.setPen(QPen(QColor(0, 0, 0, 160), 1))
        painter.setBrush(QColor(255, 255, 255))
        painter.drawRoundedRect(handle, 4, 4)

    def _draw_labels(self, painter: QPainter, rect: QRectF) -> None:
        metrics = painter.fontMetrics()
        for text, left in ((self.labels[0], True), (self.labels[1], False)):
            box = QRectF(metrics.boundingRect(text)).adjusted(-6, -3, 6, 3)
            corner = QPointF(rect.left() + 6, rect.top() + 6) if left else QPointF(rect.right() - 6 - box.width(),
                                                                                  rect.top() + 6)
            box.moveTopLeft(corner)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 150))
            painter.drawRoundedRect(box, 3, 3)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
