"""Hostile XMP in a picture: the mark's reader stays bounded and an export never writes more than a source type."""

import time
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image, PngImagePlugin

from desktop.core import marking
from desktop.core.gallery import export as exporting
from desktop.core.gallery.store import GalleryStore

LAUGHS = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
          + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
          + ']><x Iptc4xmpExt:DigitalSourceType="&i;"/>')


def png_with_xmp(path, xmp):
    info = PngImagePlugin.PngInfo()
    info.add_itxt(marking.XMP_KEY, xmp)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path, pnginfo=info)
    return path


def test_entities_huge_packets_and_junk_are_read_fast_and_not_expanded(tmp_path):
    began = time.perf_counter()
    assert marking.read_source_type(png_with_xmp(tmp_path / "laughs.png", LAUGHS)) is None
    huge = "<x>" + " " * 900_000 + 'Iptc4xmpExt:DigitalSourceType="' + "x" * 5000 + '"</x>'
    assert marking.read_source_type(png_with_xmp(tmp_path / "huge.png", huge)) is None
    assert marking.read_source_type(png_with_xmp(tmp_path / "junk.png", "\x00<<<>>>\"'")) is None
    amp = '<x Iptc4xmpExt:DigitalSourceType="http://x/&amp;y"/>'
    assert marking.read_source_type(png_with_xmp(tmp_path / "amp.png", amp)) is None
    (tmp_path / "cut.png").write_bytes((tmp_path / "junk.png").read_bytes()[:40])
    assert marking.read_source_type(tmp_path / "cut.png") is None
    assert time.perf_counter() - began < 5


def test_an_export_of_a_crafted_source_type_writes_only_well_formed_xmp(tmp_path):
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")
    crafted = f'{marking.TRAINED}" xmp:Evil="1'  # a quote ends the value: nothing more gets through
    path = png_with_xmp(store.folder / "crafted.png", f"<x Iptc4xmpExt:DigitalSourceType='{crafted}'/>")
    store.refresh()
    record = store.index.by_path(store.relative(path))
    out = exporting.export([(record, path)], exporting.ExportOptions(tmp_path / "out", format="JPEG",
                                                                     keep_metadata=False))[0]
    with Image.open(out) as image:
        packet = image.info["xmp"].decode()
    root = ET.fromstring(packet.split("?>", 1)[1].rsplit("<?xpacket", 1)[0])  # well formed
    description = root.find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert "Evil" not in packet and description.get(
        "{http://iptc.org/std/Iptc4xmpExt/2008-02-29/}DigitalSourceType") == marking.TRAINED
