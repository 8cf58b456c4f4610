"""The mouse wheel scrolls a panel of fields instead of changing the field under the pointer.

A spin box or combo box in a scrolling panel takes the wheel by default, so scrolling down the
prompt panel changed the width, the steps or the sampler on the way. Guarded, such a field takes
the wheel only once it has the focus (clicked or tabbed into), as in Krita's and Blender's panels;
until then the wheel goes to the panel, which scrolls.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSpinBox, QApplication, QComboBox, QWidget


class WheelGuard(QObject):
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            area = watched.parentWidget()
            while area is not None and not isinstance(area, QAbstractScrollArea):
                area = area.parentWidget()
            if area is not None:
                QApplication.sendEvent(area.verticalScrollBar(), event)
            return True
        return False


def guard_wheel(panel: QWidget) -> WheelGuard:
    """Guard every spin box and combo box inside `panel`; the guard lives as long as the panel."""
    guard = WheelGuard(panel)
    for field in panel.findChildren(QAbstractSpinBox) + panel.findChildren(QComboBox):
        field.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # no focus from the wheel itself
        field.installEventFilter(guard)
    return guard
