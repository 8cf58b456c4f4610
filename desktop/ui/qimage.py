"""The only place that converts between numpy arrays and QImage.

A QImage made from a numpy buffer borrows it, so every conversion copies at
the boundary. Arrays are HxWx3 RGB or HxWx4 RGBA (straight alpha), uint8.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage


def to_qimage(array: np.ndarray) -> QImage:
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected HxWx3 or HxWx4 uint8, got {array.shape} {array.dtype}")
    array = np.ascontiguousarray(array)
    h, w, channels = array.shape
    fmt = QImage.Format.Format_RGB888 if channels == 3 else QImage.Format.Format_RGBA8888
    return QImage(array.data, w, h, w * channels, fmt).copy()


def from_qimage(image: QImage, alpha: bool = True) -> np.ndarray:
    fmt = QImage.Format.Format_RGBA8888 if alpha else QImage.Format.Format_RGB888
    channels = 4 if alpha else 3
    converted = image.convertToFormat(fmt)
    h, w = converted.height(), converted.width()
    rows = np.frombuffer(converted.constBits(), np.uint8, count=converted.bytesPerLine() * h)
    return rows.reshape(h, converted.bytesPerLine())[:, : w * channels].reshape(h, w, channels).copy()


def overlay_qimage(mask: np.ndarray, rgb: tuple[int, int, int], opacity: float) -> QImage:
    """A mask (HxW uint8) as a translucent colour overlay: alpha = mask x opacity."""
    h, w = mask.shape
    pixels = np.empty((h, w, 4), np.uint8)
    pixels[..., :3] = rgb
    pixels[..., 3] = (mask.astype(np.uint16) * int(opacity * 256) >> 8).astype(np.uint8)
    return to_qimage(pixels)


def masked_qimage(array: np.ndarray, mask: np.ndarray) -> QImage:
    """An RGB picture scaled to the mask's size, transparent where the mask is 0 (a preview over a picture)."""
    h, w = mask.shape
    image = to_qimage(array).scaled(w, h, Qt.AspectRatioMode.IgnoreAspectRatio,
                                    Qt.TransformationMode.SmoothTransformation)
    image = image.convertToFormat(QImage.Format.Format_ARGB32)
    mask = np.ascontiguousarray(mask)
    image.setAlphaChannel(QImage(mask.data, w, h, w, QImage.Format.Format_Alpha8).copy())
    return image
