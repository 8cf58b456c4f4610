"""Hostile and unusual pictures, made on the fly (nothing binary is kept in git)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny file claiming huge dimensions (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 100)) + \
        _chunk(b"IEND", b"")


def text_bomb_png() -> bytes:
    """A small PNG whose compressed text chunk unpacks to 64 MB."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buffer, format="PNG")
    data = buffer.getvalue()
    ztxt = _chunk(b"zTXt", b"parameters\0\0" + zlib.compress(b"a" * (64 << 20), 9))
    return data[:33] + ztxt + data[33:]


def _save(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def make_all(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected): "ok" (opens, converted) or "refused" (a message)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = _save(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    palette = Image.fromarray(rng.integers(0, 16, (64, 64), dtype=np.uint8), mode="L").convert("P")
    palette.info["transparency"] = 0
    sixteen = Image.fromarray((rng.integers(0, 65535, (64, 64))).astype(np.uint16))
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red door\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64")
    files = {
        "truncated.png": (good[: len(good) // 2], "refused"),
        "bomb.png": (bomb_png(), "refused"),
        "text-bomb.png": (text_bomb_png(), "refused"),
        "not-an-image.png": (b"GIF89a? no, just text pretending to be a picture\n" * 10, "refused"),
        "one-pixel.png": (_save(Image.new("RGB", (1, 1), "red")), "ok"),
        "cmyk.jpg": (_save(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG"), "ok"),
        "sixteen-bit.png": (_save(sixteen), "ok"),
        "palette.png": (_save(palette, transparency=0), "ok"),
        "with-parameters.png": (_save(Image.new("RGB", (64, 64), "red"), pnginfo=info), "ok"),
    }
    out = {}
    for name, (data, expected) in files.items():
        path = folder / name
        path.write_bytes(data)
        out[name] = (path, expected)
    big = folder / "nine-thousand.png"
    Image.new("L", (9000, 9000)).save(big, compress_level=1)
    out["nine-thousand.png"] = (big, "refused")  # 81 megapixels: over the 64 MP a picture may have
    return out


# PostScript that never ends: Pillow's EPS plugin would hand it to Ghostscript, which loops forever.
POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n{ } loop\n"


def fake_ghostscript(folder: Path) -> Path:
    """A `gs` that leaves a marker file when anything launches it, then sleeps: put `folder` first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "gs-was-launched"
    script = folder / "gs"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\ncase "$1" in --version) echo 10.0; exit 0;; esac\n'
                      "sleep 3\nexit 1\n")
    script.chmod(0o755)
    return marker
