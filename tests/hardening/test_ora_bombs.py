"""OpenRaster zip bombs: members are read through a byte budget, whatever sizes and methods the zip declares.

bzip2 and LZMA members unpack a whole block in one step (Python's zipfile gives them no limit), so a stack.xml
declaring 100 bytes could grow to gigabytes before anything is checked: only stored and deflated are read.
"""

import io
import struct
import time
import tracemalloc
import zipfile
import zlib

import pytest
from PIL import Image

from desktop.core import ora

STACK = b'<image w="8" h="8"><stack>%s</stack></image>'


def _declare(data: bytes, name: bytes, size: int) -> bytes:
    """The zip `data` with the member `name` claiming to unpack to `size` bytes (local and central headers)."""
    out = bytearray(data)
    for signature, field in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        name_at = 30 if signature == b"PK\x03\x04" else 46
        at = out.find(signature)
        while at >= 0:
            if out[at + name_at:at + name_at + len(name)] == name:
                out[at + field:at + field + 4] = struct.pack("<I", size)
            at = out.find(signature, at + 4)
    return bytes(out)


def _ora(members: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", ora.MIMETYPE)
        for name, data, method in members:
            archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()


def _read_bounded(path, limit_mb: int = 16) -> str:
    """ora.read's refusal, checking that it came quickly and without unpacking much into memory."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ora.OraError) as refused:
            ora.read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 10
    assert peak < limit_mb << 20, f"reading took {peak >> 20} MB"
    return str(refused.value)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_a_stack_xml_packed_with_bzip2_or_lzma_is_refused_before_it_unpacks(tmp_path, method):
    bomb = STACK % b"" + b" " * (64 << 20)  # 64 MB that packs into a few hundred bytes, declared as 100
    path = tmp_path / "bomb.ora"
    path.write_bytes(_declare(_ora([("stack.xml", bomb, method)]), b"stack.xml", 100))
    message = _read_bounded(path)
    assert message.startswith("bomb.ora is not an OpenRaster file Sfumato can open: stack.xml is packed with a "
                              "compression method Sfumato does not read")


def test_a_deflated_member_that_unpacks_past_its_declared_size_is_refused(tmp_path):
    bomb = STACK % b"" + b" " * (200 << 20)  # 200 MB of spaces: about 200 KB deflated
    path = tmp_path / "bomb.ora"
    path.write_bytes(_declare(_ora([("stack.xml", bomb, zipfile.ZIP_DEFLATED)]), b"stack.xml", 100))
    assert "stack.xml" in _read_bounded(path)


def _png_with_padding(padding: int) -> bytes:
    """An 8x8 PNG carrying `padding` bytes of a private chunk before its pixels (Pillow reads such chunks whole)."""
    buffer = io.BytesIO()
    Image.new("RGBA", (8, 8), "red").save(buffer, format="PNG")
    png = buffer.getvalue()
    body = b"prVt" + b"\0" * padding
    chunk = struct.pack(">I", padding) + body + struct.pack(">I", zlib.crc32(body))
    return png[:33] + chunk + png[33:]


def test_layers_that_together_unpack_past_the_budget_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ora, "MAX_UNPACKED", 4 << 20)
    layer = b'<layer src="data/a.png"/>'
    big = tmp_path / "big.ora"  # one layer that unpacks to 16 MB (deflated: 16 KB), declared honestly
    big.write_bytes(_ora([("stack.xml", STACK % layer, zipfile.ZIP_DEFLATED),
                          ("data/a.png", _png_with_padding(16 << 20), zipfile.ZIP_DEFLATED)]))
    assert "its layers unpack to more than 4 MB" in _read_bounded(big)
    many = tmp_path / "many.ora"  # 1 MB each, but the same member used by 8 layers
    many.write_bytes(_ora([("stack.xml", STACK % (layer * 8), zipfile.ZIP_DEFLATED),
                           ("data/a.png", _png_with_padding(1 << 20), zipfile.ZIP_DEFLATED)]))
    assert "its layers unpack to more than 4 MB" in _read_bounded(many)


def test_a_file_within_the_budget_still_opens(tmp_path):
    layer = b'<layer src="data/a.png"/>'
    path = tmp_path / "fine.ora"
    path.write_bytes(_ora([("stack.xml", STACK % (layer * 8), zipfile.ZIP_DEFLATED),
                           ("data/a.png", _png_with_padding(1 << 20), zipfile.ZIP_DEFLATED)]))
    snapshot = ora.read(path)
    assert len(snapshot.layers) == 8 and snapshot.layers[0].pixels[0, 0].tolist() == [255, 0, 0, 255]
