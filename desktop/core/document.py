"""CanvasDocument: the picture being worked on.

An extent, an ordered list of layers (bottom first), the active layer, and
the generation frame: the rectangle that is sent to the model, which may
reach past the document to outpaint. Every change goes through a method
here, is recorded in `history` as one undo step, and is announced by an
event. A cached composite of the visible image layers is kept up to date
rectangle by rectangle, so a brush dab recomposites only what it touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import history as edits
from .brush import Brush, Stroke
from .control_layers import ControlSpec
from .errors import SfumatoError
from .events import Event
from .geometry import Bounds, Extent, Point
from .history import History
from .layers import ImageLayer, Layer, MaskLayer, composite, mask_union, rgba

MIN_FRAME, MAX_FRAME = 64, 4096
MAX_EXTENT = 16384
PROPERTIES = ("name", "visible", "opacity", "locked", "offset")


class LayerNotEditable(SfumatoError):
    """Painting on a locked or hidden layer, or merging what cannot merge."""


@dataclass(frozen=True)
class LayerData:
    """A still copy of one layer, for saving in another thread (pixels are never written again)."""

    kind: str
    name: str
    pixels: np.ndarray
    visible: bool = True
    opacity: float = 1.0
    locked: bool = False
    offset: Point = Point(0, 0)
    control: ControlSpec | None = None  # set on a control layer (desktop/core/control_layers.py)

    @property
    def bounds(self) -> Bounds:
        h, w = self.pixels.shape[:2]
        return Bounds(self.offset.x, self.offset.y, w, h)


@dataclass(frozen=True)
class DocumentSnapshot:
    extent: Extent
    frame: Bounds
    layers: tuple[LayerData, ...]  # bottom first
    active: int | None = None  # index into layers

    def composite(self) -> np.ndarray:
        return composite(self.layers, Bounds(0, 0, *self.extent))


GRID = 8  # the frame snaps to this grid when dragged (and to the picture's edges)


def clamp_frame(bounds: Bounds) -> Bounds:
    """`bounds` in whole pixels, its size kept to 64..4096: any such rectangle is a frame."""
    width = min(MAX_FRAME, max(MIN_FRAME, int(bounds.width)))
    height = min(MAX_FRAME, max(MIN_FRAME, int(bounds.height)))
    return Bounds(int(bounds.x), int(bounds.y), width, height)


def snap_frame(left: float, top: float, right: float, bottom: float, extent: Extent, hit: str = "move") -> Bounds:
    """Where a frame dragged to these edges lands.

    `hit` names the edges being dragged ("l", "tr", ...), or "move" for the
    whole frame, which keeps its size. A dragged edge lands on the 8-pixel grid
    or on the picture's edge, whichever is nearer, so the frame can cover a
    picture of any size; the far edges stay put.
    """
    xs, ys = (0, extent.width), (0, extent.height)
    if hit == "move":
        width, height = round(right - left), round(bottom - top)
        return clamp_frame(Bounds(_snap_span(left, width, xs), _snap_span(top, height, ys), width, height))
    left, right = (_snap(left, xs) if "l" in hit else left), (_snap(right, xs) if "r" in hit else right)
    top, bottom = (_snap(top, ys) if "t" in hit else top), (_snap(bottom, ys) if "b" in hit else bottom)
    width = min(MAX_FRAME, max(MIN_FRAME, round(right - left)))
    height = min(MAX_FRAME, max(MIN_FRAME, round(bottom - top)))
    x = round(right) - width if "l" in hit else round(left)
    y = round(bottom) - height if "t" in hit else round(top)
    return Bounds(x, y, width, height)


def _snap(value: float, edges: tuple[int, int]) -> int:
    """The nearest grid line, or picture edge where that is as near."""
    grid = round(value / GRID) * GRID
    edge = min(edges, key=lambda e: abs(e - value))
    return edge if abs(edge - value) <= abs(grid - value) else grid


def _snap_span(start: float, size: int, edges: tuple[int, int]) -> int:
    """Where a moved span of `size` starts: its start on the grid or an edge, or its end on an edge."""
    candidates = [round(start / GRID) * GRID, *edges, *(edge - size for edge in edges)]
    return min(candidates, key=lambda c: abs(c - start))


def default_frame(extent: Extent, preferred: Extent) -> Bounds:
    """The whole picture (at least the smallest frame) when a model can work at its size, else `preferred`."""
    if max(extent) <= 2048:
        return clamp_frame(Bounds(0, 0, *extent))
    return clamp_frame(Bounds(0, 0, *preferred))


class CanvasDocument:
    """Events:
    pixels_changed(Bounds): the composite or the masks changed in this rectangle (document coordinates).
    layers_changed(): a layer was added, removed, moved, or one of its properties changed.
    active_changed(Layer | None): another layer is active.
    frame_changed(Bounds): the generation frame moved or was resized.
    extent_changed(Extent, Point): the canvas was resized; Point is how far everything moved.
    history.changed(): undo or redo became possible or impossible, or the document was saved.
    """

    def __init__(self, extent: Extent, frame: Bounds | None = None, max_history_bytes: int | None = None):
        _check_extent(extent)
        self.extent = Extent(*extent)
        self.layers: list[Layer] = []
        self.active: Layer | None = None
        self.frame = _check_frame(frame or default_frame(self.extent, Extent(512, 512)))
        self.history = History() if max_history_bytes is None else History(max_history_bytes)
        self._session: StrokeSession | MoveSession | None = None  # a drag in progress
        self._composite = np.zeros((self.extent.height, self.extent.width, 4), np.uint8)
        self.pixels_changed = Event()
        self.layers_changed = Event()
        self.active_changed = Event()
        self.frame_changed = Event()
        self.extent_changed = Event()

    @classmethod
    def new(cls, extent: Extent, frame: Bounds | None = None) -> CanvasDocument:
        """An empty picture: one transparent layer to paint on and one mask."""
        doc = cls(extent, frame)
        doc._insert_layer(ImageLayer.blank(doc.extent, "Layer 1"), 0)
        doc._insert_layer(MaskLayer.blank(doc.extent, "Mask"), 1)
        doc._set_active(doc.layers[0])
        return doc

    @classmethod
    def from_image(cls, image: np.ndarray, name: str, preferred: Extent = Extent(512, 512)) -> CanvasDocument:
        """A document holding one picture (RGB or RGBA), with an empty mask above it."""
        h, w = image.shape[:2]
        doc = cls(Extent(w, h), default_frame(Extent(w, h), preferred))
        doc._insert_layer(ImageLayer(rgba(image).copy(), name), 0)
        doc._insert_layer(MaskLayer.blank(doc.extent, "Mask"), 1)
        doc._set_active(doc.layers[0])
        return doc

    # -- reading ---------------------------------------------------------------------

    @property
    def bounds(self) -> Bounds:
        return Bounds(0, 0, *self.extent)

    @property
    def modified(self) -> bool:
        return self.history.modified

    def composite(self, box: Bounds | None = None) -> np.ndarray:
        """The flattened visible image layers in `box` (default: all); transparent outside the canvas."""
        box = box or self.bounds
        out = np.zeros((box.height, box.width, 4), np.uint8)
        inside = box.clamp(self.extent)
        if not inside.is_empty:
            out[inside.translated(-box.x, -box.y).slices] = self._composite[inside.slices]
        return out

    def mask(self, box: Bounds | None = None) -> np.ndarray:
        """The visible masks combined in `box` (default: all), 255 = repaint."""
        return mask_union(self.layers, box or self.bounds)

    def pick(self, x: int, y: int) -> tuple[int, int, int, int]:
        if not 0 <= x < self.extent.width or not 0 <= y < self.extent.height:
            return (0, 0, 0, 0)
        return tuple(int(v) for v in self._composite[y, x])

    def index(self, layer: Layer) -> int:
        return next(i for i, candidate in enumerate(self.layers) if candidate is layer)

    def masks(self) -> list[MaskLayer]:
        return [layer for layer in self.layers if isinstance(layer, MaskLayer)]

    def target_mask(self) -> MaskLayer | None:
        """The mask the mask brush paints on: the active one, else the topmost."""
        if isinstance(self.active, MaskLayer):
            return self.active
        masks = self.masks()
        return masks[-1] if masks else None

    def snapshot(self) -> DocumentSnapshot:
        """A still picture of the document, cheap to take (copy-on-write), safe to save in a thread."""
        layers = tuple(
            LayerData(layer.kind, layer.name, layer.share(), layer.visible, layer.opacity, layer.locked, layer.offset,
                      layer.control)
            for layer in self.layers
        )
        active = self.index(self.active) if self.active is not None else None
        return DocumentSnapshot(self.extent, self.frame, layers, active)

    @classmethod
    def from_snapshot(cls, snapshot: DocumentSnapshot) -> CanvasDocument:
        doc = cls(snapshot.extent, snapshot.frame)
        for data in snapshot.layers:
            kind = MaskLayer if data.kind == "mask" else ImageLayer
            doc.layers.append(kind(np.array(data.pixels), data.name, visible=data.visible, opacity=data.opacity,
                                   locked=data.locked, offset=data.offset,
                                   control=data.control if kind is ImageLayer else None))
        doc._composite = np.array(composite(doc.layers, doc.bounds))  # once, not once per layer
        if doc.layers:
            index = snapshot.active if snapshot.active is not None and 0 <= snapshot.active < len(doc.layers) else 0
            doc.active = doc.layers[index]
        return doc

    # -- editing: each public method is one undo step ------------------------------------

    def set_active(self, layer: Layer | None) -> None:
        """Choose the layer tools work on (not an undo step, as in other painting programs)."""
        self.end_drag()
        if layer is not self.active:
            self._set_active(layer)

    def add_layer(self, layer: Layer, index: int | None = None, label: str = "Add layer") -> Layer:
        """Add `layer` at `index` (default: just above the active layer) and make it active."""
        self.end_drag()
        if index is None:
            index = self.index(self.active) + 1 if self.active is not None else len(self.layers)
        index = max(0, min(index, len(self.layers)))
        self._insert_layer(layer, index)
        self._set_active(layer)
        self.history.push(edits.InsertLayer(label, layer, index))
        return layer

    def new_layer(self, kind: str = "image") -> Layer:
        """A blank layer the size of the canvas, above the active one (masks go to the top)."""
        if kind == "mask":
            name = _unique_name(self, "Mask")
            return self.add_layer(MaskLayer.blank(self.extent, name), len(self.layers), "New mask layer")
        return self.add_layer(ImageLayer.blank(self.extent, _unique_name(self, "Layer")), label="New layer")

    def add_control_layer(self, spec: ControlSpec, name: str | None = None) -> ImageLayer:
        """A blank control layer the size of the canvas, above the active one (one undo step)."""
        layer = ImageLayer.blank(self.extent, name or _unique_name(self, spec.label), control=spec)
        return self.add_layer(layer, label="Add control layer")

    def set_control(self, layer: Layer, spec: ControlSpec | None) -> None:
        """Make an image layer a control layer, change its settings, or (None) make it a picture layer again.

        One undo step; nothing when unchanged.
        """
        self.end_drag()
        if spec is not None and not isinstance(layer, ImageLayer):
            raise LayerNotEditable(f"{layer.name} is a mask; only picture layers can be control layers.")
        if spec is not None and not isinstance(spec, ControlSpec):
            raise ValueError(f"a control layer needs a ControlSpec, got {type(spec).__name__}")
        old = layer.control
        if spec == old:
            return
        self._set_property(layer, "control", spec)
        self.history.push(edits.SetProperty("Control layer settings", layer, "control", old, spec))

    def set_layer_pixels(self, layer: Layer, pixels: np.ndarray, offset: Point = Point(0, 0),
                         label: str = "Replace layer") -> None:
        """Replace a layer's whole picture (a control layer made from the picture): one undo step."""
        self.end_drag()
        self._check_editable(layer)
        old = (layer.share(), layer.offset)
        self._replace_pixels(layer, pixels, Point(*offset))
        self.history.push(edits.ReplacePixels(label, layer, old, (layer.share(), layer.offset)))

    def remove_layer(self, layer: Layer) -> None:
        self.end_drag()
        index = self.index(layer)
        self._remove_layer(layer)
        self.history.push(edits.RemoveLayer("Delete layer", layer, index))

    def duplicate_layer(self, layer: Layer) -> Layer:
        return self.add_layer(layer.copy(f"{layer.name} copy"), self.index(layer) + 1, "Duplicate layer")

    def move_layer(self, layer: Layer, index: int) -> None:
        self.end_drag()
        old = self.index(layer)
        index = max(0, min(index, len(self.layers) - 1))
        if index != old:
            self._move_layer(layer, index)
            self.history.push(edits.MoveLayer(layer, old, index))

    def set_property(self, layer: Layer, name: str, value: object) -> None:
        """Rename, show or hide, set the opacity, lock or move a layer (validated; nothing if unchanged)."""
        self.end_drag()
        value = _valid_property(name, value)
        old = getattr(layer, name)
        if value == old:
            return
        self._set_property(layer, name, value)
        label = {"name": "Rename layer", "visible": "Show or hide layer", "opacity": "Layer opacity",
                 "locked": "Lock layer", "offset": "Move layer"}[name]
        self.history.push(edits.SetProperty(label, layer, name, old, value))

    def clear_layer(self, layer: Layer) -> None:
        self.end_drag()
        self._check_editable(layer)
        box = Bounds(0, 0, *layer.bounds.extent)
        before = layer.pixels.copy()
        if not before.any():
            return
        after = np.zeros_like(before)
        self._write(layer, [(box, after)])
        self.history.push(edits.PixelEdit("Clear layer", layer, [(box, before, after)]))

    def merge_down(self, layer: Layer) -> Layer:
        """Merge `layer` into the layer below it (image onto image, mask onto mask)."""
        self.end_drag()
        index = self.index(layer)
        if layer.control is not None or (index > 0 and self.layers[index - 1].control is not None):
            raise LayerNotEditable(f"{layer.name} cannot be merged: control layers guide generations and are not "
                                   "merged with the picture. Delete or hide them instead.")
        if index == 0 or type(self.layers[index - 1]) is not type(layer):
            kind = "mask" if isinstance(layer, MaskLayer) else "image"
            raise LayerNotEditable(f"{layer.name} can only be merged onto a {kind} layer directly below it.")
        below = self.layers[index - 1]
        self._check_editable(below)
        box = below.bounds.union(layer.bounds)
        if isinstance(layer, MaskLayer):  # a hidden mask adds nothing, as a hidden picture adds nothing
            merged = mask_union([_as_visible(below), *([_as_visible(layer)] if layer.visible else [])], box)
        else:  # both opacities are baked into the pixels; the merged layer is fully opaque
            upper = _as_visible(layer, layer.opacity if layer.visible else 0.0)
            merged = np.array(composite([_as_visible(below), upper], box))
        steps: list[edits.Edit] = [
            edits.ReplacePixels("Merge down", below, (below.pixels, below.offset), (merged, Point(box.x, box.y)))]
        self._replace_pixels(below, merged, Point(box.x, box.y))
        if below.opacity != 1.0:
            steps.append(edits.SetProperty("Merge down", below, "opacity", below.opacity, 1.0))
            self._set_property(below, "opacity", 1.0)
        self._remove_layer(layer)
        self._set_active(below)
        steps.append(edits.RemoveLayer("Merge down", layer, index))
        self.history.push(edits.Compound("Merge down", steps))
        return below

    def set_frame(self, frame: Bounds) -> None:
        self.end_drag()
        frame = _check_frame(frame)
        if frame != self.frame:
            old = self.frame
            self._set_frame(frame)
            self.history.push(edits.SetFrame(old, frame))

    def resize_canvas(self, left: int, top: int, right: int, bottom: int) -> None:
        """Grow (positive) or shrink (negative) each side. Layers keep their pixels past the edge."""
        self.end_drag()
        width, height = self.extent.width + left + right, self.extent.height + top + bottom
        new = Extent(width, height)
        _check_extent(new)
        shift = Point(left, top)
        if new == self.extent and shift == (0, 0):
            return
        old = self.extent
        self._resize(new, shift)
        # The frame moves with the pixels, so it keeps covering what it covered (at any position).
        self.history.push(edits.Resize(old, new, shift))

    def accept_result(self, image: np.ndarray, frame: Bounds, name: str) -> ImageLayer:
        """Add a generated picture as a new layer over `frame`, growing the canvas to hold it.

        One undo step. Returns the new layer.
        """
        self.end_drag()
        steps: list[edits.Edit] = []
        grown = self.bounds.union(frame)
        if grown != self.bounds:
            shift = Point(-min(frame.x, 0), -min(frame.y, 0))
            old = self.extent
            _check_extent(grown.extent)
            self._resize(grown.extent, shift)
            steps.append(edits.Resize(old, grown.extent, shift))
            frame = frame.translated(*shift)
        layer = ImageLayer(rgba(image).copy(), name, offset=Point(frame.x, frame.y))
        index = self._result_index()
        self._insert_layer(layer, index)
        self._set_active(layer)
        steps.append(edits.InsertLayer("Accept result", layer, index))
        self.history.push(edits.Compound("Accept result", steps))
        return layer

    def accept_upscale(self, image: np.ndarray, name: str) -> ImageLayer:
        """Make the canvas `image`'s size with every layer scaled to match, and add `image` as a new layer on top.

        One undo step. The layers are scaled (not cropped) so masks and paint stay over what they covered, and
        the upscaled picture is a layer of its own, to compare with the scaled ones below or to hide (as Krita
        AI Diffusion's upscale does). The generation frame keeps its size: it is what the model works at.
        """
        self.end_drag()
        new = Extent(int(image.shape[1]), int(image.shape[0]))
        _check_extent(new)
        old = self.extent
        fx, fy = new.width / old.width, new.height / old.height
        steps: list[edits.Edit] = [edits.Resize(old, new, Point(0, 0))]
        for layer in self.layers:
            scaled = (_scaled(layer, fx, fy), Point(round(layer.offset.x * fx), round(layer.offset.y * fy)))
            steps.append(edits.ReplacePixels("Upscale", layer, (layer.share(), layer.offset), scaled))
        layer = ImageLayer(rgba(image).copy(), name)
        index = self._result_index()
        steps.append(edits.InsertLayer("Upscale", layer, index))
        for step in steps:
            step.redo(self)
        self._set_active(layer)
        self.history.push(edits.Compound("Upscale", steps))
        return layer

    def begin_stroke(self, layer: Layer, brush: Brush) -> StrokeSession:
        self.end_drag()
        self._check_editable(layer)
        self._session = StrokeSession(self, layer, brush)
        return self._session

    def begin_move(self, layer: Layer) -> MoveSession:
        self.end_drag()
        if layer.locked:
            raise LayerNotEditable(f"{layer.name} is locked. Unlock it in the Layers panel to move it.")
        self._session = MoveSession(self, layer)
        return self._session

    def undo(self) -> str | None:
        self.end_drag()
        edit = self.history.undo(self)
        return edit.label if edit else None

    def redo(self) -> str | None:
        self.end_drag()
        edit = self.history.redo(self)
        return edit.label if edit else None

    def end_drag(self) -> None:
        """Finish a stroke or layer move still in progress, as if the button were released.

        Every other edit calls this first, so an undo or an accepted result in
        the middle of a drag never interleaves with it; the rest of the drag
        then changes nothing.
        """
        session, self._session = self._session, None
        if session is not None:
            session.finish()

    # -- primitives: change state and announce it; the history calls these ---------------------

    def _insert_layer(self, layer: Layer, index: int) -> None:
        self.layers.insert(index, layer)
        self.layers_changed.emit()
        self._pixels_changed(layer, layer.bounds)

    def _remove_layer(self, layer: Layer) -> None:
        index = self.index(layer)
        del self.layers[index]
        if layer is self.active:  # the layer below takes its place, as in other painting programs (not the mask above)
            self._set_active(self.layers[max(index - 1, 0)] if self.layers else None)
        self.layers_changed.emit()
        self._pixels_changed(layer, layer.bounds)

    def _move_layer(self, layer: Layer, index: int) -> None:
        self.layers.remove(layer)
        self.layers.insert(index, layer)
        self.layers_changed.emit()
        self._pixels_changed(layer, layer.bounds)

    def _set_property(self, layer: Layer, name: str, value: object) -> None:
        before = layer.bounds
        setattr(layer, name, value)
        self.layers_changed.emit()
        if name in ("visible", "opacity", "offset", "control"):
            self._pixels_changed(layer, before.union(layer.bounds), force=True)

    def _replace_pixels(self, layer: Layer, pixels: np.ndarray, offset: Point) -> None:
        before = layer.bounds
        layer.replace_pixels(pixels)
        layer.offset = Point(*offset)
        self._pixels_changed(layer, before.union(layer.bounds))

    def _write(self, layer: Layer, patches: list[tuple[Bounds, np.ndarray]]) -> None:
        pixels = layer.writable()
        for box, values in patches:
            pixels[box.slices] = values
        # Recomposite patch by patch: the union of a long diagonal stroke's tiles is most of the canvas.
        for box, _ in patches:
            self._pixels_changed(layer, box.translated(*layer.offset))

    def _set_frame(self, frame: Bounds) -> None:
        self.frame = frame
        self.frame_changed.emit(frame)

    def _set_active(self, layer: Layer | None) -> None:
        self.active = layer
        self.active_changed.emit(layer)

    def _resize(self, extent: Extent, shift: Point) -> None:
        self.extent = Extent(*extent)
        for layer in self.layers:
            layer.offset = Point(layer.offset.x + shift.x, layer.offset.y + shift.y)
        self.frame = self.frame.translated(*shift)
        self._composite = np.array(composite(self.layers, self.bounds))
        self.extent_changed.emit(self.extent, shift)
        self.frame_changed.emit(self.frame)
        self.pixels_changed.emit(self.bounds)

    def _pixels_changed(self, layer: Layer, box: Bounds, force: bool = False) -> None:
        """Recomposite `box` (for a visible image layer) and announce it."""
        if not (layer.visible or force):
            return
        box = box.clamp(self.extent)
        if box.is_empty:
            return
        if isinstance(layer, ImageLayer):
            self._composite[box.slices] = composite(self.layers, box)
        self.pixels_changed.emit(box)

    # -- helpers --------------------------------------------------------------------------------

    def _check_editable(self, layer: Layer) -> None:
        if layer.locked:
            raise LayerNotEditable(f"{layer.name} is locked. Unlock it in the Layers panel to change it.")
        if not layer.visible:
            raise LayerNotEditable(f"{layer.name} is hidden. Show it in the Layers panel to paint on it.")

    def _result_index(self) -> int:
        """Results go above the topmost image layer (masks stay on top)."""
        images = [i for i, layer in enumerate(self.layers) if isinstance(layer, ImageLayer)]
        return images[-1] + 1 if images else 0


