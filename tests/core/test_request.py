import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop.core.errors import InvalidRequest
from desktop.core.geometry import Margins
from desktop.core.request import (
    MAX_SEED, Conditioning, GenerationRequest, InpaintArea, InpaintSettings, MaskedContent, Mode, Sampling)
from desktop.core.samplers import SAMPLERS
from tests.support.requests import make_request


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
        ({"clip_skip": 0}, "clip_skip"),
        ({"clip_skip": 13}, "clip_skip"),
        ({"mask_blur": -1}, "mask_blur"),
        ({"inpaint_padding": 2000}, "inpaint_padding"),
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
        make_request(**{"prompt": "p", **changes}).validate()
    assert caught.value.field == field
    assert field in str(caught.value)


def test_resolved_picks_a_concrete_seed_and_normalises_the_sampler():
    resolved = make_request(seed=-1, sampler="DPM++ 2M Karras", schedule="Automatic").resolved()
    assert 0 <= resolved.sampling.seed < 2**32
    assert (resolved.sampling.sampler, resolved.sampling.schedule) == ("DPM++ 2M", "Karras")
    assert resolved.resolved().sampling.seed == resolved.sampling.seed  # resolving again keeps it


def test_batch_seeds_count_up_from_the_seed():
    assert make_request(seed=41, batch_size=3).sampling.seeds == [41, 42, 43]


def test_batch_seeds_wrap_past_the_largest_seed_to_0():
    """Seeds are 32-bit: a batch from 4294967294 records 4294967294, 4294967295, 0 (never 4294967296)."""
    assert make_request(seed=2**32 - 2, batch_size=3).sampling.seeds == [2**32 - 2, 2**32 - 1, 0]


def test_an_outpaint_smaller_than_the_smallest_size_is_refused_before_any_model_loads():
    request = make_request(prompt="p", mode=Mode.OUTPAINT, init_image=image(1, 1), expand=Margins(1, 1, 1, 1))
    with pytest.raises(InvalidRequest) as caught:
        request.resolved()
    assert caught.value.field == "expand" and "under 64x64" in str(caught.value)


def test_a_prompt_that_was_not_utf8_is_refused_with_where():
    """Bytes that were not UTF-8 arrive as lone surrogates (Python's surrogateescape); a tokenizer cannot take them."""
    with pytest.raises(InvalidRequest) as caught:
        make_request(prompt="a \udcff cat").validate()
    assert caught.value.field == "prompt" and "character 3 is not valid text" in str(caught.value)


def test_outpaint_size_is_the_image_plus_margins():
    request = make_request(mode=Mode.OUTPAINT, init_image=image(100, 60), expand=Margins(10, 0, 3, 5))
    resolved = request.resolved()
    assert (resolved.width, resolved.height) == (113, 65)


def test_any_size_from_64_to_4096_is_valid():
    """The engine generates on the 8-pixel grid and crops back, so a 400x300 picture is 400x300."""
    make_request(width=400, height=300).validate()
    make_request(width=65, height=4095).validate()
    mask = np.full((300, 400), 255, np.uint8)
    request = make_request(mode=Mode.INPAINT, init_image=image(400, 300), mask=mask, width=400, height=300)
    assert tuple(request.resolved().output_extent()) == (400, 300)


def test_only_masked_inpaint_returns_the_original_size():
    mask = np.zeros((300, 200), np.uint8)
    mask[10:20, 10:20] = 255
    request = make_request(
        mode=Mode.INPAINT, init_image=image(200, 300), mask=mask, inpaint_area=InpaintArea.ONLY_MASKED
    )
    assert tuple(request.output_extent()) == (200, 300)


def test_dict_round_trip_keeps_every_field_but_images():
    request = make_request(mode=Mode.OUTPAINT, prompt="a, b: c\n", seed=7, expand=Margins(8, 0, 16, 0))
    assert GenerationRequest.from_dict(request.to_dict()) == request
    with pytest.raises(InvalidRequest):
        GenerationRequest.from_dict({"mode": "teleport"})


