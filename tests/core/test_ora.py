"""OpenRaster: what we write follows the spec and reads back identically; others' files open."""

import io
import zipfile
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

from desktop.core import autosave, ora
from desktop.core.brush import Brush
from desktop.core.document import CanvasDocument
from desktop.core.geometry import Bounds, Extent, Point
from desktop.core.layers import ImageLayer


def sample_document():
    rng = np.random.default_rng(5)
    doc = CanvasDocument.new(Extent(96, 80))
    doc.add_layer(ImageLayer(rng.integers(0, 256, (80, 96, 4), dtype=np.uint8), "noise"), 0)
    small = doc.add_layer(ImageLayer(rng.integers(0, 256, (24, 40, 4), dtype=np.uint8), "pätch <&>",
                                     offset=Point(-8, 50)))
    doc.set_property(small, "opacity", 0.4)
    doc.set_property(doc.layers[1], "visible", False)
    doc.set_property(doc.layers[0], "locked", True)
    stroke = doc.begin_stroke(doc.target_mask(), Brush(size=20, hardness=0.5))
    stroke.to(30, 30)
    stroke.finish()
    doc.set_frame(Bounds(-16, 8, 128, 64))
    doc.set_active(small)
    return doc


def test_round_trip_keeps_every_layer_property_the_mask_and_the_frame(tmp_path):
    doc = sample_document()
    path = tmp_path / "picture.ora"
    ora.write(path, doc.snapshot())
    again = CanvasDocument.from_snapshot(ora.read(path))
    assert again.extent == doc.extent and again.frame == doc.frame
    assert [(type(l), l.name, l.visible, round(l.opacity, 3), l.locked, l.offset) for l in again.layers] == [
        (type(l), l.name, l.visible, round(l.opacity, 3), l.locked, l.offset) for l in doc.layers]
    for mine, theirs in zip(doc.layers, again.layers):
        np.testing.assert_array_equal(mine.pixels, theirs.pixels)
    np.testing.assert_array_equal(again.composite(), doc.composite())
    assert again.active.name == "pätch <&>"


def test_the_file_follows_the_openraster_layout(tmp_path):
    doc = sample_document()
    path = tmp_path / "picture.ora"
    ora.write(path, doc.snapshot())
    with zipfile.ZipFile(path) as archive:
        first = archive.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert archive.read("mimetype") == b"image/openraster"
        with open(path, "rb") as raw:  # readers may sniff the mimetype at byte 38
            assert raw.read(38 + 16)[38:] == b"image/openraster"
        root = ElementTree.fromstring(archive.read("stack.xml"))
        assert root.tag == "image" and (root.get("w"), root.get("h")) == ("96", "80")
        assert root.get("version")
        stack = root.find("stack")
        layers = stack.findall("layer")
        assert [l.get("name") for l in layers] == ["Mask", "Layer 1", "pätch <&>", "noise"], "topmost first"
        for layer in layers:
            assert layer.get("src") in archive.namelist()
            assert layer.get("visibility") in ("visible", "hidden")
            assert 0.0 <= float(layer.get("opacity")) <= 1.0
            assert layer.get("composite-op") == "svg:src-over"
            int(layer.get("x")), int(layer.get("y"))
            assert Image.open(io.BytesIO(archive.read(layer.get("src")))).format == "PNG"
        assert layers[0].get("visibility") == "hidden", "masks are hidden for other programs"
        assert [l.get("selected") for l in layers].count("true") == 1
        merged = Image.open(io.BytesIO(archive.read("mergedimage.png")))
        assert merged.size == (96, 80)
        np.testing.assert_array_equal(np.asarray(merged), doc.composite())
        thumb = Image.open(io.BytesIO(archive.read("Thumbnails/thumbnail.png")))
        assert max(thumb.size) <= 256


def krita_like_file(path, layers_xml, files):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "image/openraster")
        archive.writestr("stack.xml", f'<?xml version="1.0"?><image w="64" h="48"><stack>{layers_xml}</stack></image>')
        for name, image in files.items():
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            archive.writestr(name, buffer.getvalue())


