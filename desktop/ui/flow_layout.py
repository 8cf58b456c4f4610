"""FlowLayout: widgets side by side that wrap onto the next line when the room runs out.

Rows of buttons use it so that a narrow window or panel shows every button
(on more lines) instead of cutting some off or forcing the window wider.
"""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QSizePolicy, QStyle, QWidget


class FlowLayout(QLayout):
    """Items left to right, wrapping; each line is as tall as its tallest item, which it centres vertically.

    `stretch_lines`: widgets whose horizontal policy can grow share the spare width of their line.
    """

    def __init__(self, parent: QWidget | None = None, spacing: int = -1, stretch_lines: bool = False):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._spacing = spacing
        self._stretch = stretch_lines
        self.setContentsMargins(QMargins(0, 0, 0, 0))

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:
        """Everything on one line."""
        width = sum(item.sizeHint().width() for item in self._shown()) + self._gap() * max(0, len(self._shown()) - 1)
        height = max((item.sizeHint().height() for item in self._shown()), default=0)
        m = self.contentsMargins()
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSize(self) -> QSize:
        """The widest item alone on its line."""
        size = QSize()
        for item in self._shown():
            size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _shown(self) -> list[QLayoutItem]:
        return [item for item in self._items if not item.isEmpty()]

    def _gap(self) -> int:
        if self._spacing >= 0:
            return self._spacing
        parent = self.parent()
        if isinstance(parent, QWidget):
            return parent.style().pixelMetric(QStyle.PixelMetric.PM_LayoutHorizontalSpacing, None, parent)
        if isinstance(parent, QLayout):
            return parent.spacing()
        return 6

    def _arrange(self, rect: QRect, move: bool) -> int:
        """Place the items in `rect` (when `move`); returns the height they take."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        gap = self._gap()
        lines: list[list[QLayoutItem]] = [[]]
        x = 0
        for item in self._shown():
            width = item.sizeHint().width()
            if lines[-1] and x + width > area.width():
                lines.append([])
                x = 0
            lines[-1].append(item)
            x += width + gap
        y = area.y()
        for line in lines:
            if not line:
                continue
            height = max(item.sizeHint().height() for item in line)
            if move:
                self._place_line(line, QPoint(area.x(), y), area.width(), height, gap)
            y += height + gap
        return y - gap - area.y() + m.top() + m.bottom() if any(lines) else m.top() + m.bottom()

    def _place_line(self, line: list[QLayoutItem], origin: QPoint, width: int, height: int, gap: int) -> None:
        widths = [min(item.sizeHint().width(), width) for item in line]
        growing = [i for i, item in enumerate(line) if self._stretch and _grows(item)]
        spare = width - sum(widths) - gap * (len(line) - 1)
        if growing and spare > 0:
            for n, i in enumerate(growing):
                widths[i] += spare // len(growing) + (1 if n < spare % len(growing) else 0)
        x = origin.x()
        for item, w in zip(line, widths):
            h = min(height, item.sizeHint().height()) if not item.expandingDirections() & Qt.Orientation.Vertical \
                else height
            item.setGeometry(QRect(x, origin.y() + (height - h) // 2, w, h))
            x += w + gap


def _grows(item: QLayoutItem) -> bool:
    widget = item.widget()
    policy = widget.sizePolicy().horizontalPolicy() if widget is not None else QSizePolicy.Policy.Fixed
    return bool(policy.value & QSizePolicy.PolicyFlag.GrowFlag.value)
