"""The machine-readable AI mark: every saved picture and every export says in XMP (IPTC digital source type) that
it is generated, unless the user turned the mark off; each is read back by Sfumato's reader and by an independent
one (the file's bytes walked here, the XMP parsed with xml.etree)."""

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.core import marking
from desktop.core.gallery import export as exporting
from desktop.core.gallery.metadata import read_image_meta
from desktop.core.gallery.store import GalleryStore
from desktop.core.outputs import save_result
from desktop.core.postprocess import DetailSettings, UpscaleRequest
from desktop.core.request import Mode
from desktop.core.settings import Settings

from tests.support.requests import make_request

IPTC_EXT = "{http://iptc.org/std/Iptc4xmpExt/2008-02-29/}"
XMP_NS = "{http://ns.adobe.com/xap/1.0/}"
JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"


def raw_xmp(path) -> bytes | None:
    """The XMP packet of a PNG (iTXt XML:com.adobe.xmp), JPEG (APP1) or WebP ("XMP " chunk), from the bytes."""
    data = Path(path).read_bytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        at = 8
        while at < len(data):
            length, kind = struct.unpack(">I4s", data[at:at + 8])
            body = data[at + 8:at + 8 + length]
            if kind == b"iTXt" and body.startswith(b"XML:com.adobe.xmp\x00"):
                keyword_end = body.index(b"\x00")
                assert body[keyword_end + 1] == 0, "the XMP iTXt chunk must not be compressed"
                rest = body[keyword_end + 3:]  # compression flag and method, then language and translated keyword
                rest = rest[rest.index(b"\x00") + 1:]
                return rest[rest.index(b"\x00") + 1:]
            at += 12 + length
        return None
    if data[:2] == b"\xff\xd8":
        at = 2
        while at < len(data) and data[at + 1] != 0xDA:
            length = struct.unpack(">H", data[at + 2:at + 4])[0]
            body = data[at + 4:at + 2 + length]
            if data[at + 1] == 0xE1 and body.startswith(JPEG_XMP):
                return body[len(JPEG_XMP):]
            at += 2 + length
        return None
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    at = 12
    while at < len(data):
        kind, length = data[at:at + 4], struct.unpack("<I", data[at + 4:at + 8])[0]
        if kind == b"XMP ":
            return data[at + 8:at + 8 + length]
        at += 8 + length + (length & 1)
    return None


