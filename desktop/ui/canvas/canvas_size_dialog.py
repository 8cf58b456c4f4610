"""Image > Canvas size: a new width and height, and which side the picture stays anchored to.

Growing adds transparent room (which the frame can then outpaint); shrinking
hides the pixels past the new edge without deleting them, so growing back or
undoing brings them back.
"""

from __future__ import annotations

from PySide6.QtWidgets import (QButtonGroup, QDialog, QDialogButtonBox, QFormLayout, QGridLayout, QLabel,
                               QSpinBox, QToolButton, QVBoxLayout, QWidget)

from desktop.core.document import MAX_EXTENT
from desktop.core.geometry import Extent

ARROWS = ["↖", "↑", "↗", "←", "•", "→", "↙", "↓", "↘"]


class CanvasSizeDialog(QDialog):
    def __init__(self, extent: Extent, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Canvas size")
        self.setMinimumWidth(360)
        self.old = extent
        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for box, value in ((self.width_box, extent.width), (self.height_box, extent.height)):
            box.setRange(1, MAX_EXTENT)
            box.setSuffix(" px")
            box.setValue(value)
            box.valueChanged.connect(self._explain)
        self.anchors = QButtonGroup(self)
        grid_box = QWidget()
        grid = QGridLayout(grid_box)
        grid.setSpacing(2)
        grid.setContentsMargins(0, 0, 0, 0)
        for i, arrow in enumerate(ARROWS):
            button = QToolButton(text=arrow, checkable=True)
            button.setFixedSize(30, 30)
            button.setToolTip("Keep the picture here; the canvas grows or shrinks on the other sides")
            self.anchors.addButton(button, i)
            grid.addWidget(button, i // 3, i % 3)
        grid_box.setFixedSize(grid_box.sizeHint())  # a compact 3x3 pad, not stretched across the dialog
        self.anchors.button(4).setChecked(True)  # centred, as Krita and GIMP start
        self.anchors.idClicked.connect(self._explain)
        self.summary = QLabel(wordWrap=True)
        form = QFormLayout()
        form.addRow("Width", self.width_box)
        form.addRow("Height", self.height_box)
        form.addRow("Anchor", grid_box)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Now {extent.width} × {extent.height} px"))
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(buttons)
        self._explain()

    def set_anchor(self, column: int, row: int) -> None:
        self.anchors.button(row * 3 + column).setChecked(True)
        self._explain()

    def margins(self) -> tuple[int, int, int, int]:
        """Pixels to add (positive) or take away (negative) on the left, top, right and bottom."""
        anchor = self.anchors.checkedId()
        column, row = anchor % 3, anchor // 3
        dx, dy = self.width_box.value() - self.old.width, self.height_box.value() - self.old.height
        left = (0, dx // 2, dx)[column]
        top = (0, dy // 2, dy)[row]
        return left, top, dx - left, dy - top

    def _explain(self, *_args) -> None:
        names = ("left", "top", "right", "bottom")
        parts = [f"{'adds' if v > 0 else 'takes'} {abs(v)} px {'on the' if n in ('left', 'right') else 'at the'} {n}"
                 for n, v in zip(names, self.margins(), strict=True) if v]
        text = ", ".join(parts) if parts else "no change"
        hidden = any(v < 0 for v in self.margins())
        self.summary.setText(text[0].upper() + text[1:] + "." + (
            " Pixels past the new edge are hidden, not deleted." if hidden else ""))
