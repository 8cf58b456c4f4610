"""Pixel work around inpainting and outpainting (numpy only, no model).

Masks here are HxW; uint8 masks use 255 for "repaint", float masks 0..1.
The rule the user relies on: after `paste_back`, every pixel whose blurred
mask is 0 -- that is, farther than `mask_blur` pixels from anything painted --
is exactly the original pixel.
"""

from __future__ import annotations

import numpy as np

from desktop.core.geometry import Margins


def blur_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Feather a uint8 mask into float32 0..1 with a Gaussian of half-width `radius`.

    The kernel is cut at `radius`, so the blur never reaches farther than
    `radius` pixels from the painted area.
    """
    soft = mask.astype(np.float32) / 255.0
    if radius <= 0:
        return soft
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets / max(radius / 2.0, 0.5)) ** 2)
    kernel /= kernel.sum()
    soft = _convolve_axis(soft, kernel, axis=0)
    soft = _convolve_axis(soft, kernel, axis=1)
    soft[soft < 1e-4] = 0.0
    return np.clip(soft, 0.0, 1.0)


def _convolve_axis(image: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    radius = len(kernel) // 2
    pad = [(0, 0)] * image.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(image, pad, mode="edge")
    out = np.zeros_like(image)
    length = image.shape[axis]
    for i, weight in enumerate(kernel):
        out += weight * np.take(padded, np.arange(i, i + length), axis=axis)
    return out


def _box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window via cumulative sums (edges clamp)."""
    out = image
    for axis in (0, 1):
        pad = [(0, 0)] * image.ndim
        pad[axis] = (radius + 1, radius)
        cumulative = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float64)
        n = out.shape[axis]
        upper = np.take(cumulative, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lower = np.take(cumulative, np.arange(0, n), axis=axis)
        out = ((upper - lower) / (2 * radius + 1)).astype(np.float32)
    return out


def fill_masked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill the masked area with colours spread in from its surroundings.

    Normalised convolution at decreasing scales: big blurs give the far
    inside of a hole the average surrounding colour, small ones keep the
    colours near its edge. RGB uint8 in, RGB uint8 out.
    """
    known = (mask < 128).astype(np.float32)
    if known.all():
        return image.copy()
    if not known.any():
        return np.full_like(image, 127)
    pixels = image[..., :3].astype(np.float32)
    filled = pixels.copy()
    hole = known == 0
    for radius in (256, 64, 16, 4, 1):
        weight = _box_blur(known, radius)
        colour = _box_blur(pixels * known[..., None], radius)
        ok = weight > 1e-3
        estimate = colour[ok] / weight[ok][:, None]
        target = hole & ok
        filled[target] = estimate[target[ok]]
    return np.clip(filled + 0.5, 0, 255).astype(np.uint8)


def noise_masked(image: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """Replace the masked area by noise around its fill colour ("latent noise").

    The masked area then carries no trace of what was there: at any strength
    the model paints it from scratch, while the colours stay plausible.
    """
    filled = fill_masked(image, mask).astype(np.float32)
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 64.0, size=filled.shape).astype(np.float32)
    hole = (mask >= 128)[..., None]
    return np.clip(np.where(hole, filled + noise, filled), 0, 255).astype(np.uint8)


def paste_back(original: np.ndarray, generated: np.ndarray, soft_mask: np.ndarray) -> np.ndarray:
    """Blend generated into original with a 0..1 mask; mask 0 keeps original exactly."""
    weight = soft_mask[..., None]
    blended = original.astype(np.float32) * (1.0 - weight) + generated.astype(np.float32) * weight
    out = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    keep = soft_mask <= 0.0
    out[keep] = original[keep]
    return out


def outpaint_canvas(
    image: np.ndarray, margins: Margins, feather: int, painted: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grow an image for outpainting.

    Returns (filled RGB image, uint8 mask to generate with, float soft mask
    to paste back with). The result is image + margins (generate.py takes
    it to the 8-pixel grid and back). Empty area (the margins, plus any
    pixel of an RGBA input with alpha < 255, plus the `painted` mask of the
    image's size where it is 128 or more) is filled from the edges and
    masked; the mask reaches `feather` pixels into the original with a soft
    gradient so the seam blends.
    """
    h, w = image.shape[:2]
    width, height = w + margins.left + margins.right, h + margins.top + margins.bottom
    rgb = np.zeros((height, width, 3), np.uint8)
    empty = np.full((height, width), 255, np.uint8)
    rows, cols = slice(margins.top, margins.top + h), slice(margins.left, margins.left + w)
    rgb[rows, cols] = image[..., :3]
    empty[rows, cols] = 0 if image.shape[2] == 3 else np.where(image[..., 3] < 255, 255, 0)
    if painted is not None:
        empty[rows, cols] = np.maximum(empty[rows, cols], np.where(painted >= 128, 255, 0).astype(np.uint8))
    soft = np.maximum(empty.astype(np.float32) / 255.0, blur_mask(empty, feather))
    mask = (soft * 255 + 0.5).astype(np.uint8)
    return fill_masked(rgb, empty), mask, soft


def pad_to_grid(image: np.ndarray, multiple: int = 8) -> np.ndarray:
    """Grow an image (HxW or HxWxC) on the right and bottom to the next multiple of 8 (or `multiple`), the
    latent grid.

    Pictures mirror their edge and masks repeat theirs, so the model sees the
    picture carry on past its edge; the top-left h x w of the result is `image`.
    """
    h, w = image.shape[:2]
    pad = [(0, -h % multiple), (0, -w % multiple)] + [(0, 0)] * (image.ndim - 2)
    mirror = image.ndim == 3 and min(h, w) > 8
    return np.pad(image, pad, mode="reflect" if mirror else "edge")
