"""Live mode's draft request (desktop/core/live.py): the Fast plan's settings at a draft size, one seed."""

import numpy as np
import pytest

from desktop.core import fewstep, live
from desktop.core.geometry import Extent
from desktop.core.request import Hires, Images, Mode
from tests.support.requests import make_request

LCM_MODEL = fewstep.FastPlan(fewstep.recipe("lcm"), "", "tiny", "Fast: LCM model")
LCM_LORA = fewstep.FastPlan(fewstep.recipe("lcm"), "lcm-lora-sdv1-5", "tiny", "Fast: LCM LoRA")


def full(mode=Mode.TXT2IMG, width=512, height=768, **fields):
    return make_request(prompt="a red kite", model="some/model.safetensors", width=width, height=height, steps=30,
                        cfg_scale=7.0, sampler="DPM++ 2M", seed=-1, batch_size=4, **fields).replace(mode=mode)


@pytest.mark.parametrize(("frame", "size", "expected"), [
    (Extent(512, 768), 256, Extent(168, 256)),
    (Extent(768, 512), 512, Extent(512, 344)),
    (Extent(1024, 1024), 256, Extent(256, 256)),
    (Extent(200, 120), 256, Extent(200, 120)),  # a small frame is never scaled up
    (Extent(2048, 128), 256, Extent(256, 64)),  # at least 64 a side
])
def test_the_draft_size_is_the_frame_scaled_to_its_long_side_on_the_grid(frame, size, expected):
    assert live.draft_extent(frame, size) == expected


def test_a_draft_takes_the_plans_settings_one_picture_a_fixed_seed_and_the_tiny_decoder():
    draft = live.draft_request(full().replace(hires=Hires(enabled=True)), LCM_MODEL, 256, seed=1234)
    assert (draft.sampling.sampler, draft.sampling.steps, draft.sampling.cfg_scale) == ("LCM", 4, 1.0)
    assert draft.sampling.seed == 1234 and draft.sampling.batch_size == 1
    assert draft.decoder == "tiny" and not draft.hires.enabled
    assert (draft.width, draft.height) == (168, 256) and draft.mode is Mode.TXT2IMG
    assert draft.conditioning.prompt == "a red kite"
    draft.resolved()  # a request the engine takes


def test_a_few_step_lora_is_added_to_the_prompt_once():
    draft = live.draft_request(full(), LCM_LORA, 256, seed=1)
    assert draft.conditioning.prompt == "a red kite, <lora:lcm-lora-sdv1-5:1>"
    again = live.draft_request(draft, LCM_LORA, 256, seed=1)
    assert again.conditioning.prompt.count("<lora:") == 1


@pytest.mark.parametrize("prompt", ["a cat <lora:lcm-lora-sdv1-5>", "a cat <lora:LCM-LoRA-SDv1-5:0.8>"])
def test_the_lora_the_person_named_in_any_case_or_without_a_weight_is_not_added_again(prompt):
    draft = live.draft_request(full().replace(conditioning=full().conditioning.replace(prompt=prompt)), LCM_LORA, 256,
                               seed=1)
    assert draft.conditioning.prompt == prompt  # the LoRA runs once


def test_fast_skips_a_lora_whose_name_breaks_its_tag_and_says_to_rename_it_when_it_is_the_only_one():
    broken = {"lcm:lora=sd15>": fewstep.LoraInfo("lcm", "sd1")}
    plan = fewstep.fast_plan("sd1", "", {**broken, "lcm-lora-sdv1-5": fewstep.LoraInfo("lcm", "sd1")})
    assert plan.lora == "lcm-lora-sdv1-5"
    with pytest.raises(fewstep.NoFastPath) as refused:
        fewstep.fast_plan("sd1", "", broken)
    assert str(refused.value).startswith("The few-step LoRA lcm:lora=sd15> cannot be named") and \
        "rename its file" in str(refused.value) and str(refused.value).endswith("Fast will use it.")