class _DragSession:
    """What a stroke and a layer move share: they end once, by release or by another edit."""

    doc: CanvasDocument
    done = False

    def _close(self) -> bool:
        """Mark the drag finished; False when it already was."""
        if self.done:
            return False
        self.done = True
        if self.doc._session is self:
            self.doc._session = None
        return True


class StrokeSession(_DragSession):
    """A brush stroke on the document: points in document coordinates, one undo step at the end.

    A layer smaller than the canvas (a generated result, or a moved layer) is
    first grown to cover it, so paint lands wherever the canvas is.
    """

    def __init__(self, doc: CanvasDocument, layer: Layer, brush: Brush):
        self.doc, self.layer = doc, layer
        self._grow: edits.ReplacePixels | None = None
        covered = layer.bounds.union(doc.bounds)
        if covered.width * covered.height > 4 * (doc.extent.area + layer.bounds.extent.area):
            raise LayerNotEditable(f"{layer.name} lies far outside the canvas. Move it back (Move tool, V) "
                                   "to paint on it.")
        if covered != layer.bounds:
            old = (layer.pixels, layer.offset)
            grown = np.zeros((covered.height, covered.width, *layer.pixels.shape[2:]), np.uint8)
            grown[layer.bounds.translated(-covered.x, -covered.y).slices] = layer.pixels
            layer.replace_pixels(grown)
            layer.offset = Point(covered.x, covered.y)
            self._grow = edits.ReplacePixels("Brush stroke", layer, old, (grown, layer.offset))
        label = ("Erase mask" if brush.erase else "Paint mask") if isinstance(layer, MaskLayer) else (
            "Erase" if brush.erase else "Brush stroke")
        self._stroke = Stroke(layer, brush, label)

    def to(self, x: float, y: float, pressure: float = 1.0) -> Bounds:
        """Continue the stroke to document point (x, y); returns the document rectangle that changed."""
        if self.done:
            return Bounds(0, 0, 0, 0)
        ox, oy = self.layer.offset
        dirty = self._stroke.to(x - ox, y - oy, pressure)
        if dirty.is_empty:
            return dirty
        box = dirty.translated(ox, oy)
        self.doc._pixels_changed(self.layer, box)
        return box

    def finish(self) -> None:
        if not self._close():
            return
        edit = self._stroke.edit()
        if edit is None and self._grow is None:
            return
        parts = [e for e in (self._grow, edit) if e is not None]
        self.doc.history.push(parts[0] if len(parts) == 1 else edits.Compound(parts[-1].label, parts))


