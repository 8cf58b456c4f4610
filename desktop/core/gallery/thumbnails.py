"""Thumbnails of gallery pictures: 256 pixels at most, cached on disk as JPEG.

A thumbnail's name comes from the picture's folder, path, modification time
and size, so an edited or replaced picture gets a new one. Made in a
background thread (the gallery view asks; nothing here blocks it), written
atomically.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image, ImageOps

from .. import atomic
from ..imageio import open_picture, reading

SIZE = 256
BACKDROP = (128, 128, 128)


def thumbnail_path(cache: Path, picture: Path, mtime_ns: int, size: int) -> Path:
    key = hashlib.sha1(f"{picture.resolve()}|{mtime_ns}|{size}".encode("utf-8", "surrogatepass")).hexdigest()
    return cache / key[:2] / f"{key}.jpg"


def make_thumbnail(picture: Path, target: Path) -> Path:
    """Write the thumbnail of `picture` to `target` (unless it is there already).

    Raises ImageError (a sentence) for a picture that cannot be read, OSError when the cache cannot be written.
    """
    if target.is_file():
        return target
    with reading(picture.name), open_picture(picture) as image:  # big pictures open: only a thumbnail is made
        image.draft("RGB", (SIZE, SIZE))  # JPEG: decode at a fraction of the size
        image = ImageOps.exif_transpose(image)
        image.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS, reducing_gap=2.0)
        if image.mode in ("RGBA", "LA", "PA", "P"):
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, BACKDROP)
            flat.paste(rgba, mask=rgba.getchannel("A"))
            image = flat
        else:
            image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
    atomic.write_bytes(target, buffer.getvalue(), durable=False)  # a cache: made again if lost
    return target
