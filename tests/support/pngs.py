"""Changing a signed PNG the way an editor would: one pixel byte, the file still a valid PNG."""

from __future__ import annotations

import zlib


def chunks(data: bytes):
    """(offset, kind, length) of each chunk of a PNG's bytes."""
    at = 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        yield at, data[at + 4:at + 8], length
        at += 12 + length


def with_one_pixel_byte_changed(data: bytes, index: int = 100) -> bytes:
    """The PNG `data` with one byte of its first IDAT's pixels flipped, re-compressed and its CRC made right."""
    at, _, length = next(c for c in chunks(data) if c[1] == b"IDAT")
    pixels = bytearray(zlib.decompress(data[at + 8:at + 8 + length]))
    pixels[index] ^= 0x01
    body = zlib.compress(bytes(pixels))
    chunk = len(body).to_bytes(4, "big") + b"IDAT" + body + zlib.crc32(b"IDAT" + body).to_bytes(4, "big")
    return data[:at] + chunk + data[at + 12 + length:]
