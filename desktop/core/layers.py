"""The layers of a canvas document: ImageLayer (RGBA) and MaskLayer (8-bit).

A layer owns a pixel array of any size placed at `offset` in document
coordinates, so a generated result is a layer the size of its frame, and
moving a layer is only a change of offset. Change layers through
CanvasDocument, which records undo and tells the view; the attributes here
are read freely.

Snapshots are copy-on-write: `share()` hands out the current array and the
next edit works on a copy, so an autosave can encode a still picture of the
document in another thread while the user keeps painting.
"""

from __future__ import annotations

import itertools

import numpy as np

from .geometry import Bounds, Extent, Point

_ids = itertools.count(1)


class Layer:
    kind = "layer"
    channels: int = 0  # 4 for RGBA, 0 for a plain HxW array

    def __init__(
        self,
        pixels: np.ndarray,
        name: str,
        *,
        visible: bool = True,
        opacity: float = 1.0,
        locked: bool = False,
        offset: Point = Point(0, 0),
        control=None,
    ):
        self._check(pixels)
        self.id = next(_ids)
        self._pixels = pixels
        self._shared = False
        self.name = name
        self.visible = visible
        self.opacity = float(opacity)
        self.locked = locked
        self.offset = Point(*offset)
        self.control = control  # a ControlSpec makes it a control layer (desktop/core/control_layers.py)

    @classmethod
    def _check(cls, pixels: np.ndarray) -> None:
        shape_ok = pixels.ndim == 3 and pixels.shape[2] == cls.channels if cls.channels else pixels.ndim == 2
        if pixels.dtype != np.uint8 or not shape_ok or min(pixels.shape[:2]) < 1:
            wanted = f"HxWx{cls.channels}" if cls.channels else "HxW"
            raise ValueError(f"a {cls.kind} layer needs {wanted} uint8 pixels, got {pixels.shape} {pixels.dtype}")

    @classmethod
    def blank(cls, extent: Extent, name: str, **properties) -> Layer:
        shape = (extent.height, extent.width, cls.channels) if cls.channels else (extent.height, extent.width)
        return cls(np.zeros(shape, np.uint8), name, **properties)

    @property
    def pixels(self) -> np.ndarray:
        """The current pixels; read them, but write through `writable()`."""
        return self._pixels

    @property
    def bounds(self) -> Bounds:
        h, w = self._pixels.shape[:2]
        return Bounds(self.offset.x, self.offset.y, w, h)

    @property
    def nbytes(self) -> int:
        return self._pixels.nbytes

    def share(self) -> np.ndarray:
        """The pixels as they are now, never written again (the layer copies before its next edit)."""
        self._shared = True
        return self._pixels

    def writable(self) -> np.ndarray:
        if self._shared:
            self._pixels = self._pixels.copy()
            self._shared = False
        return self._pixels

    def replace_pixels(self, pixels: np.ndarray) -> None:
        """Take `pixels` as they are; the array may be kept elsewhere (an undo step), so the next edit copies it."""
        self._check(pixels)
        self._pixels = pixels
        self._shared = True

    def copy(self, name: str | None = None) -> Layer:
        return type(self)(
            self._pixels.copy(),
            self.name if name is None else name,
            visible=self.visible,
            opacity=self.opacity,
            locked=self.locked,
            offset=self.offset,
            control=self.control,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.bounds}>"


class ImageLayer(Layer):
    """RGBA pixels, straight (not premultiplied) alpha."""

    kind = "image"
    channels = 4


class MaskLayer(Layer):
    """Where to repaint: 255 paints, 0 keeps. Drawn as a translucent overlay, never composited."""

    kind = "mask"
    channels = 0


def rgba(image: np.ndarray) -> np.ndarray:
    """An HxWx3 or HxWx4 uint8 image as HxWx4 (opaque where it had no alpha)."""
    if image.shape[2] == 4:
        return np.ascontiguousarray(image)
    alpha = np.full(image.shape[:2] + (1,), 255, np.uint8)
    return np.concatenate([image, alpha], axis=2)


def composite(layers, box: Bounds) -> np.ndarray:
    """The visible image layers (bottom first) flattened over transparency: box.height x box.width x 4.

    Control layers (those with a `control` spec) guide generations and are not part of the picture: left out.

    Straight-alpha "over" (Pillow's alpha_composite, in C); an opaque pixel
    on top comes out exactly as it is.
    """
    from PIL import Image

    out = Image.new("RGBA", (max(box.width, 0), max(box.height, 0)))
    for layer in layers:
        if layer.kind != "image" or not layer.visible or layer.opacity <= 0 \
                or getattr(layer, "control", None) is not None:
            continue
        part = layer.bounds.intersect(box)
        if part.is_empty:
            continue
        source = layer.pixels[part.translated(-layer.offset.x, -layer.offset.y).slices]
        if layer.opacity < 1:
            source = source.copy()
            source[..., 3] = (source[..., 3] * np.float32(layer.opacity) + 0.5).astype(np.uint8)
        out.alpha_composite(Image.fromarray(np.ascontiguousarray(source)), dest=(part.x - box.x, part.y - box.y))
    return np.asarray(out)  # read-only; copy to change it


def mask_union(layers, box: Bounds) -> np.ndarray:
    """The visible mask layers combined (the largest value wins): box.height x box.width uint8."""
    out = np.zeros((max(box.height, 0), max(box.width, 0)), np.uint8)
    for layer in layers:
        if layer.kind != "mask" or not layer.visible:
            continue
        part = layer.bounds.intersect(box)
        if part.is_empty:
            continue
        source = layer.pixels[part.translated(-layer.offset.x, -layer.offset.y).slices]
        target = out[part.translated(-box.x, -box.y).slices]
        np.maximum(target, source, out=target)
    return out
