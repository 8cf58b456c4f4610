"""Hostile hires-fix values in a picture's text or a request dict: never a traceback, always a request that runs."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop.core.errors import InvalidRequest
from desktop.core.gallery.metadata import meta_from_chunks, to_request
from desktop.core.generation_settings import GenerationSettings
from desktop.core.request import GenerationRequest
from tests.support.requests import make_request

BASE = "a castle\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Denoising strength: {d}, " \
       "Hires upscale: {u}, Hires steps: {s}, Hires upscaler: {n}, Hires resize: {r}"
WEIRD = st.sampled_from(["nan", "inf", "-1", "0", "1e400", "99999", "2.5", "", "x", "1024x0", "0x0", "4097x4097",
                         "Latent", "latent (NEAREST)", "🙂", "1" * 500, "[1, 2]"])


@settings(max_examples=150, deadline=None)
@given(d=WEIRD, u=WEIRD, s=WEIRD, n=WEIRD, r=WEIRD)
def test_any_hires_values_in_a_picture_give_a_request_the_panel_takes(d, u, s, n, r):
    text = BASE.format(d=d, u=u, s=s, n=n, r=r)
    request = to_request(meta_from_chunks({"parameters": text}), make_request(prompt="old"))
    settings_ = GenerationSettings()
    settings_.apply(request)  # never raises: values it cannot take leave the field as it was
    hires = settings_.to_request().hires
    assert 1 <= hires.scale <= 4 and 0 <= hires.steps <= 150 and 0 < hires.denoise <= 1


@pytest.mark.parametrize("hires", [{"scale": "2"}, {"steps": 2.5}, {"denoise": None}, {"upscaler": 7},
                                   {"resize_width": -8}, {"enabled": 1}, {"scale": float("nan")}])
def test_a_request_dict_with_bad_hires_values_is_refused_in_a_sentence(hires):
    data = {**make_request(prompt="x").to_dict(), "hires": {"enabled": True, **hires}}
    with pytest.raises(InvalidRequest) as caught:
        GenerationRequest.from_dict(data).validate()
    assert caught.value.field.startswith("hires")
