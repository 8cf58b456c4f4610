"""Control layers in the document: left out of the picture, sent as Controls and References, kept in the .ora,
and every change one undo step."""

import zipfile
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

from desktop.core import autosave, ora
from desktop.core.brush import Brush
from desktop.core.control_layers import ControlSpec, control_picture, layer_pixels, overlay
from desktop.core.document import CanvasDocument, LayerNotEditable
from desktop.core.frame import frame_request
from desktop.core.geometry import Bounds, Extent, Point
from desktop.core.layers import ImageLayer
from desktop.core.request import GenerationRequest, Mode


def photo(w=96, h=80, seed=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def lines(w=96, h=80):
    """A preprocessor's output: white lines on black."""
    out = np.zeros((h, w, 3), np.uint8)
    out[20, :] = 255
    out[:, 30] = 200
    return out


def doc_with_control(kind="canny", **spec):
    doc = CanvasDocument.from_image(photo(), "photo")
    layer = doc.add_control_layer(ControlSpec(kind, **spec))
    doc.set_layer_pixels(layer, layer_pixels(kind, lines()), label="Control from picture")
    return doc, layer


def test_a_control_layer_is_not_part_of_the_picture_nor_of_its_export():
    picture = photo()
    doc, layer = doc_with_control()
    assert np.array_equal(doc.composite()[..., :3], picture), "the canny lines are not in the picture"
    assert np.array_equal(doc.snapshot().composite()[..., :3], picture), "nor in what is saved as the picture"
    assert overlay(doc.layers, doc.bounds)[20, 50, 3] > 0, "it shows on the canvas as a tint"
    doc.set_control(layer, None)  # a picture layer again: now it is part of the picture
    assert not np.array_equal(doc.composite()[..., :3], picture)
    doc.undo()
    assert np.array_equal(doc.composite()[..., :3], picture), "undo makes it a control layer again"


def test_generating_sends_each_visible_control_layer_in_the_frame_and_skips_hidden_ones():
    doc, layer = doc_with_control("lineart", model="control_lineart.safetensors", weight=0.7, start=0.1, end=0.8)
    doc.set_frame(Bounds(16, 8, 64, 64))
    request = frame_request(doc, GenerationRequest())
    assert request.mode is Mode.IMG2IMG and len(request.controls) == 1 and request.references == ()
    control = request.controls[0]
    assert (control.model, control.type, control.weight, control.start, control.end, control.preprocess) == (
        "control_lineart.safetensors", "lineart", 0.7, 0.1, 0.8, False)
    np.testing.assert_array_equal(control.image, lines()[8:72, 16:80], "the layer's pixels in the frame")
    request.validate()
    doc.set_property(layer, "visible", False)
    assert frame_request(doc, GenerationRequest()).controls == ()


def test_brush_strokes_on_a_line_layer_are_lines_whatever_their_colour():
    doc = CanvasDocument.from_image(photo(), "photo")
    layer = doc.add_control_layer(ControlSpec("scribble"))
    assert frame_request(doc, GenerationRequest()).controls == (), "an empty control layer guides nothing"
    stroke = doc.begin_stroke(layer, Brush(size=6, hardness=1.0, colour=(0, 0, 0)))
    stroke.to(10, 40)
    stroke.to(60, 40)
    stroke.finish()
    image = frame_request(doc, GenerationRequest()).controls[0].image
    assert tuple(image[40, 30]) == (255, 255, 255) and tuple(image[10, 30]) == (0, 0, 0), "white lines on black"
    assert np.array_equal(doc.composite()[..., :3], photo()), "the scribble is not painted into the picture"


def test_a_reference_layer_sends_its_whole_picture_trimmed_and_a_style_layer_in_style_mode():
    doc = CanvasDocument.from_image(photo(), "photo")
    reference = doc.add_control_layer(ControlSpec("style", model="ip-adapter_sd15.safetensors", weight=0.9))
    pixels = np.zeros((80, 96, 4), np.uint8)
    pixels[10:30, 50:90] = (200, 10, 10, 255)  # partly outside the frame: a reference is not cropped to it
    doc.set_layer_pixels(reference, pixels)
    doc.set_frame(Bounds(0, 0, 64, 64))
    request = frame_request(doc, GenerationRequest())
    assert request.controls == () and len(request.references) == 1
    ref = request.references[0]
    assert (ref.mode, ref.weight, ref.adapter, ref.image.shape) == ("style", 0.9, "ip-adapter_sd15.safetensors",
                                                                    (20, 40, 3))
    assert tuple(ref.image[0, 0]) == (200, 10, 10)


def test_adding_changing_and_filling_a_control_layer_are_one_undo_step_each():
    doc = CanvasDocument.from_image(photo(), "photo")
    layers = len(doc.layers)
    layer = doc.add_control_layer(ControlSpec("depth"))
    assert doc.history.undo_label == "Add control layer" and layer.name == "Depth 1"
    doc.set_layer_pixels(layer, layer_pixels("depth", lines()), label="Control from picture")
    doc.set_control(layer, layer.control.replace(weight=1.5, end=0.5))
    doc.set_control(layer, layer.control.replace(weight=1.5, end=0.5))  # unchanged: no step
    assert doc.undo() == "Control layer settings" and layer.control == ControlSpec("depth")
    assert doc.undo() == "Control from picture" and not layer.pixels.any()
    assert doc.undo() == "Add control layer" and len(doc.layers) == layers
    doc.redo()
    assert doc.layers[-2] is layer and layer.control == ControlSpec("depth")


def test_control_layers_are_never_merged_into_the_picture():
    doc, layer = doc_with_control()
    with pytest.raises(LayerNotEditable, match="control layers"):
        doc.merge_down(layer)


def test_the_spec_clamps_what_it_is_given_and_refuses_an_unknown_kind():
    spec = ControlSpec("canny", "  ", weight=5, start=0.9, end=0.4)
    assert (spec.model, spec.weight, spec.start, spec.end) == ("demo", 2.0, 0.4, 0.4)
    with pytest.raises(ValueError, match="kind"):
        ControlSpec("pose")
    odd = ControlSpec.from_attributes({"control": "depth", "control-weight": "nan", "control-start": "-inf",
                                       "control-end": "1e999", "control-model": "m" * 100_000}.get)
    assert (odd.weight, odd.start, odd.end, len(odd.model)) == (1.0, 0.0, 1.0, 1000)


def test_ora_keeps_control_layers_as_plain_layers_with_sfumato_attributes(tmp_path):
    doc, layer = doc_with_control("canny", model="C:\\models\\control_canny.safetensors", weight=0.5, end=0.75)
    doc.set_property(layer, "visible", False)
    reference = doc.add_control_layer(ControlSpec.default("reference"))
    path = tmp_path / "guided.ora"
    ora.write(path, doc.snapshot())
    with zipfile.ZipFile(path) as archive:
        stack = ElementTree.fromstring(archive.read("stack.xml"))
        merged = np.asarray(Image.open(archive.open("mergedimage.png")))
    entry = next(e for e in stack.iter("layer") if e.get("name") == layer.name)
    ns = "{" + ora.NS + "}"
    assert entry.get(ns + "control") == "canny" and entry.get(ns + "control-weight") == "0.5"
    assert entry.get("visibility") == "hidden", "other programs see it as an ordinary (here hidden) layer"
    np.testing.assert_array_equal(merged[..., :3], photo(), "the merged image is the picture alone")
    again = CanvasDocument.from_snapshot(ora.read(path))
    opened = next(l for l in again.layers if l.name == layer.name)
    assert opened.control == layer.control and not opened.visible
    np.testing.assert_array_equal(opened.pixels, layer.pixels)
    assert next(l for l in again.layers if l.name == reference.name).control == ControlSpec("reference", weight=0.6)
    np.testing.assert_array_equal(again.composite(), doc.composite())
    autosave.save(doc.snapshot())
    assert [l.control for l in CanvasDocument.from_snapshot(autosave.load()).layers] == [l.control for l in doc.layers]


def test_an_unknown_control_kind_in_a_file_opens_as_a_picture_layer(tmp_path):
    doc = CanvasDocument.from_image(photo(), "photo")
    path = tmp_path / "odd.ora"
    ora.write(path, doc.snapshot())
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members["stack.xml"] = members["stack.xml"].replace(
        b'name="photo"', b'name="photo" xmlns:s="https://sfumato.app/ns/ora" s:control="pose" s:control-weight="x"')
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    again = CanvasDocument.from_snapshot(ora.read(path))
    assert again.layers[0].control is None
    np.testing.assert_array_equal(again.composite()[..., :3], photo())


def test_from_picture_pixels_read_back_as_the_preprocessor_made_them():
    for kind in ("canny", "depth", "none"):
        np.testing.assert_array_equal(control_picture(layer_pixels(kind, lines()), kind), lines())


def test_copies_and_moved_control_layers_keep_their_spec():
    doc, layer = doc_with_control()
    copy = doc.duplicate_layer(layer)
    assert copy.control == layer.control and isinstance(copy, ImageLayer)
    doc.set_property(copy, "offset", Point(8, 0))
    doc.set_frame(Bounds(0, 0, 96, 80))
    controls = frame_request(doc, GenerationRequest()).controls
    assert len(controls) == 2 and controls[1].image[20, 4].max() == 0 and controls[1].image[20, 8].max() == 255
    assert doc.extent == Extent(96, 80)