def test_a_picture_in_the_frame_is_redrawn_at_the_live_strength_with_the_plans_step_count():
    picture = np.full((768, 512, 3), 90, np.uint8)
    draft = live.draft_request(full(Mode.IMG2IMG, init_image=picture), LCM_MODEL, 256, seed=1)
    assert draft.mode is Mode.IMG2IMG and draft.images.init.shape == (256, 168, 3)
    assert draft.sampling.strength == live.LIVE_STRENGTH
    assert int(draft.sampling.steps * draft.sampling.strength) == 4  # what diffusers runs
    draft.resolved()


def test_a_painted_mask_makes_an_inpaint_draft_and_a_mask_scaled_away_an_img2img_one():
    picture = np.full((768, 512, 3), 90, np.uint8)
    mask = np.zeros((768, 512), np.uint8)
    mask[100:300, 100:300] = 255
    draft = live.draft_request(full(Mode.INPAINT, init_image=picture, mask=mask, strength=0.8), LCM_MODEL, 256, 1)
    assert draft.mode is Mode.INPAINT and draft.images.mask.shape == (256, 168) and draft.images.mask.any()
    assert draft.sampling.strength == 0.8
    draft.resolved()
    speck = np.zeros((768, 512), np.uint8)
    speck[0, 0] = 1
    draft = live.draft_request(full(Mode.INPAINT, init_image=picture, mask=speck), LCM_MODEL, 256, 1)
    assert draft.mode is Mode.IMG2IMG and draft.images.mask is None


def test_a_frame_partly_empty_is_outpainted_at_the_draft_size():
    picture = np.zeros((768, 512, 4), np.uint8)
    picture[:, :256] = (90, 90, 90, 255)
    draft = live.draft_request(full(Mode.OUTPAINT, images=Images(picture)), LCM_MODEL, 256, 1)
    assert draft.mode is Mode.OUTPAINT and draft.images.init.shape == (256, 168, 4)
    assert draft.resolved().output_extent() == Extent(168, 256)


def test_the_demo_model_has_a_plan_and_a_model_without_one_says_what_to_add(tmp_path):
    plan = live.model_plan("demo", "sd1", "", [])
    assert plan.recipe.sampler in ("LCM", "TCD") and plan.decoder == "tiny"
    with pytest.raises(live.NoFastPath) as refused:
        live.model_plan(str(tmp_path / "plain-sdxl.safetensors"), "sdxl", "", [str(tmp_path)])
    assert "LoRA" in str(refused.value) and "\n" not in str(refused.value)


def test_a_few_step_lora_in_the_folders_makes_a_plain_model_fast(tmp_path):
    from tests.support.addon_files import write_lora  # noqa: PLC0415 - only this test writes one

    write_lora(tmp_path / "loras" / "lcm-lora-sdv1-5.safetensors", "sd1")
    plan = live.model_plan(str(tmp_path / "plain.safetensors"), "sd1", "", [str(tmp_path)])
    assert plan.lora == "lcm-lora-sdv1-5" and plan.recipe.sampler == "LCM"


def test_a_draft_of_the_snapshot_matches_the_documents_own_request_for_the_frame():
    from desktop.core.brush import Brush
    from desktop.core.document import CanvasDocument
    from desktop.core.frame import frame_request
    from desktop.core.geometry import Bounds

    doc = CanvasDocument.new(Extent(640, 512))
    doc.set_frame(Bounds(256, 0, 512, 512))  # 128 px of it past the canvas's right edge
    layer = doc.active
    session = doc.begin_stroke(layer, Brush(size=80, colour=(200, 30, 30)))
    for x in range(150, 600, 10):
        session.to(x, 200)
    session.finish()
    base = full()
    draft = live.frame_draft(doc.snapshot(), base, LCM_MODEL, 256, seed=5)
    expected = live.draft_request(frame_request(doc, base), LCM_MODEL, 256, seed=5)
    assert draft.mode is expected.mode is Mode.OUTPAINT  # a stroke on a transparent layer, and the empty edge
    assert np.array_equal(draft.images.init, expected.images.init)
    assert (draft.width, draft.height) == (256, 256)