def test_nested_stacks_from_other_programs_are_flattened_with_their_offsets(tmp_path):
    path = tmp_path / "krita.ora"
    krita_like_file(path, (
        '<stack name="group" x="10" y="5" opacity="0.5" visibility="visible">'
        '<layer name="inner" src="data/a.png" x="2" y="3" opacity="0.5"/></stack>'
        '<layer name="rgb" src="data/b.png" visibility="hidden"/>'
    ), {"data/a.png": Image.new("RGBA", (8, 8), (255, 0, 0, 255)), "data/b.png": Image.new("RGB", (64, 48), "blue")})
    snapshot = ora.read(path)
    bottom, top = snapshot.layers
    assert (bottom.name, bottom.visible, bottom.pixels.shape) == ("rgb", False, (48, 64, 4))
    assert (top.name, top.offset, top.opacity) == ("inner", Point(12, 8), 0.25)
    assert snapshot.frame == Bounds(0, 0, 64, 64), "the whole picture, at least the smallest frame"


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"not a zip at all"), "not a zip"),
    (lambda p: krita_like_file(p, '<layer src="data/none.png"/>', {}), "missing"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("mimetype", "image/openraster"), "no stack.xml"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("stack.xml", "<image w='9' h='9'><stack>"), "not valid XML"),
    (lambda p: zipfile.ZipFile(p, "w").writestr("stack.xml", "<image w='99999' h='9'><stack/></image>"), "size"),
    (lambda p: krita_like_file(p, '<layer src="data/a.png"/>', {}) or _append(p, "data/a.png", b"\x89PNG broken"),
     "data/a.png"),
])
def test_broken_files_give_a_sentence_not_a_crash(tmp_path, damage, message):
    path = tmp_path / "broken.ora"
    damage(path)
    with pytest.raises(ora.OraError, match=message):
        ora.read(path)


def _append(path, name, data):
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(name, data)


def test_a_truncated_file_is_refused(tmp_path):
    path = tmp_path / "cut.ora"
    ora.write(path, sample_document().snapshot())
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ora.OraError):
        ora.read(path)


def test_autosave_writes_and_recovers(tmp_path):
    assert not autosave.exists()
    doc = sample_document()
    autosave.save(doc.snapshot())
    assert autosave.exists() and not list(autosave.autosave_path().parent.glob(".*.tmp"))
    recovered = CanvasDocument.from_snapshot(autosave.load())
    np.testing.assert_array_equal(recovered.composite(), doc.composite())
    np.testing.assert_array_equal(recovered.mask(), doc.mask())
    autosave.discard()
    assert not autosave.exists()


def _stored(path, members):
    """A zip whose members are written as given: (name, data, compress_type, flag_bits)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, compress, flags in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, data)
    raw = bytearray(path.read_bytes())
    for name, _, compress, flags in members:  # patch the headers the way a hostile file would
        for header in (b"PK\x03\x04", b"PK\x01\x02"):
            at = 0
            while (at := raw.find(header, at)) >= 0:
                field = at + (6 if header == b"PK\x03\x04" else 8)
                name_at = at + (30 if header == b"PK\x03\x04" else 46)
                if raw[name_at:name_at + len(name)] == name.encode():
                    raw[field:field + 2] = flags.to_bytes(2, "little")
                    raw[field + 2:field + 4] = compress.to_bytes(2, "little")
                at += 4
    path.write_bytes(bytes(raw))


STACK = '<image w="8" h="8"><stack><layer src="data/a.png"/></stack></image>'


@pytest.mark.parametrize("stack, members", [
    ('<image w="inf" h="8"><stack/></image>', []),
    ('<image w="8" h="8"><stack><layer src="data/a.png" x="1e999"/></stack></image>', None),
    ('<image w="8" h="8" xmlns:s="https://sfumato.app/ns/ora" s:frame="1' + "0" * 400 + ' 0 512 512"><stack/></image>',
     []),
    (STACK, [("data/a.png", b"x" * 40, 99, 0)]),  # an unknown compression method
    (STACK, [("data/a.png", b"x" * 40, 0, 1)]),  # "encrypted"
    (STACK, [("data/a.png", b"\x00garbage-deflate" * 3, 8, 0)]),  # broken deflate data
])
def test_hostile_files_only_ever_raise_ora_error(tmp_path, stack, members):
    path = tmp_path / "hostile.ora"
    png = io.BytesIO()
    Image.new("RGBA", (8, 8)).save(png, format="PNG")
    if members is None:
        members = [("data/a.png", png.getvalue(), 0, 0)]
    _stored(path, [("stack.xml", stack.encode(), 0, 0), *members])
    try:
        snapshot = ora.read(path)
    except ora.OraError:
        return
    assert abs(snapshot.frame.x) <= 16384 and all(abs(l.offset.x) <= 4 * 16384 for l in snapshot.layers)


def test_autosave_clears_what_a_killed_session_left_half_written(tmp_path):
    import os
    import time

    autosave.autosave_path().parent.mkdir(parents=True, exist_ok=True)
    stale = autosave.autosave_path().with_name(".autosave.ora.abc123.tmp")
    fresh = autosave.autosave_path().with_name(".autosave.ora.def456.tmp")
    for path in (stale, fresh):
        path.write_bytes(b"half of an autosave")
    old = time.time() - autosave.STALE_S - 10
    os.utime(stale, (old, old))
    autosave.save(sample_document().snapshot())
    assert not stale.exists() and fresh.exists(), "only old leftovers go: a fresh one may be another window's"
