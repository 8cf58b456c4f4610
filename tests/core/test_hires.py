"""Hires fix as AUTOMATIC1111 users know it: the request's part, its sizes, its infotext and reading it back."""

import numpy as np
import pytest

from desktop.core.errors import InvalidRequest
from desktop.core.gallery.metadata import meta_from_chunks, to_request
from desktop.core.generation_settings import GenerationSettings
from desktop.core.infotext import format_infotext, from_request, parse_infotext
from desktop.core.outputs import metadata_chunks
from desktop.core.request import GenerationRequest, Hires, Mode
from tests.support.requests import make_request


def hires_request(**hires) -> GenerationRequest:
    return make_request(prompt="a castle", seed=3, width=512, height=768, steps=20,
                        hires=Hires(enabled=True, **hires))


def test_a1111_defaults():
    assert Hires() == Hires(enabled=False, upscaler="Latent", scale=2.0, steps=0, denoise=0.7, resize_width=0,
                            resize_height=0)


@pytest.mark.parametrize("hires, size", [
    ({"scale": 2.0}, (1024, 1536)),
    ({"scale": 1.5}, (768, 1152)),
    ({"scale": 1.33}, (680, 1021)),  # int(512 * 1.33) x int(768 * 1.33), as A1111 computes it
    ({"resize_width": 1024}, (1024, 1536)),  # the other side follows the aspect ratio
    ({"resize_height": 1024}, (682, 1024)),
    ({"resize_width": 1024, "resize_height": 1024}, (1024, 1024)),  # covered, then cut at the centre
])
def test_the_final_size(hires, size):
    request = hires_request(**hires)
    request.validate()
    assert request.output_extent() == size
    assert request.extent == (512, 768)  # the first pass's size is the request's


def test_resize_to_both_sides_covers_the_size_first():
    assert Hires(resize_width=1024, resize_height=1024).upscaled(512, 768) == (1024, 1536)
    assert Hires(resize_width=1024, resize_height=512).upscaled(512, 768) == (1024, 1536)
    assert Hires(resize_width=600, resize_height=1200).upscaled(512, 768) == (800, 1200)


@pytest.mark.parametrize("hires, field", [
    ({"upscaler": ""}, "hires_upscaler"),  # any other one-line name is an upscaler file's, found when it runs
    ({"upscaler": "R-ESRGAN 4x+\nSteps: 1"}, "hires_upscaler"),
    ({"scale": 0.5}, "hires_scale"),
    ({"scale": 4.5}, "hires_scale"),
    ({"steps": -1}, "hires_steps"),
    ({"steps": 151}, "hires_steps"),
    ({"denoise": 0.0}, "hires_denoise"),
    ({"denoise": 1.5}, "hires_denoise"),
    ({"resize_width": 5000}, "hires_resize_width"),
    ({"resize_width": 40, "resize_height": 40}, "hires_resize"),
])
def test_bad_values_name_their_field_in_a_sentence(hires, field):
    with pytest.raises(InvalidRequest) as caught:
        hires_request(**hires).validate()
    assert caught.value.field == field
    assert "Traceback" not in str(caught.value)


def test_a_final_size_past_4096_is_refused_saying_the_size():
    with pytest.raises(InvalidRequest) as caught:
        make_request(prompt="x", width=1536, height=2048, hires=Hires(enabled=True, scale=2.5)).validate()
    assert caught.value.field == "hires_scale" and "3840x5120" in str(caught.value)


def test_off_checks_nothing_and_other_modes_turn_it_off():
    make_request(prompt="x", hires=Hires(enabled=False, scale=99.0)).validate()
    picture = np.zeros((64, 64, 3), np.uint8)
    resolved = make_request(prompt="x", mode=Mode.IMG2IMG, init_image=picture, width=64, height=64,
                            hires=Hires(enabled=True, scale=99.0)).resolved()
    assert not resolved.hires.enabled
    assert resolved.output_extent() == (64, 64)


def test_the_request_dict_round_trips_and_old_dicts_mean_off():
    request = hires_request(upscaler="Lanczos", scale=1.5, steps=12, denoise=0.45)
    data = request.to_dict()
    assert data["hires"] == {"enabled": True, "upscaler": "Lanczos", "scale": 1.5, "steps": 12, "denoise": 0.45,
                             "resize_width": 0, "resize_height": 0}
    assert GenerationRequest.from_dict(data) == request
    del data["hires"]
    assert GenerationRequest.from_dict(data).hires == Hires()
    with pytest.raises(InvalidRequest):
        GenerationRequest.from_dict({**request.to_dict(), "hires": {"enabled": "yes"}}).validate()


