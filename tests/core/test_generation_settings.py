"""GenerationSettings: the prompt panel's values as a plain model (no Qt)."""

import pytest

from desktop.core.errors import InvalidRequest
from desktop.core.generation_settings import GenerationSettings
from desktop.core.request import (
    Conditioning,
    GenerationRequest,
    InpaintArea,
    InpaintSettings,
    MaskedContent,
    Sampling,
)


def recorded(settings: GenerationSettings) -> list:
    events = []
    settings.changed.connect(lambda name, value: events.append((name, value)))
    return events


def test_a_setter_validates_and_names_the_field():
    settings = GenerationSettings()
    for name, bad in (("steps", 0), ("steps", 151), ("steps", 2.5), ("cfg_scale", float("nan")), ("seed", -2),
                      ("seed", 2**32), ("width", 63), ("clip_skip", 13), ("sampler", "Nope"),
                      ("masked_content", "paint"), ("model", ""), ("prompt", None), ("aspect_locked", 1)):
        with pytest.raises(InvalidRequest) as raised:
            settings.set(name, bad)
        assert raised.value.field == name
    assert settings.to_request() == GenerationRequest()  # nothing bad got in


def test_a_schedule_the_sampler_cannot_run_is_refused():
    settings = GenerationSettings()
    settings.sampler = "Euler a"
    with pytest.raises(InvalidRequest, match="Euler a supports the schedules Automatic"):
        settings.schedule = "Karras"


def test_setting_the_same_value_emits_nothing():
    settings = GenerationSettings()
    events = recorded(settings)
    settings.steps = 20
    settings.prompt = ""
    settings.masked_content = "original"  # the same value, as Qt hands it back (a str)
    settings.seed = -1.0  # a double spin box's -1
    assert events == []
    settings.steps = 30
    settings.steps = 30
    assert events == [("steps", 30)]


def test_a_sampler_without_the_schedule_moves_it_to_automatic():
    settings = GenerationSettings()
    events = recorded(settings)
    settings.sampler = "Euler a"
    assert events == [("sampler", "Euler a"), ("schedule", "Automatic")]


def test_the_aspect_lock_keeps_the_ratio_and_a_given_size_resets_it():
    settings = GenerationSettings()
    settings.set_size(768, 512)
    settings.aspect_locked = True
    events = recorded(settings)
    sizes = []
    settings.size_changed.connect(lambda *size: sizes.append(size))
    settings.width = 960
    assert (settings.width, settings.height) == (960, 640)
    assert events == [("width", 960), ("height", 640)]
    assert sizes == [(960, 640)]  # once: the frame never sees 960 x 512
    settings.height = 4000  # the width would pass 4096: it stops there
    assert (settings.width, settings.height) == (4096, 4000)
    settings.set_size(512, 512)  # the frame's size: taken as it is, and the new ratio is kept from here
    settings.set_size(512, 512)
    assert sizes == [(960, 640), (4096, 4000), (512, 512)]
    settings.width = 640
    assert (settings.width, settings.height) == (640, 640)
    assert settings.aspect_locked


def every_field_changed() -> GenerationRequest:
    return GenerationRequest(
        model="demo", width=640, height=448,
        sampling=Sampling(sampler="Euler", schedule="Exponential", steps=31, cfg_scale=5.5, seed=4_294_967_295,
                          batch_size=3, strength=0.4),
        conditioning=Conditioning(prompt="a lighthouse", negative_prompt="blurry", clip_skip=2),
        inpaint=InpaintSettings(mask_blur=9, masked_content=MaskedContent.FILL, area=InpaintArea.ONLY_MASKED,
                                padding=48),
    )


def test_apply_then_to_request_gives_the_request_back():
    request = every_field_changed()
    settings = GenerationSettings()
    settings.apply(request)
    assert settings.to_request() == request
    again = GenerationSettings()
    again.apply(settings.to_request())
    assert again.to_request() == request


def test_apply_emits_only_what_changed_and_keeps_the_model():
    settings = GenerationSettings()
    settings.model = "/models/painter.safetensors"
    settings.apply(GenerationRequest())
    events = recorded(settings)
    settings.apply(GenerationRequest(model="elsewhere.safetensors",
                                     conditioning=Conditioning(prompt="a cat")))
    assert events == [("prompt", "a cat")]
    assert settings.model == "/models/painter.safetensors"


def test_apply_brings_what_the_fields_cannot_hold_to_the_nearest_value():
    settings = GenerationSettings()
    settings.apply(GenerationRequest(
        width=9000, height=10,
        sampling=Sampling(sampler="Nonesuch", schedule="Beta", steps=500, seed=2**40, cfg_scale=99.0),
        inpaint=InpaintSettings(mask_blur=200, padding=900)))
    request = settings.to_request()
    assert (request.width, request.height) == (4096, 64)
    assert (request.sampling.sampler, request.sampling.schedule) == ("DPM++ 2M", "Beta")
    assert (request.sampling.steps, request.sampling.seed, request.sampling.cfg_scale) == (150, -1, 30.0)
    assert (request.inpaint.mask_blur, request.inpaint.padding) == (64, 256)
    settings.apply(GenerationRequest(sampling=Sampling(sampler="Euler a", schedule="Karras")))
    assert (settings.sampler, settings.schedule) == ("Euler a", "Automatic")
    settings.to_request().validate()


def test_apply_splits_a_legacy_combined_sampler_name():
    """A1111 before 1.9 wrote "DPM++ 2M Karras": that is DPM++ 2M with the Karras schedule, as the run reads it."""
    settings = GenerationSettings()
    settings.apply(GenerationRequest(sampling=Sampling(sampler="Euler a", schedule="Automatic")))
    settings.apply(GenerationRequest(sampling=Sampling(sampler="DPM++ SDE Karras", schedule="Automatic")))
    assert (settings.sampler, settings.schedule) == ("DPM++ SDE", "Karras")


@pytest.mark.parametrize("field, value", [("cfg_scale", 7.25), ("strength", 0.125)])
def test_a_number_is_kept_as_its_box_shows_it(field, value):
    """The panel's box shows the field's decimals; the request must run with the number shown."""
    settings = GenerationSettings()
    settings.set(field, value)
    assert settings.get(field) == value
    settings.set(field, value + 0.0001)
    assert settings.get(field) == value == round(settings.get(field), settings.field(field).decimals)


def test_apply_keeps_a_field_whose_value_is_of_the_wrong_kind():
    """A hand-edited settings file: each bad value keeps its field, the rest of the request still comes in."""
    settings = GenerationSettings()
    settings.apply(GenerationRequest(width="512", height=640, conditioning=Conditioning(prompt=5, negative_prompt="x"),
                                     sampling=Sampling(steps="20", seed=1.5, cfg_scale=None, strength=0.4)))
    assert (settings.width, settings.height, settings.prompt, settings.negative_prompt) == (512, 640, "", "x")
    assert (settings.steps, settings.seed, settings.cfg_scale, settings.strength) == (20, -1, 7.0, 0.4)
