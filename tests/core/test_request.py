import numpy as np
import pytest

from desktop.core.errors import InvalidRequest
from desktop.core.geometry import Margins
from desktop.core.request import GenerationRequest, InpaintArea, Mode


def image(w=64, h=64):
    return np.zeros((h, w, 3), np.uint8)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"width": 63}, "width"),
        ({"height": 4104}, "height"),
        ({"steps": 0}, "steps"),
        ({"steps": 151}, "steps"),
        ({"cfg_scale": 30.5}, "cfg_scale"),
        ({"cfg_scale": float("nan")}, "cfg_scale"),
        ({"strength": 1.5}, "strength"),
        ({"batch_size": 17}, "batch_size"),
        ({"seed": 2**32}, "seed"),
        ({"seed": -2}, "seed"),
        ({"sampler": "Nope"}, "sampler"),
        ({"sampler": "DDIM", "schedule": "Karras"}, "schedule"),
        ({"prompt": "x" * 20_001}, "prompt"),
        ({"steps": True}, "steps"),
        ({"mode": Mode.IMG2IMG}, "init_image"),
        ({"mode": Mode.INPAINT, "init_image": image()}, "mask"),
        ({"mode": Mode.INPAINT, "init_image": image(), "mask": np.zeros((64, 64), np.uint8)}, "mask"),
        ({"mode": Mode.IMG2IMG, "init_image": image(), "strength": 0.01, "steps": 20}, "strength"),
        ({"mode": Mode.OUTPAINT, "init_image": image()}, "expand"),
        ({"mode": Mode.OUTPAINT, "init_image": image(4000, 64), "expand": Margins(0, 0, 200, 0)}, "expand"),
    ],
)
def test_invalid_values_name_their_field(changes, field):
    with pytest.raises(InvalidRequest) as caught:
        GenerationRequest(**{"prompt": "p", **changes}).validate()
    assert caught.value.field == field
    assert field in str(caught.value)


def test_resolved_picks_a_concrete_seed_and_normalises_the_sampler():
    resolved = GenerationRequest(seed=-1, sampler="DPM++ 2M Karras", schedule="Automatic").resolved()
    assert 0 <= resolved.seed < 2**32
    assert (resolved.sampler, resolved.schedule) == ("DPM++ 2M", "Karras")
    assert resolved.resolved().seed == resolved.seed  # resolving again keeps it


def test_batch_seeds_count_up_from_the_seed():
    assert GenerationRequest(seed=41, batch_size=3).seeds == [41, 42, 43]


def test_batch_seeds_wrap_past_the_largest_seed_to_0():
    """Seeds are 32-bit: a batch from 4294967294 records 4294967294, 4294967295, 0 (never 4294967296)."""
    assert GenerationRequest(seed=2**32 - 2, batch_size=3).seeds == [2**32 - 2, 2**32 - 1, 0]


def test_an_outpaint_smaller_than_the_smallest_size_is_refused_before_any_model_loads():
    request = GenerationRequest(prompt="p", mode=Mode.OUTPAINT, init_image=image(1, 1), expand=Margins(1, 1, 1, 1))
    with pytest.raises(InvalidRequest) as caught:
        request.resolved()
    assert caught.value.field == "expand" and "under 64x64" in str(caught.value)


def test_a_prompt_that_was_not_utf8_is_refused_with_where():
    """Bytes that were not UTF-8 arrive as lone surrogates (Python's surrogateescape); a tokenizer cannot take them."""
    with pytest.raises(InvalidRequest) as caught:
        GenerationRequest(prompt="a \udcff cat").validate()
    assert caught.value.field == "prompt" and "character 3 is not valid text" in str(caught.value)


def test_outpaint_size_is_the_image_plus_margins():
    request = GenerationRequest(mode=Mode.OUTPAINT, init_image=image(100, 60), expand=Margins(10, 0, 3, 5))
    resolved = request.resolved()
    assert (resolved.width, resolved.height) == (113, 65)


def test_any_size_from_64_to_4096_is_valid():
    """The engine generates on the 8-pixel grid and crops back, so a 400x300 picture is 400x300."""
    GenerationRequest(width=400, height=300).validate()
    GenerationRequest(width=65, height=4095).validate()
    mask = np.full((300, 400), 255, np.uint8)
    request = GenerationRequest(mode=Mode.INPAINT, init_image=image(400, 300), mask=mask, width=400, height=300)
    assert tuple(request.resolved().output_extent()) == (400, 300)


def test_only_masked_inpaint_returns_the_original_size():
    mask = np.zeros((300, 200), np.uint8)
    mask[10:20, 10:20] = 255
    request = GenerationRequest(
        mode=Mode.INPAINT, init_image=image(200, 300), mask=mask, inpaint_area=InpaintArea.ONLY_MASKED
    )
    assert tuple(request.output_extent()) == (200, 300)


def test_dict_round_trip_keeps_every_field_but_images():
    request = GenerationRequest(mode=Mode.OUTPAINT, prompt="a, b: c\n", seed=7, expand=Margins(8, 0, 16, 0))
    assert GenerationRequest.from_dict(request.to_dict()) == request
    with pytest.raises(InvalidRequest):
        GenerationRequest.from_dict({"mode": "teleport"})
