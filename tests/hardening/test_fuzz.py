"""Fuzzing the readers of what people bring: only the documented errors come out, and quickly.

- the parameters text parser never raises;
- the metadata readers of the gallery import never raise on any text chunks;
- reading a picture raises only OSError or ValueError (ImageError where Sfumato opens it);
- the .ora reader raises only OraError, whatever bytes it is given;
- model family detection raises only ModelFileError.
"""

import io
import json
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop.core import ora
from desktop.core.document import CanvasDocument
from desktop.core.gallery.metadata import meta_from_chunks, read_image_meta
from desktop.core.geometry import Extent
from desktop.core.imageio import ImageError, load_image
from desktop.core.infotext import parse_infotext
from desktop.core.modelfiles import ModelFileError, identify

FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
comfy_like = st.dictionaries(
    st.sampled_from(["3", "4", "5", "6", "7"]),
    st.fixed_dictionaries({"class_type": st.sampled_from(["KSampler", "CLIPTextEncode", "CheckpointLoaderSimple",
                                                          "EmptyLatentImage", "x"]),
                           "inputs": st.dictionaries(st.sampled_from(["seed", "text", "positive", "negative",
                                                                      "ckpt_name", "latent_image", "width", "steps"]),
                                                     json_values | st.lists(st.sampled_from(["3", "6", 0]),
                                                                            max_size=2))}),
    max_size=5,
)


@FAST
@given(st.text(max_size=600))
def test_the_parameters_parser_never_raises(text):
    info = parse_infotext(text)
    assert isinstance(info.prompt, str) and isinstance(info.params, dict)


@FAST
@given(st.dictionaries(st.sampled_from(["parameters", "prompt", "workflow", "invokeai_metadata", "sd-metadata",
                                        "sfumato", "Comment"]),
                       st.text(max_size=300) | json_values.map(json.dumps) | comfy_like.map(json.dumps), max_size=4))
def test_the_metadata_readers_never_raise(chunks):
    meta = meta_from_chunks(chunks)
    assert isinstance(meta.prompt, str) and isinstance(meta.parameters, str)


@FAST
@given(st.binary(max_size=2000), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\0\0\0\0WEBP"]))
def test_reading_any_bytes_as_a_picture_raises_only_the_documented_errors(tmp_path_factory, data, prefix):
    path = tmp_path_factory.mktemp("fuzz") / "x.png"
    path.write_bytes(prefix + data)
    try:
        read_image_meta(path)
    except (OSError, ValueError):
        pass
    try:
        load_image(path)
    except ImageError:
        pass


def _valid_ora() -> bytes:
    import numpy as np

    from desktop.core.layers import ImageLayer

    doc = CanvasDocument.new(Extent(32, 24))
    doc.add_layer(ImageLayer(np.full((24, 32, 4), 200, np.uint8), "paint"))
    buffer = io.BytesIO()
    ora._write_zip(buffer, doc.snapshot(), 1)
    return buffer.getvalue()


VALID_ORA = _valid_ora()


@FAST
@given(st.lists(st.tuples(st.integers(0, len(VALID_ORA) - 1), st.integers(0, 255)), min_size=1, max_size=12),
       st.integers(0, len(VALID_ORA)))
def test_the_ora_reader_raises_only_ora_error(tmp_path_factory, flips, cut):
    data = bytearray(VALID_ORA)
    for at, value in flips:
        data[at] = value
    path = tmp_path_factory.mktemp("fuzz") / "x.ora"
    path.write_bytes(bytes(data[:cut] if cut < len(data) // 2 else data))
    try:
        ora.read(path)
    except ora.OraError:
        pass


@FAST
@given(st.dictionaries(st.text(max_size=20), json_values, max_size=6), st.binary(max_size=64))
def test_stack_xml_with_any_layer_attributes_raises_only_ora_error(tmp_path_factory, attributes, png):
    from xml.sax.saxutils import quoteattr

    attrs = " ".join(f"{k}={quoteattr(str(v))}" for k, v in attributes.items()
                     if k and all(c.isalnum() or c in "-_:" for c in k) and k[0].isalpha() and ":" not in k)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", "image/openraster")
        archive.writestr("stack.xml", f'<image w="16" h="16"><stack><layer src="a.png" {attrs}/></stack></image>')
        archive.writestr("a.png", png)
    path = tmp_path_factory.mktemp("fuzz") / "y.ora"
    path.write_bytes(buffer.getvalue())
    try:
        ora.read(path)
    except ora.OraError:
        pass


@FAST
@given(json_values, st.binary(max_size=64))
def test_model_family_detection_raises_only_model_file_error(tmp_path_factory, header, tail):
    import struct

    raw = json.dumps(header).encode()
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + tail)
    try:
        identify(path)
    except ModelFileError:
        pass