def independent_type(path) -> str | None:
    """The digital source type in the file's XMP, parsed as XML (None when the file has no XMP)."""
    packet = raw_xmp(path)
    if packet is None:
        return None
    root = ET.fromstring(packet.decode("utf-8").split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    description = root.find(".//{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description")
    assert description.get(f"{XMP_NS}CreatorTool").startswith("Sfumato ")
    return description.get(f"{IPTC_EXT}DigitalSourceType")


def both(path) -> str | None:
    """What Sfumato's reader and the independent one find; they must agree."""
    ours = marking.read_source_type(path)
    assert ours == independent_type(path)
    return ours


def picture(seed=0, w=64, h=48):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_the_mark_setting_is_on_by_default_and_kept():
    assert Settings().mark_ai is True
    assert Settings.from_json({"mark_ai": False}).mark_ai is False
    assert Settings.from_json({"mark_ai": "no"}).mark_ai is True  # a bad value falls back to the default


def test_a_txt2img_result_is_marked_as_made_by_a_model(tmp_path):
    request = make_request(prompt="a cat", seed=3, width=64, height=64).resolved()
    path = save_result(tmp_path, picture(), request, 3, "tiny")
    assert both(path) == marking.TRAINED == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    assert read_image_meta(path)[0].parameters.startswith("a cat")  # the rest of the metadata is as it was


@pytest.mark.parametrize("mode", [Mode.INPAINT, Mode.IMG2IMG, Mode.OUTPAINT])
def test_a_changed_picture_is_marked_as_a_composite(tmp_path, mode):
    request = make_request(mode=mode, prompt="a cat", seed=3, width=64, height=64)
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")
    path = store.add_result(picture(), request, 3, "tiny")
    assert both(path) == marking.COMPOSITE
    assert marking.COMPOSITE.endswith("/digitalsourcetype/compositeWithTrainedAlgorithmicMedia")


def test_with_the_setting_off_a_result_carries_no_mark(tmp_path):
    request = make_request(prompt="a cat", seed=3, width=64, height=64).resolved()
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")
    path = store.add_result(picture(), request, 3, "tiny", mark=False)
    assert raw_xmp(path) is None and marking.read_source_type(path) is None
    assert save_result(tmp_path, picture(), request, 4, "tiny", mark=False).read_bytes().find(b"DigitalSource") < 0


def test_upscales_keep_their_sources_type_or_say_composite_when_the_model_painted(tmp_path):
    image = picture()
    assert marking.source_type(UpscaleRequest(image, parameters="a cat, Steps: 2")) == marking.TRAINED
    assert marking.source_type(UpscaleRequest(image)) == marking.COMPOSITE  # a user's photo, detail made up
    extras_only = "Postprocess upscale by: 2, Postprocess upscaler: demo"  # what an upscaled photo's result says
    assert marking.source_type(UpscaleRequest(image, parameters=extras_only)) == marking.COMPOSITE
    detail = DetailSettings(model="demo")
    assert marking.source_type(UpscaleRequest(image, parameters="a cat", detail=detail)) == marking.COMPOSITE
    inpainted = GalleryStore(tmp_path / "o", tmp_path / "t").add_result(
        image, make_request(mode=Mode.INPAINT, width=64, height=64), 1, "tiny")
    upscale = UpscaleRequest(image, parameters="a cat, Steps: 2", beside=str(inpainted))
    assert marking.source_type(upscale) == marking.COMPOSITE  # read from the source file
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")
    path = store.add_picture(store.folder / "up.png", picture(), "a cat", marking.chunks(upscale))
    assert both(path) == marking.COMPOSITE


# -- exports --------------------------------------------------------------------------------------------


@pytest.fixture
def exported(tmp_path):
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")

    def export(fmt, mode=Mode.TXT2IMG, **options):
        request = make_request(mode=mode, prompt="my secret garden", seed=5, width=64, height=64)
        path = store.add_result(picture(), request, 5, "tiny")
        record = store.index.by_path(store.relative(path))
        folder = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        return exporting.export([(record, path)], exporting.ExportOptions(folder, format=fmt, **options))[0]

    return export


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("keep_metadata", [True, False])
def test_every_export_format_keeps_the_mark_with_or_without_metadata(exported, fmt, keep_metadata):
    out = exported(fmt, keep_metadata=keep_metadata)
    assert both(out) == marking.TRAINED
    assert ("secret" in read_image_meta(out)[0].parameters) is keep_metadata  # stripped: the prompt goes, the mark stays
    assert keep_metadata or b"secret" not in out.read_bytes()
    assert both(exported(fmt, Mode.INPAINT, keep_metadata=keep_metadata)) == marking.COMPOSITE


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("keep_metadata", [True, False])
def test_unticking_keep_the_mark_leaves_no_xmp(exported, fmt, keep_metadata):
    out = exported(fmt, keep_metadata=keep_metadata, keep_mark=False)
    assert raw_xmp(out) is None and marking.read_source_type(out) is None
    assert b"xmpmeta" not in out.read_bytes() and b"DigitalSourceType" not in out.read_bytes()
    with Image.open(out) as image:
        assert "xmp" not in image.info and marking.XMP_KEY not in image.info


def test_the_reader_finds_the_element_forms_other_tools_write_and_ignores_junk():
    element = '<Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture' \
              '</Iptc4xmpExt:DigitalSourceType>'
    assert marking.source_type_in(element).endswith("/digitalCapture")
    assert marking.source_type_in('<a Iptc4xmpExt:DigitalSourceType rdf:resource="http://x/y"/>') == "http://x/y"
    assert marking.source_type_in(b"\xff\xfe not xml") is None and marking.source_type_in(None) is None


def test_an_exported_camera_photo_is_not_given_sfumato_s_mark(tmp_path):
    """A photo dropped in the gallery may carry its camera's own source type: an export does not repeat it under
    Sfumato's name (the mark is for what a model made)."""
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")
    photo = store.folder / "photo.jpg"
    photo.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture()).save(photo, "JPEG", xmp=marking.xmp_packet(marking.CV + "digitalCapture").encode())
    assert marking.read_source_type(photo).endswith("/digitalCapture")
    store.index_files([photo])
    record = store.index.by_path(store.relative(photo))
    out = exporting.export([(record, photo)], exporting.ExportOptions(tmp_path / "out", format="PNG",
                                                                     keep_metadata=False))[0]
    assert raw_xmp(out) is None and b"Sfumato" not in out.read_bytes()
