"""The frame's contents decide the mode, and the request carries exactly the frame's pixels."""

import numpy as np
import pytest

from desktop.core.brush import Brush
from desktop.core.document import CanvasDocument
from desktop.core.frame import frame_mode, frame_request
from desktop.core.geometry import Bounds, Extent, Point, only_masked_area
from desktop.core.layers import ImageLayer
from desktop.core.request import Mode
from tests.support.requests import make_request


def photo_doc():
    pixels = np.random.default_rng(3).integers(0, 256, (128, 128, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    return CanvasDocument.from_image(pixels, "photo"), pixels


def paint_mask(doc, x, y):
    stroke = doc.begin_stroke(doc.target_mask(), Brush(size=16, hardness=1.0))
    stroke.to(x, y)
    stroke.finish()


def test_empty_frame_is_txt2img_at_the_frame_size():
    doc = CanvasDocument.new(Extent(256, 128))
    doc.set_frame(Bounds(64, 0, 192, 128))
    paint_mask(doc, 100, 60)  # a mask on nothing does not matter
    request = frame_request(doc, make_request(prompt="x", width=512, height=512))
    assert frame_mode(doc) is Mode.TXT2IMG
    assert (request.mode, request.width, request.height, request.images.init) == (Mode.TXT2IMG, 192, 128, None)
    request.validate()


def test_a_picture_without_mask_is_img2img_of_exactly_its_pixels():
    doc, pixels = photo_doc()
    doc.set_frame(Bounds(64, 64, 64, 64))
    request = frame_request(doc, make_request())
    assert request.mode is Mode.IMG2IMG and request.images.mask is None
    np.testing.assert_array_equal(request.images.init, pixels[64:128, 64:128, :3])
    request.validate()


def test_a_painted_mask_makes_it_inpaint():
    doc, pixels = photo_doc()
    paint_mask(doc, 40, 40)
    request = frame_request(doc, make_request())
    assert frame_mode(doc) is Mode.INPAINT and request.mode is Mode.INPAINT
    assert request.images.mask[40, 40] == 255 and request.images.mask[100, 100] == 0
    request.validate()


def test_hiding_the_mask_goes_back_to_img2img():
    doc, _ = photo_doc()
    paint_mask(doc, 40, 40)
    doc.set_property(doc.target_mask(), "visible", False)
    assert frame_mode(doc) is Mode.IMG2IMG


@pytest.mark.parametrize("frame", [Bounds(64, 0, 128, 128), Bounds(-32, -32, 128, 128)])
def test_a_frame_past_the_edge_outpaints_with_the_outside_empty(frame):
    doc, pixels = photo_doc()
    doc.set_frame(frame)
    request = frame_request(doc, make_request())
    assert request.mode is Mode.OUTPAINT and request.images.init.shape == (128, 128, 4)
    inside = Bounds(0, 0, 128, 128).intersect(frame).translated(-frame.x, -frame.y)
    assert (request.images.init[inside.slices][..., 3] == 255).all()
    assert (request.images.init[..., 3] == 0).sum() == 128 * 128 - inside.width * inside.height
    request.resolved()


def test_transparent_area_inside_the_canvas_also_outpaints_and_half_alpha_counts_as_content():
    doc = CanvasDocument.new(Extent(64, 64))
    doc.add_layer(ImageLayer(np.full((64, 32, 4), (0, 0, 0, 128), np.uint8), "half"), 0)
    request = frame_request(doc, make_request())
    assert request.mode is Mode.OUTPAINT
    assert tuple(request.images.init[0, 0]) == (127, 127, 127, 255)  # black at 50% over white paper
    assert tuple(request.images.init[0, 40]) == (255, 255, 255, 0)


def test_frame_on_a_moved_layer_reads_the_layer_where_it_is_shown():
    doc = CanvasDocument.new(Extent(128, 128))
    doc.add_layer(ImageLayer(np.full((64, 64, 4), 200, np.uint8), "patch", offset=Point(64, 64)), 0)
    doc.set_frame(Bounds(64, 64, 64, 64))
    assert frame_mode(doc) is Mode.IMG2IMG
    doc.set_frame(Bounds(0, 0, 64, 64))
    assert frame_mode(doc) is Mode.TXT2IMG


def test_only_masked_area_pads_and_matches_the_aspect():
    mask = np.zeros((200, 300), np.uint8)
    mask[100:110, 100:120] = 255
    box = only_masked_area(mask, 8, Extent(64, 32))
    assert box.width == 2 * box.height
    assert box.x <= 92 and box.right >= 128 and box.y <= 92 and box.bottom >= 118


def test_a_picture_of_any_size_is_inpainted_whole_down_to_its_bottom_rows():
    pixels = np.random.default_rng(4).integers(0, 256, (300, 400, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    doc = CanvasDocument.from_image(pixels, "photo")
    paint_mask(doc, 200, 298)  # on the last rows, which a 400x296 frame left out
    request = frame_request(doc, make_request(width=512, height=512)).resolved()
    assert request.mode is Mode.INPAINT and (request.width, request.height) == (400, 300)
    np.testing.assert_array_equal(request.images.init, pixels[..., :3])
    assert request.images.mask[299, 200] == 255