# A version 1 `sfumato` chunk, as pictures saved before the request had parts carry it (and settings.last_request).
V1_FLAT = {
    "mode": "inpaint", "prompt": "a lighthouse", "negative_prompt": "fog", "model": "dreamshaper_8",
    "sampler": "Euler a", "schedule": "Automatic", "steps": 12, "cfg_scale": 6.5, "seed": 42, "width": 512,
    "height": 768, "batch_size": 1, "strength": 0.6, "mask_blur": 8, "masked_content": "fill",
    "inpaint_area": "only masked", "inpaint_padding": 16, "expand": [0, 0, 0, 0],
}


def test_a_version_1_flat_dict_reads_back_into_the_parts():
    request = GenerationRequest.from_dict(V1_FLAT)
    assert request == GenerationRequest(
        mode=Mode.INPAINT, model="dreamshaper_8", width=512, height=768,
        sampling=Sampling("Euler a", "Automatic", 12, 6.5, 42, 1, 0.6),
        conditioning=Conditioning("a lighthouse", "fog"),
        inpaint=InpaintSettings(8, MaskedContent.FILL, InpaintArea.ONLY_MASKED, 16),
    )
    assert GenerationRequest.from_dict(request.to_dict()) == request


def test_a_wrong_kind_of_value_in_a_part_names_its_field():
    with pytest.raises(InvalidRequest) as caught:
        GenerationRequest.from_dict({"inpaint": {"area": "everywhere"}})
    assert caught.value.field == "inpaint_area"
    with pytest.raises(InvalidRequest) as caught:
        GenerationRequest.from_dict({"sampling": "fast"})
    assert caught.value.field == "sampling"


def test_the_conditioning_is_hashable_and_equal_by_value():
    """It keys the prompt-encoding cache: an equal conditioning must find the same encoding."""
    first, second = Conditioning("a cat", "dog", 2), Conditioning("a cat", "dog", 2)
    assert first == second and hash(first) == hash(second) and first != second.replace(clip_skip=1)


_text = st.text(max_size=40)
_samplings = st.builds(
    Sampling,
    sampler=st.sampled_from(list(SAMPLERS)), schedule=st.sampled_from(["Automatic", "Karras"]),
    steps=st.integers(1, 150), cfg_scale=st.floats(0, 30), seed=st.integers(-1, MAX_SEED),
    batch_size=st.integers(1, 16), strength=st.floats(0, 1),
)
_requests = st.builds(
    GenerationRequest,
    mode=st.sampled_from(Mode), model=_text.filter(bool), width=st.integers(64, 4096), height=st.integers(64, 4096),
    sampling=_samplings,
    conditioning=st.builds(Conditioning, prompt=_text, negative_prompt=_text, clip_skip=st.integers(1, 12)),
    inpaint=st.builds(InpaintSettings, mask_blur=st.integers(0, 256), masked_content=st.sampled_from(MaskedContent),
                      area=st.sampled_from(InpaintArea), padding=st.integers(0, 1024)),
    outpaint=st.builds(Margins, *[st.integers(0, 2048)] * 4),
)


@settings(max_examples=200, deadline=None)
@given(_requests)
def test_every_request_round_trips_through_its_dict_as_json(request):
    data = json.loads(json.dumps(request.to_dict()))
    assert GenerationRequest.from_dict(data) == request


@pytest.mark.parametrize("what, words", [("control", "control layers"), ("reference", "reference pictures")])
def test_too_many_controls_or_references_say_how_many_to_hide(what, words):
    from desktop.core.control import Control, Reference

    item = Control("demo", image()) if what == "control" else Reference(image())
    request = make_request().replace(**{f"{what}s": (item,) * 5})
    with pytest.raises(InvalidRequest) as caught:
        request.validate()
    assert caught.value.field == what
    assert caught.value.message == f"at most 4 {words} work at once, and 5 are in use: hide or remove 1 of them."
