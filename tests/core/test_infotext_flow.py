"""Forge's "Distilled CFG Scale" and Sfumato's "Shift" in the parameters text: written where Forge writes them,
read back by Use all parameters; an SD picture's text leaves them at the defaults."""

from desktop.core.gallery.metadata import meta_from_chunks, to_request
from desktop.core.infotext import format_infotext, from_request, parse_infotext
from desktop.core.request import GenerationRequest, Sampling

FORGE = ("a cat in a hat\nSteps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
         "Seed: 42, Size: 1024x1024, Model hash: abc, Model: flux1-dev-fp8, Version: f2.0.1v1.10.1")
SD = ("a cat\nNegative prompt: ugly\n"
      "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 7, Size: 512x512")


def use_all_parameters(text: str, base: GenerationRequest) -> GenerationRequest:
    return to_request(meta_from_chunks({"parameters": text}), base)


def test_a_forge_flux_picture_reads_back_its_distilled_cfg_scale():
    request = use_all_parameters(FORGE, GenerationRequest(sampling=Sampling(distilled_cfg=2.0, shift=3.0)))
    assert request.sampling.distilled_cfg == 3.5
    assert request.sampling.shift == 0.0  # not written: the model's own schedule
    assert (request.sampling.cfg_scale, request.sampling.sampler, request.sampling.steps) == (1.0, "Euler", 20)


def test_an_sd_picture_leaves_them_at_the_defaults():
    request = use_all_parameters(SD, GenerationRequest())
    assert (request.sampling.distilled_cfg, request.sampling.shift) == (3.5, 0.0)
    assert request.sampling.cfg_scale == 6.0


def test_both_keys_round_trip_where_forge_writes_them():
    request = GenerationRequest(sampling=Sampling(sampler="Euler", schedule="Automatic", cfg_scale=1.0))
    engine_params = (("Distilled CFG Scale", "4.5"), ("Shift", "3.25"), ("Pad conds", "True"))
    text = format_infotext(from_request(request, seed=5, model_name="flux", extra=engine_params))
    params = list(parse_infotext(text).params)
    assert params[params.index("CFG scale") + 1:][:3] == ["Distilled CFG Scale", "Shift", "Seed"]
    assert params.count("Distilled CFG Scale") == 1 and params[-1] == "Pad conds"
    back = use_all_parameters(text, GenerationRequest())
    assert (back.sampling.distilled_cfg, back.sampling.shift) == (4.5, 3.25)


def test_the_request_alone_writes_neither():
    """The engine writes them (Result.params) only for models that take them: an SD picture's text has neither."""
    text = format_infotext(from_request(GenerationRequest(sampling=Sampling(shift=3.0)), 1, "sd"))
    assert "Shift" not in text and "Distilled" not in text


def test_values_out_of_range_or_not_numbers_keep_the_panels():
    text = "x\nSteps: 20, CFG scale: 1, Distilled CFG Scale: 99, Shift: lots, Seed: 1"
    request = use_all_parameters(text, GenerationRequest(sampling=Sampling(distilled_cfg=2.5, shift=1.5)))
    assert (request.sampling.distilled_cfg, request.sampling.shift) == (2.5, 1.5)
