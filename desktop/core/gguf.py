"""Read a GGUF file's header (metadata and tensor names and shapes) without its tensor data.

The format (ggml's docs/gguf.md): b"GGUF", a u32 version (2 or 3; little-endian),
a u64 tensor count, a u64 metadata count, then each metadata entry (a string key,
a u32 value type, the value), then each tensor's name, u32 dimension count, u64
dimensions (innermost first, the reverse of torch's order), u32 ggml type and u64
offset into the aligned data area that follows. Strings are a u64 length and UTF-8.

Everything a hostile file could make large is capped (counts, string lengths,
array lengths, nesting, the array items kept and the strings read one by one, and
the total bytes of the header; arrays of numbers are read at once), so reading a header
takes bounded time and memory; any problem is a ModelFileError sentence.
Use it through ``desktop.core.modelfiles``.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from desktop.core.safetensors_header import ModelFileError, human_size, open_regular, sniff

MAGIC = b"GGUF"
MAX_TENSORS = 100_000  # a full FLUX.1 checkpoint has under 2,000
MAX_METADATA = 100_000
MAX_STRING_BYTES = 4 * 2**20  # a chat template or a licence text is a few KB
MAX_NAME_BYTES = 4096  # ggml's own limit on a tensor name is 64
MAX_ARRAY_ITEMS = 4_000_000  # an LLM's tokenizer vocabulary is ~150,000 strings (Gemma's 262,144)
MAX_WALKED_STRINGS = 1_000_000  # strings read one by one in all the header's arrays (a vocabulary and its merges)
KEEP_ARRAY_ITEMS = 1024  # longer arrays are skipped, their value is None
KEEP_VALUES = 65_536  # array items kept in all; the arrays past it are skipped, as are arrays inside arrays
MAX_HEADER_BYTES = 32 * 2**20  # a text encoder's tokenizer arrays take a few MB
MAX_DIMS = 4

# Metadata value types: (struct format, size) of the fixed-size ones.
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}  # fmt: skip
_STRING, _ARRAY = 8, 9
Q_FORMAT = struct.Struct("<Q")

#: ggml tensor types by id (the ones a file names; an unknown id reads as "type N").
GGML_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
    11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
    19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32",
    27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}  # fmt: skip


@dataclass(frozen=True)
class GGUFTensor:
    shape: tuple[int, ...]  # in torch's order (outermost first)
    type: str  # "Q4_K", "F16", ...
    offset: int


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, object]  # str, int, float, bool, or a list; None for an array too long to keep
    tensors: dict[str, GGUFTensor]

    @property
    def quantisation(self) -> str:
        """The commonest type of the tensors with two or more dimensions (the weights): "Q4_K", "Q8_0", "F16"."""
        counts = Counter(t.type for t in self.tensors.values() if len(t.shape) >= 2)
        return counts.most_common(1)[0][0] if counts else ""


def read_gguf_header(path) -> GGUFHeader:
    """Read and check a GGUF header. Raises ModelFileError with a sentence for people."""
    path = Path(path)
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            return _Reader(path, f, size).header()
    except OSError as e:
        raise ModelFileError(path, f"it could not be read ({e.strerror or e}).") from e


class _Reader:
    def __init__(self, path: Path, f: BinaryIO, size: int):
        self.path, self.f, self.size, self.used = path, f, size, 0
        self.kept = self.walked = 0  # array items kept, strings of arrays read one by one

    def fail(self, reason: str):
        raise ModelFileError(self.path, reason)

    def read(self, n: int) -> bytes:
        self.used += n
        if self.used > MAX_HEADER_BYTES:
            self.fail(f"its GGUF header is larger than {human_size(MAX_HEADER_BYTES)}, so Sfumato does not read it.")
        data = self.f.read(n)
        if len(data) < n:
            self.fail("it is truncated inside its GGUF header. Download it again.")
        return data

    def skip(self, n: int) -> None:
        self.used += n
        if self.used > MAX_HEADER_BYTES:
            self.fail(f"its GGUF header is larger than {human_size(MAX_HEADER_BYTES)}, so Sfumato does not read it.")
        if self.f.tell() + n > self.size:
            self.fail("it is truncated inside its GGUF header. Download it again.")
        self.f.seek(n, os.SEEK_CUR)

    def scalar(self, fmt: str, size: int):
        return struct.unpack(fmt, self.read(size))[0]

    def u32(self) -> int:
        return self.scalar("<I", 4)

    def u64(self) -> int:
        return self.scalar("<Q", 8)

    def string(self, limit: int = MAX_STRING_BYTES, what: str = "a text") -> str:
        n = self.u64()
        if n > limit:
            self.fail(f"{what} in its GGUF header claims {human_size(n)}, more than the {human_size(limit)} limit.")
        try:
            return self.read(n).decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} in its GGUF header is not UTF-8 text.")

    def value(self, kind: int, depth: int = 0):
        if kind in _SCALARS:
            return self.scalar(*_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            self.fail(f"its GGUF header has a value of unknown type {kind}.")
        if depth >= 2:
            self.fail("its GGUF header nests arrays too deeply.")
        item, count = self.u32(), self.u64()
        if count > MAX_ARRAY_ITEMS:
            self.fail(f"an array in its GGUF header claims {count:,} items, more than the {MAX_ARRAY_ITEMS:,} limit.")
        keep = depth == 0 and count <= KEEP_ARRAY_ITEMS and self.kept + count <= KEEP_VALUES
        self.kept += count if keep else 0
        if item in _SCALARS:  # all at once, whatever the count
            fmt, size = _SCALARS[item]
            if not keep:
                self.skip(count * size)
                return None
            return list(struct.unpack(f"<{count}{fmt[1:]}", self.read(count * size)))
        if item == _STRING:
            return self.strings(count, keep)
        if item != _ARRAY:
            self.fail(f"its GGUF header has a value of unknown type {item}.")
        for _ in range(count):  # arrays of arrays: read past, never kept
            self.value(item, depth + 1)
        return None

    def strings(self, count: int, keep: bool) -> list[str] | None:
        """An array's strings (a tokenizer's vocabulary), kept or read past; the strings read in all are capped."""
        self.walked += count
        if self.walked > MAX_WALKED_STRINGS:
            self.fail(f"its GGUF header holds more than {MAX_WALKED_STRINGS:,} strings in arrays, more than any "
                      "model's tokenizer.")
        if keep:
            return [self.string() for _ in range(count)]
        read, unpack, seek = self.f.read, Q_FORMAT.unpack, self.f.seek
        used = 0
        for _ in range(count):  # the lean loop of a 150,000-word vocabulary
            raw = read(8)
            if len(raw) < 8:
                self.fail("it is truncated inside its GGUF header. Download it again.")
            n = unpack(raw)[0]
            if n > MAX_STRING_BYTES:
                self.fail(f"a text in its GGUF header claims {human_size(n)}, more than the "
                          f"{human_size(MAX_STRING_BYTES)} limit.")
            used += 8 + n
            if used > MAX_HEADER_BYTES:
                break
            seek(n, os.SEEK_CUR)
        self.used += used
        if self.used > MAX_HEADER_BYTES:
            self.fail(f"its GGUF header is larger than {human_size(MAX_HEADER_BYTES)}, so Sfumato does not read it.")
        if self.f.tell() > self.size:
            self.fail("it is truncated inside its GGUF header. Download it again.")
        return None

    def header(self) -> GGUFHeader:
        head = self.f.read(64)
        self.f.seek(4)
        self.used = 4
        if head[:4] != MAGIC:
            sniffed = sniff(head)
            if sniffed:
                self.fail(f"it is actually {sniffed[0]}, not a GGUF file. {sniffed[1]}")
            self.fail("it does not start with a GGUF header. Download it again.")
        version = self.u32()
        if version not in (2, 3):
            swapped = struct.unpack(">I", struct.pack("<I", version))[0]
            what = ("a big-endian GGUF file, which Sfumato does not read" if swapped in (2, 3)
                    else f"GGUF version {version}, which Sfumato does not read (it reads versions 2 and 3)")
            self.fail(f"it is {what}.")
        tensor_count, metadata_count = self.u64(), self.u64()
        if tensor_count > MAX_TENSORS or metadata_count > MAX_METADATA:
            self.fail(f"its GGUF header claims {tensor_count:,} tensors and {metadata_count:,} metadata entries, "
                      "more than any model has.")
        metadata: dict[str, object] = {}
        for _ in range(metadata_count):
            key = self.string(MAX_NAME_BYTES, "a metadata key")
            metadata[key] = self.value(self.u32())
        tensors: dict[str, GGUFTensor] = {}
        for _ in range(tensor_count):
            name = self.string(MAX_NAME_BYTES, "a tensor name")
            dims = self.u32()
            if dims > MAX_DIMS:
                self.fail(f"tensor {name!r} has {dims} dimensions in its GGUF header (at most {MAX_DIMS}).")
            shape = tuple(reversed([self.u64() for _ in range(dims)]))
            kind, offset = self.u32(), self.u64()
            if name in tensors:
                self.fail(f"tensor {name!r} appears twice in its GGUF header.")
            tensors[name] = GGUFTensor(shape, GGML_TYPES.get(kind, f"type {kind}"), offset)
        alignment = metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or isinstance(alignment, bool) or not 1 <= alignment <= 2**16:
            self.fail(f"its GGUF alignment {alignment!r} is not a sensible number of bytes.")
        start = -(-self.f.tell() // alignment) * alignment
        end = max((t.offset for t in tensors.values()), default=-1)
        if tensors and start + end >= self.size:
            self.fail(f"it is truncated (its tensors reach past its {human_size(self.size)}). Download it again.")
        return GGUFHeader(version, metadata, tensors)
