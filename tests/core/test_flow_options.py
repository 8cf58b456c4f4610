"""The flow-matching families' shift and distilled guidance in the panel's settings, the CLI and the server's model
list; and what switching to such a family sets (desktop/core/families.py)."""

import pytest

from desktop.cli import UsageError, build_parser, request_from_args
from desktop.core.backend import ModelDescriptor
from desktop.core.errors import InvalidRequest
from desktop.core.families import FLOW_SAMPLERS
from desktop.core.generation_settings import GenerationSettings
from desktop.core.remote_protocol import describe_model, read_model
from desktop.core.request import GenerationRequest, Sampling


def test_the_settings_carry_shift_and_distilled_guidance_into_the_request_and_back():
    settings = GenerationSettings()
    assert (settings.shift, settings.distilled_cfg) == (0.0, 3.5)  # 0: the model's own shift ("Automatic")
    settings.shift, settings.distilled_cfg = 3.127, 4.25
    sampling = settings.to_request().sampling
    assert (sampling.shift, sampling.distilled_cfg) == (3.13, 4.2)  # as many decimals as their boxes show
    other = GenerationSettings()
    other.apply(GenerationRequest(sampling=Sampling(shift=2.5, distilled_cfg=6.0)))
    assert (other.shift, other.distilled_cfg) == (2.5, 6.0)
    with pytest.raises(InvalidRequest):
        settings.shift = -1.0


def test_recommend_sets_a_variants_values_and_turns_off_what_the_family_lacks():
    settings = GenerationSettings()
    settings.clip_skip, settings.hires_enabled, settings.sampler = 2, True, "DPM++ 2M SDE"
    settings.recommend("flux1", "dev")
    assert (settings.steps, settings.cfg_scale, settings.distilled_cfg, settings.sampler, settings.schedule) == (
        20, 1.0, 3.5, "Euler", "Automatic")
    assert (settings.clip_skip, settings.hires_enabled) == (1, False)
    settings.recommend("zimage", "turbo")
    assert (settings.steps, settings.cfg_scale) == (8, 1.0)
    settings.recommend("sd1")
    assert (settings.steps, settings.cfg_scale, settings.sampler, settings.schedule) == (20, 7.0, "DPM++ 2M", "Karras")


def test_fit_keeps_a_flow_familys_own_sampler():
    settings = GenerationSettings()
    settings.sampler = FLOW_SAMPLERS[-1]
    settings.fit("sd3")
    assert settings.sampler == FLOW_SAMPLERS[-1]
    settings.sampler = "LMS"  # no flow-matching form
    settings.fit("sd3")
    assert settings.sampler == "Euler"


def test_the_cli_takes_a_demo_model_of_each_family_with_its_shift_and_distilled_guidance():
    args = build_parser().parse_args(["--model", "demo:flux1", "--prompt", "a cat", "--shift", "3",
                                      "--distilled-cfg", "4"])
    request = request_from_args(args)
    assert request.model == "demo:flux1"
    assert (request.sampling.shift, request.sampling.distilled_cfg) == (3.0, 4.0)
    assert (request.sampling.steps, request.sampling.cfg_scale, request.sampling.sampler) == (20, 1.0, "Euler")
    request.validate()


def test_the_cli_names_the_demo_models_when_one_is_misspelt():
    with pytest.raises(UsageError, match="the demo models are demo, demo:sdxl, .*demo:flux1"):
        request_from_args(build_parser().parse_args(["--model", "demo:flux", "--prompt", "x"]))


def test_the_cli_keeps_its_sd_defaults_and_the_options_given():
    sd = request_from_args(build_parser().parse_args(["--prompt", "x"])).sampling
    assert (sd.steps, sd.cfg_scale, sd.sampler, sd.schedule, sd.shift) == (20, 7.0, "DPM++ 2M", "Automatic", 0.0)
    given = request_from_args(build_parser().parse_args(["--model", "demo:zimage", "--prompt", "x", "--steps", "12",
                                                         "--cfg", "2", "--sampler", "Heun"])).sampling
    assert (given.steps, given.cfg_scale, given.sampler) == (12, 2.0, "Heun")


def test_the_generate_help_names_the_demo_kinds_and_the_new_options():
    text = build_parser().format_help()
    for words in ("demo:sdxl", "demo:zimage", "demo:flux2-klein", "demo:flux1", "demo:sd3", "--shift",
                  "--distilled-cfg"):
        assert words in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_a_model_entry_carries_its_variant_and_an_old_servers_still_reads():
    entry = describe_model(ModelDescriptor("x", "flux1", "flux1-schnell", variant="schnell"), "x")
    assert read_model(entry).variant == "schnell"
    del entry["variant"]
    assert read_model(entry) == ModelDescriptor("x", "flux1", "flux1-schnell")