class MoveSession(_DragSession):
    """Dragging a layer: the offset follows the pointer, one undo step at the end."""

    def __init__(self, doc: CanvasDocument, layer: Layer):
        self.doc, self.layer, self.start = doc, layer, layer.offset

    def to(self, dx: int, dy: int) -> None:
        if self.done:
            return
        offset = Point(self.start.x + int(dx), self.start.y + int(dy))
        if offset != self.layer.offset:
            self.doc._set_property(self.layer, "offset", offset)

    def finish(self) -> None:
        if self._close() and self.layer.offset != self.start:
            self.doc.history.push(edits.SetProperty("Move layer", self.layer, "offset", self.start, self.layer.offset))


def _as_visible(layer: Layer, opacity: float | None = None) -> LayerData:
    return LayerData(layer.kind, layer.name, layer.pixels, True,
                     layer.opacity if opacity is None else opacity, False, layer.offset)


def _unique_name(doc: CanvasDocument, stem: str) -> str:
    names = {layer.name for layer in doc.layers}
    number = 1
    while f"{stem} {number}" in names:
        number += 1
    return f"{stem} {number}"


def _scaled(layer: Layer, fx: float, fy: float) -> np.ndarray:
    """A layer's pixels scaled by (fx, fy): Lanczos for pictures (Pillow weighs colours by alpha), bilinear for masks."""
    h, w = layer.pixels.shape[:2]
    size = (max(1, round(w * fx)), max(1, round(h * fy)))
    resample = Image.Resampling.LANCZOS if isinstance(layer, ImageLayer) else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(layer.pixels).resize(size, resample)).copy()


def _check_extent(extent: Extent) -> None:
    if not (1 <= extent[0] <= MAX_EXTENT and 1 <= extent[1] <= MAX_EXTENT):
        raise ValueError(f"a canvas can be 1 to {MAX_EXTENT} pixels wide and high, not {extent[0]}x{extent[1]}")


def _check_frame(frame: Bounds) -> Bounds:
    frame = Bounds(*(int(v) for v in frame))
    if not (MIN_FRAME <= frame.width <= MAX_FRAME and MIN_FRAME <= frame.height <= MAX_FRAME):
        raise ValueError(f"the frame must be {MIN_FRAME} to {MAX_FRAME} pixels wide and high, got {frame}")
    return frame


def _valid_property(name: str, value: object) -> object:
    if name not in PROPERTIES:
        raise ValueError(f"layers have no property {name!r}")
    if name == "name":
        text = " ".join(str(value).split())
        if not text:
            raise ValueError("a layer needs a name")
        return text[:200]
    if name in ("visible", "locked"):
        return bool(value)
    if name == "opacity":
        return min(1.0, max(0.0, float(value)))
    return Point(int(value[0]), int(value[1]))
