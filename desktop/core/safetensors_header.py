"""Read and validate a safetensors file's header without reading its tensors.

The format: 8 bytes little-endian u64 N, then N bytes of UTF-8 JSON mapping each
tensor name to its dtype, shape and data_offsets (relative to the data area that
follows the header), plus an optional ``__metadata__`` table of texts. The checks
match what the safetensors library enforces when it loads a file, so a header
that passes here loads there. Use it through ``desktop.core.modelfiles``.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from desktop.core.errors import SfumatoError

# Bits per element of every safetensors dtype.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8,
    "U16": 16, "I16": 16, "F16": 16, "BF16": 16,
    "U32": 32, "I32": 32, "F32": 32,
    "U64": 64, "I64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


class ModelFileError(SfumatoError):
    """A model file that can't be used; the message is a sentence for people."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name} is not a valid model file: {reason}")


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    data_offsets: tuple[int, int]


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    header_size: int  # N: the JSON's length; tensor data starts at 8 + N


def human_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            text = f"{n:.1f}".removesuffix(".0") if unit != "bytes" else str(n)
            return f"{text} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def two_sizes(a: int, b: int) -> tuple[str, str]:
    """Two sizes as human_size words them, or in bytes when those would read the same."""
    if human_size(a) == human_size(b):
        return f"{a:,} bytes", f"{b:,} bytes"
    return human_size(a), human_size(b)


def sniff(head: bytes) -> tuple[str, str] | None:
    """What a file that is not the expected format really is, and what to do."""
    text = head.lstrip().lower()
    again = "Download it again."
    if head.startswith(b"\x89PNG"):
        return "a PNG image", again
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image", again
    if head.startswith(b"GIF8") or head[8:12] == b"WEBP":
        return "an image", again
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        return "a web page", "The download probably failed or needed a login; download it again."
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the model itself", "Download the real file."
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (perhaps a .ckpt checkpoint)", again
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a pickle (.ckpt) checkpoint", "Give it the .ckpt extension."
    if text.startswith((b"{", b"[")):
        return "a JSON text file", again
    return None


def open_regular(path) -> BinaryIO:
    """Open a regular file for reading; refuse anything else with a ModelFileError.

    A named pipe blocks in open() and a device (a link to /dev/urandom) never
    ends, so neither is opened: the type is checked before opening, and again
    on the opened file (without blocking) in case the path changed between.
    """
    path = Path(path)
    _require_regular(path, os.stat(path).st_mode)
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no FIFOs to block on
    fd = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_BINARY", 0))
    try:
        _require_regular(path, os.fstat(fd).st_mode)
        if nonblocking:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _require_regular(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    what = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a special file")
    raise ModelFileError(path, f"it is {what}, not a regular file, so Sfumato does not read it.")


def read_safetensors_header(path, *, max_header_bytes: int = 100 * 2**20) -> SafetensorsHeader:
    """Read and fully validate a safetensors header, without the tensor data."""
    path = Path(path)

    def fail(reason: str):
        raise ModelFileError(path, reason)

    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(64)
            n = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
            plausible = 8 <= len(head) and 2 <= n <= min(max_header_bytes, size - 8)
            if plausible and head[8:9] == b"{":
                f.seek(8)
                raw = f.read(n)
    except OSError as e:
        fail(f"it could not be read ({e.strerror or e}).")
    if not (plausible and head[8:9] == b"{"):
        sniffed = sniff(head)
        if sniffed:
            fail(f"it is actually {sniffed[0]}, not a safetensors file. {sniffed[1]}")
        if len(head) < 8:
            fail(f"it is only {size} bytes long, too short to be a model. Download it again.")
        if n > max_header_bytes:
            fail(f"its header claims {human_size(n)}, more than the {human_size(max_header_bytes)} "
                 "limit; it is not a safetensors file.")
        if n > size - 8:
            should, has = two_sizes(n, size)
            fail(f"it is truncated (its header alone should be {should} but the file has {has}). Download it again.")
        fail("it does not start with a safetensors header.")
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:  # a header like {"a": [[[[... nested 100,000 deep
        fail("its header is nested too deeply to be a safetensors header.")
    except (UnicodeDecodeError, ValueError) as e:
        fail(f"its header is not valid JSON ({e}).")
    if not isinstance(doc, dict):
        fail("its header is not a JSON object.")

    metadata = doc.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        fail("its __metadata__ entry is not a table of texts.")
    tensors = {name: _tensor_info(name, entry, fail) for name, entry in doc.items()}

    data_size = size - 8 - n
    end = max((t.data_offsets[1] for t in tensors.values()), default=0)
    if end > data_size:
        says, has = two_sizes(8 + n + end, size)
        fail(f"it is truncated (the header says {says} but the file has {has}). Download it again.")
    # Like the safetensors library: byte ranges must tile the data area exactly.
    expected = 0
    for name, t in sorted(tensors.items(), key=lambda item: item[1].data_offsets):
        begin, stop = t.data_offsets
        if begin < expected:
            fail(f"the bytes of tensor {name!r} overlap another tensor's.")
        if begin > expected:
            fail(f"there is a gap in the tensor data before tensor {name!r}.")
        expected = stop
    if expected != data_size:
        fail(f"it has {data_size - expected} unexpected bytes after the last tensor.")
    return SafetensorsHeader(tensors=tensors, metadata=dict(metadata), header_size=n)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a name appears twice")
    return dict(pairs)


def _tensor_info(name: str, entry, fail) -> TensorInfo:
    if not isinstance(entry, dict):
        fail(f"the entry for tensor {name!r} is not a JSON object.")
    for field in ("dtype", "shape", "data_offsets"):
        if field not in entry:
            fail(f"tensor {name!r} has no {field}.")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_BITS:
        fail(f"tensor {name!r} has an unknown dtype {dtype!r}.")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        fail(f"tensor {name!r} has an invalid shape {shape!r}.")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[0] <= offsets[1]):
        fail(f"tensor {name!r} has invalid data_offsets {offsets!r}.")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        fail(f"tensor {name!r} should take {bits / 8:g} bytes ({dtype} {shape}) "
             f"but its data_offsets give {offsets[1] - offsets[0]}.")
    return TensorInfo(dtype, tuple(shape), (offsets[0], offsets[1]))


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