def test_infotext_has_a1111_keys_in_a1111_order():
    params = from_request(hires_request(steps=10, denoise=0.5), 3, "dreamshaper_8").params
    keys = list(params)
    assert keys[keys.index("Model"):] == ["Model", "Denoising strength", "Hires upscale", "Hires steps",
                                          "Hires upscaler"]
    assert (params["Size"], params["Denoising strength"], params["Hires upscale"], params["Hires steps"],
            params["Hires upscaler"]) == ("512x768", "0.5", "2", "10", "Latent")


def test_infotext_leaves_hires_steps_out_when_0_and_writes_the_resize_size():
    params = from_request(hires_request(resize_width=1024, resize_height=1024), 3, "m").params
    assert "Hires steps" not in params and "Hires upscale" not in params
    assert params["Hires resize"] == "1024x1024" and params["Denoising strength"] == "0.7"
    off = from_request(make_request(prompt="x", hires=Hires(enabled=False)), 3, "m").params
    assert not any(key.startswith("Hires") or key == "Denoising strength" for key in off)


@pytest.mark.parametrize("hires", [
    {"upscaler": "Latent (nearest)", "scale": 1.5, "steps": 10, "denoise": 0.55},
    {"upscaler": "Lanczos", "resize_width": 1024, "resize_height": 0},
])
def test_a_picture_made_with_it_reads_back_with_it(hires):
    request = hires_request(**hires)
    chunks = metadata_chunks(request, 3, "m")
    base = make_request(prompt="old")
    assert to_request(meta_from_chunks(chunks), base).hires == request.hires  # Sfumato's own record
    a1111_only = to_request(meta_from_chunks({"parameters": chunks["parameters"]}), base)
    assert a1111_only.hires == request.hires  # its A1111 text alone


A1111_HIRES = """\
a castle on a hill, golden hour
Negative prompt: blurry
Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 42, Size: 512x768, \
Model hash: 6ce0161689, Model: dreamshaper_8, Denoising strength: 0.45, Hires upscale: 2, Hires steps: 10, \
Hires upscaler: Latent (nearest-exact), Version: v1.6.0"""


def test_use_all_parameters_of_an_a1111_hires_picture_turns_hires_fix_on_in_the_panel():
    settings = GenerationSettings()
    settings.apply(to_request(meta_from_chunks({"parameters": A1111_HIRES}), settings.to_request()))
    assert (settings.hires_enabled, settings.hires_upscaler, settings.hires_scale, settings.hires_steps,
            settings.hires_denoise) == (True, "Latent (nearest-exact)", 2.0, 10, 0.45)
    assert (settings.width, settings.height, settings.steps) == (512, 768, 25)  # the first pass's size
    request = settings.to_request()
    assert request.hires.enabled and request.output_extent() == (1024, 1536)


def test_a_model_upscalers_name_is_kept_and_a_picture_without_hires_turns_it_off():
    settings = GenerationSettings()
    settings.hires_upscaler = "Lanczos"
    text = A1111_HIRES.replace("Latent (nearest-exact)", "R-ESRGAN 4x+")
    settings.apply(to_request(meta_from_chunks({"parameters": text}), settings.to_request()))
    assert settings.hires_enabled and settings.hires_upscaler == "R-ESRGAN 4x+"  # the window finds its file or says
    settings.hires_upscaler = "Lanczos"
    img2img = A1111_HIRES.split(", Hires upscale")[0]  # a denoising strength alone: an img2img picture
    settings.apply(to_request(meta_from_chunks({"parameters": img2img}), settings.to_request()))
    assert not settings.hires_enabled and settings.hires_upscaler == "Lanczos"


def test_the_infotext_parses_back_exactly():
    info = from_request(hires_request(upscaler="Latent (bicubic antialiased)", steps=7), 3, "m")
    assert parse_infotext(format_infotext(info)).params == info.params


@pytest.mark.parametrize("text, schedule", [
    ("[a:b:0.5]", [(10, "b")]),  # edited within the first pass: the second starts edited
    ("[a:b:12]", [(10, "b")]),
    ("[a:b:25]", [(5, "a"), (10, "b")]),  # a step past the first pass's 20 counts on into this one
    ("[a:b:1.5]", [(5, "a"), (10, "b")]),  # 1 + a fraction: that far into this pass
    ("[a|b]", [(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "a"), (6, "b"), (7, "a"), (8, "b"), (9, "a"), (10, "b")]),
    ("plain", [(10, "plain")]),
])
def test_prompt_editing_in_the_second_pass_counts_on_from_the_first_as_a1111(text, schedule):
    from desktop.core.prompts import prompt_schedule

    assert prompt_schedule(text, 10, after=20) == schedule
    assert prompt_schedule("[a:b:0.5]", 10) == [(5, "a"), (10, "b")]  # a first pass: as before
