"""What the window system sends when something is dragged onto a widget and let go."""

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget


def _event(kind, pos: QPoint, action, data, buttons, keys):
    try:  # Qt 6.12 takes a QPointF (and deprecates QPoint); earlier releases take only a QPoint
        return kind(QPointF(pos), action, data, buttons, keys)
    except TypeError:
        return kind(QPoint(pos), action, data, buttons, keys)


def drop(widget: QWidget, pos: QPoint, data: QMimeData, action=Qt.DropAction.CopyAction) -> None:
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    QApplication.sendEvent(widget, _event(QDragEnterEvent, pos, action, data, buttons, keys))
    QApplication.sendEvent(widget, _event(QDragMoveEvent, pos, action, data, buttons, keys))
    QApplication.sendEvent(widget, QDropEvent(QPointF(pos), action, data, buttons, keys))
