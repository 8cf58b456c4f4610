"""Round brush strokes on image and mask layers.

A stroke lays dabs along the pointer's path. Each dab raises a per-stroke
coverage (the maximum of the dabs, never their sum), and the layer's pixels
are recomputed from the pixels before the stroke and that coverage. So a
stroke at 50% opacity is 50% everywhere, however often it crosses itself,
and the "before" tiles it keeps are exactly what undo needs.

A pen's pressure scales the dab's size (from 10% at the lightest touch to the
full size), as Krita's and Photoshop's default brushes do; a mouse presses 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import Bounds
from .history import PixelEdit
from .layers import Layer, MaskLayer

TILE = 128
MAX_SIZE = 1000
LIGHTEST = 0.1  # the size of a dab at the lightest pressure, as a share of the brush's size


@dataclass(frozen=True)
class Brush:
    size: float = 40.0  # diameter in pixels
    hardness: float = 0.7  # 1: a hard edge; 0: soft all the way from the centre
    opacity: float = 1.0
    colour: tuple[int, int, int] = (0, 0, 0)
    erase: bool = False

    def spacing_at(self, pressure: float) -> float:
        return max(0.5, self.size_at(pressure) * 0.1)

    def size_at(self, pressure: float) -> float:
        return self.size * (LIGHTEST + (1.0 - LIGHTEST) * min(max(pressure, 0.0), 1.0))


def dab(brush: Brush, x: float, y: float, pressure: float = 1.0) -> tuple[Bounds, np.ndarray]:
    """The alpha (0..1, float32) of one dab centred at (x, y), and where it lies."""
    radius = max(0.5, brush.size_at(pressure) / 2)
    x0, y0 = math.floor(x - radius), math.floor(y - radius)
    x1, y1 = math.ceil(x + radius) + 1, math.ceil(y + radius) + 1
    cols = np.arange(x0, x1, dtype=np.float32) + 0.5 - x
    rows = np.arange(y0, y1, dtype=np.float32) + 0.5 - y
    distance = np.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2)
    edge = np.clip(radius - distance + 0.5, 0.0, 1.0)  # antialiased rim
    solid = radius * min(max(brush.hardness, 0.0), 1.0)
    if solid < radius:  # a band of any width, so the edge changes smoothly as pressure shrinks the dab
        t = np.clip((distance - solid) / (radius - solid), 0.0, 1.0)
        edge = np.minimum(edge, 1.0 - t * t * (3.0 - 2.0 * t))  # smoothstep falloff
    return Bounds(x0, y0, x1 - x0, y1 - y0), edge.astype(np.float32)


class Stroke:
    """One press-drag-release of a brush on one layer, in layer coordinates."""

    def __init__(self, layer: Layer, brush: Brush, label: str = "Brush stroke"):
        self.layer, self.brush, self.label = layer, brush, label
        self._before: dict[tuple[int, int], np.ndarray] = {}
        self._cover: dict[tuple[int, int], np.ndarray] = {}
        self._last: tuple[float, float, float] | None = None  # x, y, pressure
        self._carry = 0.0  # distance walked since the last dab

    def to(self, x: float, y: float, pressure: float = 1.0) -> Bounds:
        """Extend the stroke to (x, y) at `pressure` (0..1); returns the rectangle of the layer that changed."""
        dabs = []
        if self._last is None:
            dabs.append((x, y, pressure))
        else:
            lx, ly, lp = self._last
            length = math.hypot(x - lx, y - ly)
            spacing = self.brush.spacing_at(min(lp, pressure))  # close enough for the thinner end
            walked = spacing - self._carry
            while walked <= length:
                t = walked / length
                dabs.append((lx + (x - lx) * t, ly + (y - ly) * t, lp + (pressure - lp) * t))
                walked += spacing
            self._carry = length - (walked - spacing)
        self._last = (x, y, pressure)
        extent = self.layer.bounds.extent
        dirty = Bounds(0, 0, 0, 0)
        for cx, cy, cp in dabs:
            box, alpha = dab(self.brush, cx, cy, cp)
            clipped = box.clamp(extent)
            if clipped.is_empty:
                continue
            inside = alpha[clipped.y - box.y : clipped.bottom - box.y, clipped.x - box.x : clipped.right - box.x]
            self._cover_max(clipped, inside)
            dirty = dirty.union(clipped)
        if not dirty.is_empty:
            self._render(dirty)
        return dirty

    def edit(self) -> PixelEdit | None:
        """The finished stroke as one undo step (None when it touched nothing)."""
        if not self._before:
            return None
        pixels = self.layer.pixels
        patches = []
        for key, before in self._before.items():
            box = self._tile(key)
            patches.append((box, before, pixels[box.slices].copy()))
        return PixelEdit(self.label, self.layer, patches)

    # -- tiles ---------------------------------------------------------------------

    def _tile(self, key: tuple[int, int]) -> Bounds:
        ty, tx = key
        return Bounds(tx * TILE, ty * TILE, TILE, TILE).clamp(self.layer.bounds.extent)

    def _tiles(self, box: Bounds):
        for ty in range(box.y // TILE, (box.bottom - 1) // TILE + 1):
            for tx in range(box.x // TILE, (box.right - 1) // TILE + 1):
                key = (ty, tx)
                tile = self._tile(key)
                if key not in self._before:
                    self._before[key] = self.layer.pixels[tile.slices].copy()
                    self._cover[key] = np.zeros((tile.height, tile.width), np.float32)
                yield key, tile

    def _cover_max(self, box: Bounds, alpha: np.ndarray) -> None:
        for key, tile in self._tiles(box):
            part = tile.intersect(box)
            cover = self._cover[key][part.y - tile.y : part.bottom - tile.y, part.x - tile.x : part.right - tile.x]
            np.maximum(cover, alpha[part.y - box.y : part.bottom - box.y, part.x - box.x : part.right - box.x], out=cover)

    def _render(self, box: Bounds) -> None:
        pixels = self.layer.writable()
        mask = isinstance(self.layer, MaskLayer)
        for key, tile in self._tiles(box):
            part = tile.intersect(box)
            local = (slice(part.y - tile.y, part.bottom - tile.y), slice(part.x - tile.x, part.right - tile.x))
            a = self._cover[key][local] * self.brush.opacity
            before = self._before[key][local]
            pixels[part.slices] = _mask_blend(before, a, self.brush.erase) if mask else _rgba_blend(before, a, self.brush)


def _mask_blend(before: np.ndarray, a: np.ndarray, erase: bool) -> np.ndarray:
    b = before.astype(np.float32)
    out = b * (1.0 - a) if erase else b + (255.0 - b) * a
    return (out + 0.5).astype(np.uint8)


def _rgba_blend(before: np.ndarray, a: np.ndarray, brush: Brush) -> np.ndarray:
    """Straight-alpha "over" of the brush colour (or erasing alpha) with coverage a."""
    base_alpha = before[..., 3].astype(np.float32) / 255.0
    if brush.erase:
        out = before.copy()
        out[..., 3] = (base_alpha * (1.0 - a) * 255.0 + 0.5).astype(np.uint8)
        return out
    out_alpha = a + base_alpha * (1.0 - a)
    colour = np.asarray(brush.colour, np.float32)
    keep = (base_alpha * (1.0 - a))[..., None]
    rgb = (colour * a[..., None] + before[..., :3].astype(np.float32) * keep) / np.maximum(out_alpha, 1e-6)[..., None]
    out = np.empty_like(before)
    out[..., :3] = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    out[..., 3] = (out_alpha * 255.0 + 0.5).astype(np.uint8)
    return out
