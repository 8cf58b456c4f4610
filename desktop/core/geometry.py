"""Small immutable geometry types: Extent, Point, Bounds, Margins."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def multiple_of(value: int, n: int) -> int:
    """Round up to the next multiple of n."""
    return -(-int(value) // n) * n


def multiple_of_8(value: int) -> int:
    """Round up to the next multiple of 8 (latent cells are 8x8 pixels)."""
    return multiple_of(value, 8)


class Extent(NamedTuple):
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height

    def multiple_of(self, n: int) -> Extent:
        return Extent(multiple_of(self.width, n), multiple_of(self.height, n))

    def multiple_of_8(self) -> Extent:
        return self.multiple_of(8)

    def scaled_to_fit(self, target: Extent) -> Extent:
        """The largest extent with this aspect ratio that fits inside target."""
        scale = min(target.width / self.width, target.height / self.height)
        return Extent(max(1, round(self.width * scale)), max(1, round(self.height * scale)))


class Point(NamedTuple):
    x: int
    y: int


class Margins(NamedTuple):
    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @property
    def is_zero(self) -> bool:
        return not any(self)

    @staticmethod
    def parse(text: str) -> Margins:
        """Parse "L,T,R,B" (or a single number for all four sides)."""
        parts = [int(p) for p in text.replace(" ", "").split(",") if p]
        if len(parts) == 1:
            parts *= 4
        if len(parts) != 4 or any(p < 0 for p in parts):
            raise ValueError(f"expected four non-negative numbers L,T,R,B, got {text!r}")
        return Margins(*parts)


class Bounds(NamedTuple):
    x: int
    y: int
    width: int
    height: int

    @property
    def extent(self) -> Extent:
        return Extent(self.width, self.height)

    @property
    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def slices(self) -> tuple[slice, slice]:
        """Index a numpy image (rows, columns) with these bounds."""
        return slice(self.y, self.bottom), slice(self.x, self.right)

    def pad(self, amount: int) -> Bounds:
        return Bounds(self.x - amount, self.y - amount, self.width + 2 * amount, self.height + 2 * amount)

    def clamp(self, extent: Extent) -> Bounds:
        return self.intersect(Bounds(0, 0, extent.width, extent.height))

    def intersect(self, other: Bounds) -> Bounds:
        """The overlap of two rectangles (empty, with zero size, when they do not meet)."""
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        return Bounds(x0, y0, max(0, min(self.right, other.right) - x0), max(0, min(self.bottom, other.bottom) - y0))

    def translated(self, dx: int, dy: int) -> Bounds:
        return Bounds(self.x + dx, self.y + dy, self.width, self.height)

    def contains(self, other: Bounds) -> bool:
        return self.x <= other.x and self.y <= other.y and other.right <= self.right and other.bottom <= self.bottom

    def union(self, other: Bounds) -> Bounds:
        if self.is_empty:
            return other
        if other.is_empty:
            return self
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1, y1 = max(self.right, other.right), max(self.bottom, other.bottom)
        return Bounds(x0, y0, x1 - x0, y1 - y0)

    def expand_to_aspect(self, aspect: float, limit: Extent) -> Bounds:
        """Grow (never shrink) around the centre to width/height == aspect, kept inside limit."""
        width, height = self.width, self.height
        if width / height < aspect:
            width = min(limit.width, round(height * aspect))
        else:
            height = min(limit.height, round(width / aspect))
        x = min(max(0, self.x - (width - self.width) // 2), limit.width - width)
        y = min(max(0, self.y - (height - self.height) // 2), limit.height - height)
        return Bounds(x, y, width, height)

    @staticmethod
    def of_mask(mask: np.ndarray) -> Bounds:
        """Bounding box of the non-zero pixels of a 2-D array (empty when none)."""
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            return Bounds(0, 0, 0, 0)
        return Bounds(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def only_masked_area(mask: np.ndarray, reach: int, target: Extent) -> Bounds:
    """The area "only masked" inpainting works on (and its preview is shown in).

    The mask's bounding box grown by `reach` (mask blur + padding), kept in the
    image, then widened to the aspect ratio of the generation size so the crop
    is not distorted when scaled.
    """
    extent = Extent(mask.shape[1], mask.shape[0])
    box = Bounds.of_mask(mask).pad(reach).clamp(extent)
    return box.expand_to_aspect(target.width / target.height, extent)
