"""Pixel guarantees of inpainting: the pixel work without a model, and a picture of any size on the tiny one."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop.core.geometry import Bounds, Extent, Margins
from desktop.core.progress import TaskState
from desktop.core.request import Mode
from desktop.engine import generate, inpaint
from tests.support.requests import make_request


@settings(max_examples=40, deadline=None)
@given(radius=st.integers(0, 12), x=st.integers(0, 40), y=st.integers(0, 40), size=st.integers(1, 20))
def test_blur_never_reaches_past_its_radius(radius, x, y, size):
    mask = np.zeros((64, 64), np.uint8)
    mask[y : y + size, x : x + size] = 255
    soft = inpaint.blur_mask(mask, radius)
    reach = Bounds.of_mask(mask).pad(radius).clamp(Extent(64, 64))
    outside = np.ones_like(mask, bool)
    outside[reach.slices] = False
    assert soft[outside].max(initial=0) == 0
    assert (soft[mask > 0] > 0).all()


def test_paste_back_keeps_unmasked_pixels_exactly():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    soft = np.zeros((32, 32), np.float32)
    soft[8:16, 8:16] = 1.0
    soft[16, 8:16] = 0.5
    out = inpaint.paste_back(original, 255 - original, soft)
    assert np.array_equal(out[soft == 0], original[soft == 0])
    assert np.array_equal(out[8:16, 8:16], 255 - original[8:16, 8:16])


def test_fill_spreads_surrounding_colour_into_the_hole():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (200, 0, 0)
    image[:, 32:] = (0, 0, 200)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:44, 20:44] = 255
    image[mask > 0] = (0, 255, 0)  # what was there must disappear
    filled = inpaint.fill_masked(image, mask)
    assert np.array_equal(filled[mask == 0], image[mask == 0])
    assert filled[mask > 0][:, 1].max() == 0
    assert filled[32, 21, 0] > filled[32, 21, 2] and filled[32, 42, 2] > filled[32, 42, 0]


def test_outpaint_canvas_keeps_the_original_and_masks_the_margin():
    image = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    filled, mask, soft = inpaint.outpaint_canvas(image, Margins(16, 0, 5, 3), feather=4)
    assert filled.shape == (43, 69, 3)  # 48+16+5, 40+3: generate.py takes it to the grid and back
    assert np.array_equal(filled[:40, 16:64], image)
    assert mask[:, :16].min() == 255 and mask[40:].min() == 255
    assert soft[4:36, 21:59].max() == 0  # farther than the feather from the edge: untouched
    assert 0 < soft[20, 17] < 1  # the seam is soft


def test_padding_to_the_grid_keeps_the_picture_and_carries_its_edge_on():
    image = np.random.default_rng(2).integers(0, 256, (43, 69, 3), dtype=np.uint8)
    padded = inpaint.pad_to_grid(image)
    assert padded.shape == (48, 72, 3) and np.array_equal(padded[:43, :69], image)
    assert np.array_equal(padded[43, :69], image[41]), "mirrored past the edge"
    mask = np.zeros((43, 69), np.uint8)
    mask[42, 10] = 255
    assert (inpaint.pad_to_grid(mask)[42:, 10] == 255).all(), "a mask on the last row reaches past it"
    assert inpaint.pad_to_grid(image[:40, :64]).shape == (40, 64, 3)


@pytest.mark.parametrize("kind", ["sd1", "sd1-inpaint"])
def test_a_picture_off_the_grid_is_inpainted_at_its_size_down_to_its_last_rows(cpu_manager, tiny_models, kind):
    """A 100x75 picture (a 400x300 one, small): generated on the 8-pixel grid and cropped back."""
    source = np.random.default_rng(5).integers(0, 256, (75, 100, 3), dtype=np.uint8)
    mask = np.zeros((75, 100), np.uint8)
    mask[60:, 30:70] = 255  # down to the last row
    request = make_request(prompt="a lighthouse", model=str(tiny_models[kind].folder), mode=Mode.INPAINT,
                                init_image=source, mask=mask, mask_blur=0, width=100, height=75, steps=3, seed=1)
    result = generate.run(request, TaskState(), cpu_manager)[0]
    assert result.image.shape == (75, 100, 3) and (result.request.width, result.request.height) == (100, 75)
    assert np.array_equal(result.image[mask == 0], source[mask == 0]), "nothing outside the mask changed"
    assert (result.image[72:, 30:70] != source[72:, 30:70]).any(axis=-1).mean() > 0.9, "the last rows repainted"



def test_the_preview_of_a_picture_off_the_grid_shows_only_the_picture(cpu_manager, tiny_models):
    """A 100x75 run is generated at 104x80: its live preview leaves the padding out, so it fits the frame."""
    def last_preview(width: int, height: int):
        previews = []
        request = make_request(model=str(tiny_models["sd1"].folder), prompt="a kite", width=width, height=height,
                               steps=2, seed=1)
        generate.run(request, TaskState(on_step=lambda i, n, preview: previews.append(preview)), cpu_manager)
        return previews[-1]

    assert last_preview(104, 80).shape[:2] == (10, 13), "one preview pixel per latent cell of 104x80"
    assert last_preview(100, 75).shape[:2] == (9, 12), "the cells of the 100x75 picture, without the padding"
