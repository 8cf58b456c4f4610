"""Undo and redo for the canvas document.

Every change to a CanvasDocument is an Edit that knows how to undo and redo
itself through the document's private primitives. Pixel edits keep only the
touched tiles (before and after), never a snapshot of the layer. The history
is bounded by memory, not by a count: the oldest steps are dropped when the
total passes `max_bytes`. A new edit clears the redo steps.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from .events import Event
from .geometry import Bounds, Extent, Point

if TYPE_CHECKING:
    from .document import CanvasDocument
    from .layers import Layer

DEFAULT_MAX_BYTES = 768 * 2**20
_serials = itertools.count(1)


class Edit:
    label = "Edit"
    nbytes = 0

    def undo(self, doc: CanvasDocument) -> None:
        raise NotImplementedError

    def redo(self, doc: CanvasDocument) -> None:
        raise NotImplementedError


class PixelEdit(Edit):
    """Pixels of one layer changed in some rectangles: (bounds in layer coordinates, before, after)."""

    def __init__(self, label: str, layer: Layer, patches: list[tuple[Bounds, np.ndarray, np.ndarray]]):
        self.label, self.layer, self.patches = label, layer, patches
        self.nbytes = sum(before.nbytes + after.nbytes for _, before, after in patches)

    def undo(self, doc):
        doc._write(self.layer, [(box, before) for box, before, _ in self.patches])

    def redo(self, doc):
        doc._write(self.layer, [(box, after) for box, _, after in self.patches])


class InsertLayer(Edit):
    def __init__(self, label: str, layer: Layer, index: int):
        self.label, self.layer, self.index = label, layer, index
        self.nbytes = layer.nbytes

    def undo(self, doc):
        doc._remove_layer(self.layer)

    def redo(self, doc):
        doc._insert_layer(self.layer, self.index)


class RemoveLayer(InsertLayer):
    def undo(self, doc):
        super().redo(doc)

    def redo(self, doc):
        super().undo(doc)


class MoveLayer(Edit):
    def __init__(self, layer: Layer, old: int, new: int):
        self.label, self.layer, self.old, self.new = "Move layer", layer, old, new

    def undo(self, doc):
        doc._move_layer(self.layer, self.old)

    def redo(self, doc):
        doc._move_layer(self.layer, self.new)


class SetProperty(Edit):
    def __init__(self, label: str, layer: Layer, name: str, old: object, new: object):
        self.label, self.layer, self.name, self.old, self.new = label, layer, name, old, new

    def undo(self, doc):
        doc._set_property(self.layer, self.name, self.old)

    def redo(self, doc):
        doc._set_property(self.layer, self.name, self.new)


class ReplacePixels(Edit):
    """A layer's whole array (and offset) replaced: merges, and layers grown to take a stroke."""

    def __init__(self, label: str, layer: Layer, old: tuple[np.ndarray, Point], new: tuple[np.ndarray, Point]):
        self.label, self.layer, self.old, self.new = label, layer, old, new
        self.nbytes = old[0].nbytes + new[0].nbytes

    def undo(self, doc):
        doc._replace_pixels(self.layer, *self.old)

    def redo(self, doc):
        doc._replace_pixels(self.layer, *self.new)


class SetFrame(Edit):
    def __init__(self, old: Bounds, new: Bounds):
        self.label, self.old, self.new = "Move frame", old, new

    def undo(self, doc):
        doc._set_frame(self.old)

    def redo(self, doc):
        doc._set_frame(self.new)


class Resize(Edit):
    """The canvas grew or shrank; `shift` moved every layer and the frame (growing left or up)."""

    def __init__(self, old: Extent, new: Extent, shift: Point):
        self.label, self.old, self.new, self.shift = "Resize canvas", old, new, shift

    def undo(self, doc):
        doc._resize(self.old, Point(-self.shift.x, -self.shift.y))

    def redo(self, doc):
        doc._resize(self.new, self.shift)


class Compound(Edit):
    """Several edits that undo as one step (accepting a result that also grows the canvas)."""

    def __init__(self, label: str, edits: list[Edit]):
        self.label, self.edits = label, edits
        self.nbytes = sum(e.nbytes for e in edits)

    def undo(self, doc):
        for edit in reversed(self.edits):
            edit.undo(doc)

    def redo(self, doc):
        for edit in self.edits:
            edit.redo(doc)


class History:
    """The undo and redo stacks of one document.

    Events:
        changed(): a step was pushed, undone, redone or dropped.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self._undo: list[tuple[int, Edit]] = []
        self._redo: list[tuple[int, Edit]] = []
        self._clean: int | None = None
        self.changed = Event()

    def push(self, edit: Edit) -> None:
        """Record an edit that has just been applied."""
        self._undo.append((next(_serials), edit))
        self._redo.clear()
        self._trim()
        self.changed.emit()

    def undo(self, doc: CanvasDocument) -> Edit | None:
        if not self._undo:
            return None
        serial, edit = self._undo.pop()
        edit.undo(doc)
        self._redo.append((serial, edit))
        self.changed.emit()
        return edit

    def redo(self, doc: CanvasDocument) -> Edit | None:
        if not self._redo:
            return None
        serial, edit = self._redo.pop()
        edit.redo(doc)
        self._undo.append((serial, edit))
        self._trim()
        self.changed.emit()
        return edit

    @property
    def undo_label(self) -> str | None:
        return self._undo[-1][1].label if self._undo else None

    @property
    def redo_label(self) -> str | None:
        return self._redo[-1][1].label if self._redo else None

    @property
    def nbytes(self) -> int:
        return sum(edit.nbytes for _, edit in (*self._undo, *self._redo))

    def __len__(self) -> int:
        return len(self._undo)

    def token(self) -> int | None:
        """Names the current state, to mark it clean later (a save that ran in the background)."""
        return self._top()

    def mark_clean(self, token: int | None | str = "now") -> None:
        """The document was saved as it is now (or as it was when `token()` returned `token`)."""
        self._clean = self._top() if token == "now" else token
        self.changed.emit()

    def mark_modified(self) -> None:
        """Nothing on disk matches this state (a document recovered from an autosave)."""
        self._clean = -1
        self.changed.emit()

    @property
    def modified(self) -> bool:
        return self._top() != self._clean

    def _top(self) -> int | None:
        return self._undo[-1][0] if self._undo else None

    def _trim(self) -> None:
        total = self.nbytes
        while total > self.max_bytes and len(self._undo) > 1:
            serial, dropped = self._undo.pop(0)
            total -= dropped.nbytes
            # The oldest reachable state is now the one after `dropped`, and an empty stack means it.
            if self._clean is None:
                self._clean = -1  # the state before it can no longer be reached
            elif self._clean == serial:
                self._clean = None
        while total > self.max_bytes and self._redo:
            serial, dropped = self._redo.pop(0)
            total -= dropped.nbytes
            if self._clean == serial:
                self._clean = -1
