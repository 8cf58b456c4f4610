"""The strip above the canvas: the tools, the current brush's size, hardness, opacity and colour, and the zoom.

The three groups wrap onto a second line when the canvas is narrow, so every control stays on screen.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QButtonGroup,
    QColorDialog,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QWidget,
)

from desktop.core.brush import MAX_SIZE

from ..flow_layout import FlowLayout
from .tools import Tool, ToolState


class ToolBar(QWidget):
    """Signals:
    fit_requested(): show the whole picture.
    actual_size_requested(): zoom to 100%.
    """

    fit_requested = Signal()
    actual_size_requested = Signal()

    def __init__(self, tools: ToolState, parent: QWidget | None = None):
        super().__init__(parent)
        self.tools = tools
        flow = FlowLayout(self, spacing=12)
        flow.setContentsMargins(4, 2, 4, 2)
        tool_group, brush_group, zoom_group = _group(flow), _group(flow), _group(flow)
        layout = tool_group
        self.group = QButtonGroup(self)
        self.buttons: dict[Tool, QToolButton] = {}
        for tool in Tool:
            button = QToolButton(text=tool.label)
            button.setCheckable(True)
            button.setToolTip(tool.tooltip)
            button.setAutoRaise(True)
            button.clicked.connect(lambda _=False, t=tool: tools.set_tool(t))
            self.group.addButton(button)
            self.buttons[tool] = button
            layout.addWidget(button)
        layout = brush_group

        self.size = _spin(1, MAX_SIZE, " px", "Brush size ([ smaller, ] larger)")
        self.hardness = _spin(0, 100, " %", "Hardness: 100% is a hard edge, lower is softer")
        self.opacity = _spin(1, 100, " %", "Opacity of a stroke (it does not build up within one stroke)")
        self.size.valueChanged.connect(lambda v: tools.set_brush(size=v))
        self.hardness.valueChanged.connect(lambda v: tools.set_brush(hardness=v / 100))
        self.opacity.valueChanged.connect(lambda v: tools.set_brush(opacity=v / 100))
        self.colour = QToolButton()
        self.colour.setToolTip("Brush colour (the picker tool, I, takes one from the picture)")
        self.colour.setFixedSize(28, 24)
        self.colour.clicked.connect(self._choose_colour)
        self.brush_options: list[QWidget] = []
        for text, widget in (("Size", self.size), ("Hardness", self.hardness), ("Opacity", self.opacity)):
            label = QLabel(text)
            layout.addWidget(label)
            layout.addWidget(widget)
            self.brush_options += [label, widget]
        layout.addWidget(self.colour)
        layout = zoom_group

        self.zoom_label = QLabel("100%")
        self.zoom_label.setToolTip("Zoom (wheel or pinch; Ctrl+0 fits, Ctrl+1 is 100%)")
        self.zoom_label.setMinimumWidth(48)
        self.zoom_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        fit = QToolButton(text="Fit")
        fit.setToolTip("Show the whole picture (Ctrl+0)")
        fit.setAutoRaise(True)
        fit.clicked.connect(self.fit_requested)
        actual = QToolButton(text="100%")
        actual.setToolTip("Actual pixels (Ctrl+1)")
        actual.setAutoRaise(True)
        actual.clicked.connect(self.actual_size_requested)
        layout.addWidget(self.zoom_label)
        layout.addWidget(fit)
        layout.addWidget(actual)
        self.flow = flow
        tools.changed.connect(self._sync)
        self._sync()

    def add_group(self, group: QWidget) -> None:
        """Another run of controls that stays together on one line of the strip (live mode's)."""
        self.flow.addWidget(group)

    def set_zoom(self, zoom: float) -> None:
        self.zoom_label.setText(f"{zoom * 100:.0f}%" if zoom >= 0.1 else f"{zoom * 100:.1f}%")

    def _sync(self) -> None:
        tools = self.tools
        self.buttons[tools.tool].setChecked(True)
        brush = tools.brush()
        for spin, value in ((self.size, brush.size), (self.hardness, brush.hardness * 100),
                            (self.opacity, brush.opacity * 100)):
            spin.blockSignals(True)
            spin.setValue(round(value))
            spin.blockSignals(False)
        for widget in self.brush_options:
            widget.setEnabled(tools.tool.paints)
        self.colour.setEnabled(tools.tool in (Tool.BRUSH, Tool.PICKER))
        self.colour.setStyleSheet(f"QToolButton {{ background: {tools.colour.name()}; border: 1px solid palette(mid);"
                                  " border-radius: 3px; }")

    def _choose_colour(self) -> None:
        colour = QColorDialog.getColor(self.tools.colour, self, "Brush colour")
        if colour.isValid():
            self.tools.set_colour(QColor(colour))


def _spin(low: int, high: int, suffix: str, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSuffix(suffix)
    spin.setToolTip(tip)
    spin.setKeyboardTracking(False)
    return spin


def _group(flow: FlowLayout) -> QHBoxLayout:
    """A run of controls that stays together on one line of the strip."""
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    flow.addWidget(box)
    return layout
