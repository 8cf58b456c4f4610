"""The canvas tools and their settings (size, hardness, opacity, colour), shared by the view and the tool bar.

Brush and eraser work on the active layer; the mask brush and mask eraser
always work on a mask (the active one, else the topmost). The paint tools
and the mask tools keep separate sizes, hardness and opacity, as people use
a big soft mask brush next to a small hard paint brush.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor

from desktop.core.brush import MAX_SIZE, Brush


class Tool(Enum):
    # value: (label, shortcut, tooltip)
    BRUSH = ("Brush", "B", "Paint on the active layer")
    ERASER = ("Eraser", "E", "Erase on the active layer")
    MASK = ("Mask", "M", "Paint the mask: where the next generation repaints")
    MASK_ERASER = ("Unmask", "Shift+M", "Erase from the mask")
    PICKER = ("Picker", "I", "Pick a colour from the picture")
    MOVE = ("Move", "V", "Move the active layer")
    FRAME = ("Frame", "F", "Move or resize the generation frame; drag past the picture to outpaint")
    PAN = ("Pan", "H", "Drag to look around (or hold Space, or drag with the middle button)")

    @property
    def label(self) -> str:
        return self.value[0]

    @property
    def shortcut(self) -> str:
        return self.value[1]

    @property
    def tooltip(self) -> str:
        return f"{self.value[2]} ({self.value[1]})"

    @property
    def paints(self) -> bool:
        return self in (Tool.BRUSH, Tool.ERASER, Tool.MASK, Tool.MASK_ERASER)

    @property
    def on_mask(self) -> bool:
        return self in (Tool.MASK, Tool.MASK_ERASER)

    @property
    def erases(self) -> bool:
        return self in (Tool.ERASER, Tool.MASK_ERASER)


class ToolState(QObject):
    """The current tool and brush settings.

    Signals:
        changed(): the tool, a brush setting or the colour changed.
    """

    changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.tool = Tool.BRUSH
        self.colour = QColor(0, 0, 0)
        self._brushes = {"paint": Brush(size=24, hardness=0.8), "mask": Brush(size=64, hardness=0.6)}

    def set_tool(self, tool: Tool) -> None:
        if tool is not self.tool:
            self.tool = tool
            self.changed.emit()

    @property
    def group(self) -> str:
        return "mask" if self.tool.on_mask else "paint"

    def brush(self) -> Brush:
        """The brush for the current tool, with its colour and whether it erases."""
        colour = (self.colour.red(), self.colour.green(), self.colour.blue())
        return dataclasses.replace(self._brushes[self.group], colour=colour, erase=self.tool.erases)

    def set_brush(self, **values) -> None:
        """Change size, hardness or opacity of the current tool's brush (clamped to valid values)."""
        limits = {"size": (1.0, float(MAX_SIZE)), "hardness": (0.0, 1.0), "opacity": (0.01, 1.0)}
        clean = {k: min(limits[k][1], max(limits[k][0], float(v))) for k, v in values.items()}
        brush = dataclasses.replace(self._brushes[self.group], **clean)
        if brush != self._brushes[self.group]:
            self._brushes[self.group] = brush
            self.changed.emit()

    def resize_brush(self, steps: int) -> None:
        """[ and ]: about 15% smaller or larger per step, at least one pixel."""
        size = self._brushes[self.group].size
        new = size * 1.15**steps
        if abs(new - size) < 1:
            new = size + (1 if steps > 0 else -1)
        self.set_brush(size=round(new))

    def set_colour(self, colour: QColor) -> None:
        if colour.isValid() and colour != self.colour:
            self.colour = QColor(colour.red(), colour.green(), colour.blue())
            self.changed.emit()
