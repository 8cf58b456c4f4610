"""Reading images people give us, and writing result PNGs safely.

Reading: Pillow's decompression-bomb guard is set to what Sfumato can use,
text chunks are bounded, and every mode (CMYK, 16-bit, palette, greyscale)
is converted to 8-bit RGB or RGBA. Failures raise ImageError with a sentence
to show.

Writing: a temporary file in the same folder, flushed and fsynced, then
linked into place, so a crash never leaves a half-written PNG and an
existing file is never overwritten.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin

from . import atomic
from .errors import SfumatoError

MAX_PIXELS = 8192 * 8192  # generous for inputs; generation itself is capped at 4096x4096
MAX_TEXT_CHUNK = 1 << 20
XMP_KEY = "XML:com.adobe.xmp"  # the PNG iTXt keyword of an XMP packet

Image.MAX_IMAGE_PIXELS = MAX_PIXELS
PngImagePlugin.MAX_TEXT_CHUNK = MAX_TEXT_CHUNK
PngImagePlugin.MAX_TEXT_MEMORY = 8 * MAX_TEXT_CHUNK
ImageFile.LOAD_TRUNCATED_IMAGES = False

# The only formats Sfumato ever decodes. Pillow would otherwise try every plugin it has, and some run an
# external program (EPS and PostScript launch Ghostscript) or parse formats nobody paints in. JPEG covers
# phones' MPO files; QOI and AVIF exist only in newer Pillows.
RASTER_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "DIB", "TIFF", "GIF", "TGA", "PPM", "QOI", "AVIF")
READABLE = "PNG, JPEG, WebP, BMP, TIFF, GIF, TGA, PPM, QOI or AVIF"


class ImageError(SfumatoError):
    pass


def load_image(path: str | Path, *, keep_alpha: bool = True) -> np.ndarray:
    """Open an image file as an HxWx3 (or HxWx4) uint8 array."""
    path = Path(path)
    return decode_image(path, path.name, keep_alpha=keep_alpha)


@contextlib.contextmanager
def open_picture(source: str | Path | BinaryIO) -> Iterator[Image.Image]:
    """Pillow's Image.open limited to RASTER_FORMATS, for reading headers or pixels; closes the file after.

    Raises UnidentifiedImageError for any other format (EPS, PDF, ...), DecompressionBombError past twice
    Pillow's limit; pictures between the limit and twice it open (callers that decode check the size).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        Image.init()
        image = Image.open(source, formats=[f for f in RASTER_FORMATS if f in Image.OPEN])
    with image:
        yield image


def decode_image(source: str | Path | BinaryIO, name: str, *, keep_alpha: bool = True) -> np.ndarray:
    """Decode a file or a binary stream as an HxWx3 (or HxWx4) uint8 array; `name` is used in messages.

    The EXIF orientation is applied, so a phone's portrait photo stays upright (as thumbnails and exports show it).
    """
    with reading(name), open_picture(source) as image:
        if image.width * image.height > MAX_PIXELS:  # Pillow only warns below twice its limit
            raise Image.DecompressionBombError(f"{image.width}x{image.height}")
        image.load()
        return to_array(ImageOps.exif_transpose(image), keep_alpha=keep_alpha)


@contextlib.contextmanager
def reading(name: str) -> Iterator[None]:
    """Turn what Pillow raises while opening or decoding the picture `name` into an ImageError with a sentence."""
    try:
        yield
    except FileNotFoundError:
        raise ImageError(f"{name} does not exist.") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name} is too large to open (over {MAX_PIXELS // 1_000_000} megapixels).") from None
    except (Image.UnidentifiedImageError, SyntaxError):
        raise ImageError(f"{name} is not a picture Sfumato can read: it opens {READABLE}.") from None
    except (OSError, ValueError) as error:
        raise ImageError(f"{name} could not be read: it may be damaged or incomplete ({error}).") from None


def load_mask(path: str | Path) -> np.ndarray:
    """Open a mask image as HxW uint8 (white = repaint). Transparent pixels count as black."""
    array = load_image(path)
    grey = (array[..., :3].astype(np.uint32) @ np.array([299, 587, 114], np.uint32) // 1000).astype(np.uint8)
    if array.shape[2] == 4:
        grey = (grey.astype(np.uint32) * array[..., 3] // 255).astype(np.uint8)
    return grey


def to_array(image: Image.Image, *, keep_alpha: bool = True) -> np.ndarray:
    """Any Pillow image -> uint8 RGB or RGBA (16-bit is scaled, not clipped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if wide.max() > 255 else 255.0
        image = Image.fromarray((wide / top * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    mode = "RGBA" if keep_alpha and has_alpha else "RGB"
    return np.ascontiguousarray(np.asarray(image.convert(mode), dtype=np.uint8))


def save_png(path: Path, image: np.ndarray, text: dict[str, str] | None = None) -> Path:
    """Write `image` to `path` atomically, never replacing an existing file.

    If `path` exists, a numbered variant ("name-2.png", ...) is used. Returns
    the path written.
    """
    return atomic.write_new(path, _png_writer(image, text))


def replace_png(path: Path, image: np.ndarray, text: dict[str, str] | None = None) -> Path:
    """Write `image` to `path` atomically, replacing the file there (a folder batch's output made again after
    a crash, so that it exists exactly once). Returns `path`."""
    atomic.write_with(path, _png_writer(image, text))
    return Path(path)


def _png_writer(image: np.ndarray, text: dict[str, str] | None):
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        if key == XMP_KEY:  # XMP goes in an uncompressed iTXt chunk, where XMP readers look (desktop/core/marking.py)
            info.add_itxt(key, value)
        else:
            info.add_text(key, value)
    return lambda handle: Image.fromarray(image).save(handle, format="PNG", pnginfo=info, compress_level=4)


def output_path(folder: Path, seed: int, now: _dt.datetime | None = None) -> Path:
    """Where the next result goes: <folder>/<YYYY-MM-DD>/<NNNNN>-<seed>.png."""
    now = now or _dt.datetime.now()
    day = folder / now.strftime("%Y-%m-%d")
    numbers = [int(p.name[:5]) for p in day.glob("[0-9][0-9][0-9][0-9][0-9]-*.png")] if day.is_dir() else []
    return day / f"{max(numbers, default=0) + 1:05d}-{seed}.png"
