"""Few-step models and LoRAs: recognised from real-world names and metadata, their settings, and the Fast plan."""

import json
import re

import pytest

from desktop.core import addons, fewstep, modelfiles
from desktop.core.errors import SfumatoError
from desktop.core.fewstep import LoraInfo, NoFastPath, fast_plan, kind_of, recipe, recognise, steps_in_name
from desktop.core.modelfiles import Family, identify
from desktop.core.samplers import SAMPLERS, SGM_UNIFORM
from tests.core.test_modelfiles import SD1, SDXL, make_diffusers, write_safetensors
from tests.support.addon_files import write_lora

# Names as people have them: Hub ids, released files, Civitai checkpoints, diffusers folders.
FEW_STEP_NAMES = [
    ("stabilityai/sd-turbo", "turbo"),
    ("stabilityai/sdxl-turbo", "turbo"),
    ("sd_xl_turbo_1.0_fp16.safetensors", "turbo"),
    ("sd_turbo.safetensors", "turbo"),
    ("dreamshaperXL_v21TurboDPMSDE", "turbo"),
    ("TurboVisionXL_v431", "turbo"),  # a Turbo finetune: its camel-case name says so
    ("latent-consistency/lcm-lora-sdv1-5", "lcm"),
    ("lcm-lora-sdxl", "lcm"),
    ("LCM_Dreamshaper_v7", "lcm"),
    ("SimianLuo/LCM_Dreamshaper_v7", "lcm"),
    ("lcm_lora_sd15.safetensors", "lcm"),
    ("h1t/TCD-SD15", "tcd"),
    ("TCD-SDXL-LoRA", "tcd"),
    ("tcd_sdxl_lora", "tcd"),
    ("ByteDance/Hyper-SD", "hyper"),
    ("Hyper-SDXL-4steps-lora.safetensors", "hyper"),
    ("Hyper-SD15-8steps-CFG-lora.safetensors", "hyper"),
    ("Hyper-SDXL-1step-lora", "hyper"),
    ("HyperSDXL_12steps_CFG", "hyper"),
    ("juggernautXL_hyper", "hyper"),
    ("zavychromaxl_hyper_v2", "hyper"),
    ("sdxl_hyper_8steps", "hyper"),
    ("ByteDance/SDXL-Lightning", "lightning"),
    ("sdxl_lightning_4step_unet.safetensors", "lightning"),
    ("sdxl_lightning_8step_lora", "lightning"),
    ("realvisxlV40_v40LightningBakedvae", "lightning"),
    ("dreamshaperXL_lightningDPMSDE", "lightning"),
    ("juggernautXL_v9Rdphoto2Lightning", "lightning"),
    ("RealVisXL_V5.0_Lightning", "lightning"),
    ("tianweiy/DMD2", "dmd2"),
    ("dmd2_sdxl_4step_lora", "dmd2"),
    ("dmd2_sdxl_4step_lora_fp16.safetensors", "dmd2"),
]
# Names that are not few-step, some of them close to one.
OTHER_NAMES = [
    "v1-5-pruned-emaonly",
    "sd_xl_base_1.0",
    "HyperRealism_v3",  # hyper-realism, not Hyper-SD
    "hyperrealistic_v10",
    "lightning_bolt_style",  # a LoRA of lightning bolts, not SDXL-Lightning
    "Lightning_Style_XL",
    "hyper_3d_render",
    "LightningMagicXL",
    "turbovisionxl",  # one lower-case word: its name does not tell (a mark does)
    "abtcdxyz",
    "dreamshaper_8",
    "add_detail",
    "lcmx_style",
    "dmd_portrait",
    "epicrealism_naturalSinRC1VAE",
]


@pytest.mark.parametrize("name, kind", FEW_STEP_NAMES)
def test_few_step_names_are_recognised(name, kind):
    assert recognise(name) == kind


@pytest.mark.parametrize("name", OTHER_NAMES)
def test_other_names_are_not_few_step(name):
    assert recognise(name) == ""


@pytest.mark.parametrize("name, steps", [
    ("Hyper-SDXL-4steps-lora", 4), ("Hyper-SD15-8steps-CFG-lora", 8), ("Hyper-SDXL-1step-lora", 1),
    ("HyperSDXL_12steps_CFG", 12), ("sdxl_lightning_2step_unet", 2), ("dmd2_sdxl_4step_lora", 4),
    ("lightning 8 steps", 8), ("Lightning4steps", 4), ("lcm-lora-sdv1-5", None), ("sd_xl_turbo_1.0", None),
    ("model_1000steps", None), ("stepsister_v2", None),
])
def test_steps_in_name(name, steps):
    assert steps_in_name(name) == steps


@pytest.mark.parametrize("metadata, kind", [
    ({"ss_output_name": "lcm-lora-sdxl"}, "lcm"),
    ({"modelspec.title": "Hyper-SD 8 steps"}, "hyper"),
    ({"modelspec.title": "TCD LoRA for SDXL"}, "tcd"),
    ({"ss_output_name": "dmd2_sdxl_4step_lora"}, "dmd2"),
    ({"ss_sd_model_name": "sdxl_lightning_4step.safetensors"}, ""),  # the base it was trained on, not the LoRA
    ({"ss_output_name": "lcm " + "x" * 600}, ""),  # a text that long is not a name
    ({"ss_output_name": "add_detail"}, ""),
    ({}, ""),
])
def test_metadata_says_the_kind(metadata, kind):
    assert recognise("my_lora", metadata) == kind


@pytest.mark.parametrize("metadata", [
    {"modelspec.description": "Turbo-charged realism for SDXL"},
    {"modelspec.description": "Works great with LCM LoRA at 8 steps"},
    {"ss_training_comment": "lightning fast neon look"},
    {"modelspec.tags": "lcm, tcd"},
])
def test_free_text_metadata_does_not_make_a_model_few_step(metadata):
    """Only name-like keys are read: descriptions, comments and tags talk about other things (the user's mark
    covers a model they do not name)."""
    assert recognise("realPhotoXL_v3", metadata) == ""


def test_the_name_wins_over_metadata():
    assert recognise("Hyper-SDXL-8steps-lora", {"ss_output_name": "lcm-lora-sdxl"}) == "hyper"


def test_marks_win_and_none_says_not_few_step():
    marks = {"turbovisionxl": "turbo", "lightning_bolt_style": "none", "odd": "bogus"}
    assert kind_of("turbovisionxl", "", marks) == "turbo"
    assert kind_of("realvisxlV40_v40LightningBakedvae", "lightning", {"realvisxlV40_v40LightningBakedvae": "none"}) == ""
    assert kind_of("odd", "lcm", marks) == "lcm"  # a mark that is not a kind is ignored
    assert kind_of("other", "tcd", marks) == "tcd"
    assert kind_of("other", "", None) == ""
    assert kind_of("other", "bogus", {}) == ""


@pytest.mark.parametrize("kind, sampler, schedule, steps, cfg, size", [
    ("lcm", "LCM", "Automatic", 4, 1.0, 0),
    ("tcd", "TCD", "Automatic", 4, 1.0, 0),
    ("hyper", "DDIM", SGM_UNIFORM, 8, 1.0, 0),
    ("lightning", "Euler", SGM_UNIFORM, 4, 1.0, 0),
    ("turbo", "Euler a", SGM_UNIFORM, 2, 1.0, 512),
    ("dmd2", "LCM", "Automatic", 4, 1.0, 0),
])
def test_recipes(kind, sampler, schedule, steps, cfg, size):
    made = recipe(kind, "sdxl")
    assert (made.kind, made.label) == (kind, fewstep.LABELS[kind])
    assert (made.sampler, made.schedule, made.steps, made.cfg_scale, made.size) == (sampler, schedule, steps, cfg, size)
    assert made.schedule == "Automatic" or made.schedule in SAMPLERS[made.sampler]
    assert made.steps_range[0] <= made.steps <= made.steps_range[1]
    assert made.cfg_range[0] <= made.cfg_scale <= made.cfg_range[1]
    assert made.lora_weight == 1.0


def test_recipe_takes_the_steps_a_name_says():
    assert recipe("lightning", "sdxl", 2).steps == 2
    assert recipe("hyper", "sd1", 4).steps == 4
    assert recipe("turbo", "sd2", 8).steps == 4  # clamped to what Turbo takes
    one = recipe("hyper", "sdxl", 1)
    assert (one.steps, one.sampler) == (1, "TCD")  # the 1-step unified LoRA runs with TCD
    guided = recipe("hyper", "sdxl", 12, guided=True)
    assert (guided.steps, guided.sampler, guided.cfg_scale, guided.cfg_range) == (12, "DDIM", 5.0, (5.0, 8.0))
    assert recipe("lcm").cfg_range == (1.0, 2.0)
    with pytest.raises(ValueError, match="unknown few-step kind 'fast'"):
        recipe("fast")


def test_demo_models_count_as_lcm():
    assert fewstep.demo_kind("demo") == "lcm"
    assert fewstep.demo_kind("demo:sdxl") == "lcm"
    assert fewstep.demo_kind("demo:flux1") == ""  # a flow family's few-step variants are families.py's
    assert fewstep.demo_kind("/models/lcm.safetensors") == ""


# ------------------------------------------------------------------ the Fast plan


def test_a_few_step_model_runs_at_its_own_settings():
    plan = fast_plan("sdxl", "lightning", {"lcm-lora-sdxl": LoraInfo("lcm", "sdxl")},
                     model_name="sdxl_lightning_2step_unet")
    assert (plan.lora, plan.decoder, plan.recipe.steps, plan.recipe.sampler) == ("", "tiny", 2, "Euler")
    assert plan.note == "Fast: Lightning model, Euler sampler (SGM Uniform), 2 steps, CFG 1, TAESD decode"


def test_an_sd1_model_takes_the_lcm_lora():
    loras = {"lcm-lora-sdv1-5": LoraInfo("lcm", "sd1"), "add_detail": LoraInfo("", "sd1"),
             "lcm-lora-sdxl": LoraInfo("lcm", "sdxl")}
    plan = fast_plan(Family.SD1, "", loras)
    assert (plan.lora, plan.recipe.kind, plan.recipe.sampler, plan.recipe.steps) == ("lcm-lora-sdv1-5", "lcm", "LCM", 4)
    assert plan.note == "Fast: LCM LoRA lcm-lora-sdv1-5 at weight 1, LCM sampler, 4 steps, CFG 1, TAESD decode"


def test_lora_preference_and_steps():
    loras = {"sdxl_lightning_4step_lora": LoraInfo("lightning", "sdxl"), "dmd2_sdxl_4step_lora": LoraInfo("dmd2", "sdxl"),
             "TCD-SDXL-LoRA": LoraInfo("tcd", "sdxl"), "Hyper-SDXL-8steps-CFG-lora": LoraInfo("hyper", "sdxl"),
             "Hyper-SDXL-8steps-lora": LoraInfo("hyper", "sdxl"), "Hyper-SDXL-4steps-lora": LoraInfo("hyper", "sdxl")}
    order = []
    while loras:
        plan = fast_plan("sdxl", "", loras)
        order.append(plan.lora)
        del loras[plan.lora]
    assert order == ["Hyper-SDXL-4steps-lora", "Hyper-SDXL-8steps-lora", "Hyper-SDXL-8steps-CFG-lora", "TCD-SDXL-LoRA",
                     "dmd2_sdxl_4step_lora", "sdxl_lightning_4step_lora"]
    guided = fast_plan("sdxl", "", {"Hyper-SDXL-8steps-CFG-lora": LoraInfo("hyper", "sdxl")}).recipe
    assert (guided.steps, guided.cfg_scale) == (8, 5.0)


def test_a_lora_of_another_family_or_kind_is_not_taken():
    loras = {"lcm-lora-sdxl": LoraInfo("lcm", "sdxl"), "sdxl_lightning_4step_lora": LoraInfo("lightning", "sd1"),
             "sd_turbo": LoraInfo("turbo", "sd1")}
    with pytest.raises(NoFastPath) as refused:
        fast_plan("sd1", "", loras)
    assert str(refused.value) == (
        "SD 1.x has no few-step path here: put an LCM, Hyper-SD or TCD LoRA for SD 1.x in your LoRA folder "
        "(models/loras in Sfumato's models folder, or your other app's Lora folder), or choose an LCM model.")
    assert isinstance(refused.value, SfumatoError)


def test_refusals_say_what_to_add():
    with pytest.raises(NoFastPath, match=r"^SDXL has no few-step path here: put an LCM, Hyper-SD, TCD, DMD2 or "
                                         r"Lightning LoRA for SDXL in your LoRA folder .*or choose a Turbo or "
                                         r"Lightning model\.$"):
        fast_plan("sdxl", "", {})
    with pytest.raises(NoFastPath, match=r"^SD 2\.x has no few-step path here: put a TCD LoRA .* or choose SD-Turbo\.$"):
        fast_plan("sd2", "", {})
    with pytest.raises(NoFastPath, match=r"^This model's family is not known"):
        fast_plan("unknown", "", {})


def test_marks_reach_the_plan():
    loras = {"my_fast_lora": LoraInfo("", "sdxl"), "lcm-lora-sdxl": LoraInfo("lcm", "sdxl")}
    plan = fast_plan("sdxl", "", loras, marks={"lcm-lora-sdxl": "none", "my_fast_lora": "tcd"})
    assert (plan.lora, plan.recipe.kind) == ("my_fast_lora", "tcd")
    # a mark holds where the kind was never released: an SD 1.5 LoRA its owner says is a Lightning one
    sd1 = fast_plan("sd1", "", {"sd15_lightning_4step": LoraInfo("lightning", "sd1")},
                    marks={"sd15_lightning_4step": "lightning"})
    assert (sd1.lora, sd1.recipe.sampler, sd1.recipe.steps) == ("sd15_lightning_4step", "Euler", 4)
    own = fast_plan("sdxl", "", {}, model_name="turbovisionxl", marks={"turbovisionxl": "turbo"})
    assert (own.lora, own.recipe.kind, own.recipe.size) == ("", "turbo", 512)
    with pytest.raises(NoFastPath):  # "none" takes back what the name said
        fast_plan("sdxl", "lightning", {}, model_name="realvisxlV40_v40LightningBakedvae",
                  marks={"realvisxlV40_v40LightningBakedvae": "none"})


def test_a_lora_listing_is_what_the_plan_takes(tmp_path):
    """addons.AddonFile carries few_step and family, as fast_plan reads them."""
    folder = tmp_path / "models" / "Lora"
    write_lora(folder / "lcm-lora-sdxl.safetensors", "sdxl")
    write_lora(folder / "add_detail.safetensors", "sdxl")
    (tmp_path / "models" / "Stable-diffusion").mkdir(parents=True)
    listed = {a.name: a for a in addons.list_addons("lora", [tmp_path / "models" / "Stable-diffusion"])}
    assert (listed["lcm-lora-sdxl"].few_step, listed["add_detail"].few_step) == ("lcm", "")
    assert fast_plan("sdxl", "", listed).lora == "lcm-lora-sdxl"


def test_flow_families_run_their_few_step_variant_and_refuse_the_others():
    plan = fast_plan("zimage", "", {}, variant="turbo")
    assert (plan.recipe.kind, plan.recipe.steps, plan.recipe.cfg_scale, plan.lora) == ("", 8, 1.0, "")
    assert plan.note == "Fast: Z-Image Turbo at its own settings, Euler sampler, 8 steps, CFG 1, TAESD decode"
    with pytest.raises(NoFastPath, match=r"^FLUX\.1 \[dev\] has no few-step path here: choose FLUX\.1 \[schnell\]"):
        fast_plan("flux1", "", {}, variant="dev")


# ------------------------------------------------------------------ model files


def test_lora_files_say_their_kind(tmp_path):
    assert identify(write_lora(tmp_path / "lcm-lora-sdv1-5.safetensors")).few_step == "lcm"
    assert identify(write_lora(tmp_path / "Hyper-SDXL-8steps-lora.safetensors", "sdxl")).few_step == "hyper"
    assert identify(write_lora(tmp_path / "add_detail.safetensors")).few_step == ""
    renamed = write_lora(tmp_path / "fast.safetensors", "sdxl", {"ss_output_name": "sdxl_lightning_4step_lora"})
    assert identify(renamed).few_step == "lightning"
    # the Hub's generic file name, kept in a folder named after the LoRA
    generic = write_lora(tmp_path / "lcm-lora-sdxl" / "pytorch_lora_weights.safetensors", "sdxl")
    assert identify(generic).few_step == "lcm"
    cached = tmp_path / "models--latent-consistency--lcm-lora-sdv1-5" / "snapshots" / "abc"
    assert identify(write_lora(cached / "pytorch_lora_weights.safetensors")).few_step == "lcm"


def test_checkpoints_say_their_kind(tmp_path):
    assert identify(write_safetensors(tmp_path / "sdxl_lightning_4step.safetensors", SDXL)).few_step == "lightning"
    assert identify(write_safetensors(tmp_path / "realvisxlV40_v40LightningBakedvae.safetensors", SDXL)).few_step \
        == "lightning"
    assert identify(write_safetensors(tmp_path / "v1-5-pruned-emaonly.safetensors", SD1)).few_step == ""
    spec = write_safetensors(tmp_path / "merged.safetensors", SD1, {"modelspec.title": "LCM Dreamshaper v7"})
    assert identify(spec).few_step == "lcm"
    vae = write_safetensors(tmp_path / "lcm_vae.safetensors", {"encoder.conv_in.weight": (8, 3, 3, 3)})
    assert identify(vae).few_step == ""  # only checkpoints and LoRAs


def test_flow_checkpoints_leave_few_step_to_their_variant(tmp_path):
    zimage = {"x_pad_token": (1, 8), "cap_pad_token": (1, 8), "layers.0.attention.qkv.weight": (24, 8)}
    info = identify(write_safetensors(tmp_path / "z_image_turbo_bf16.safetensors", zimage))
    assert (info.family, info.variant, info.few_step) == (Family.ZIMAGE, "turbo", "")


def test_diffusers_folders_say_their_kind(tmp_path):
    assert identify(make_diffusers(tmp_path / "sd-turbo", cross=1024)).few_step == "turbo"
    assert identify(make_diffusers(tmp_path / "stable-diffusion-v1-5")).few_step == ""
    lcm = make_diffusers(tmp_path / "dreamshaper")
    (lcm / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "LCMScheduler"}))
    assert identify(lcm).few_step == "lcm"  # an LCM distillation ships its scheduler
    hub = make_diffusers(tmp_path / "models--stabilityai--sdxl-turbo" / "snapshots" / "0123",
                         cls="StableDiffusionXLPipeline")
    assert identify(hub).few_step == "turbo"
    assert modelfiles.ModelInfo(tmp_path, "diffusers", "checkpoint", Family.SD1).few_step == ""


def test_the_backend_lists_few_step_models_with_the_users_marks(tmp_path):
    from desktop.engine.local import LocalBackend  # the engine's listing (imports torch)

    folder = tmp_path / "checkpoints"
    write_safetensors(folder / "sdxl_lightning_4step.safetensors", SDXL)
    write_safetensors(folder / "turbovisionxl.safetensors", SDXL)
    write_safetensors(folder / "dreamshaper_8.safetensors", SD1)
    backend = LocalBackend("cpu", "fp32", [folder], hash_cache=tmp_path / "hashes.json",
                           few_step_marks={"turbovisionxl": "turbo", "sdxl_lightning_4step": "none"})
    listed = {m.name: m.few_step for m in backend.models() if m.family in ("sd1", "sdxl")}
    assert listed["turbovisionxl"] == "turbo"
    assert listed["sdxl_lightning_4step"] == ""
    assert listed["dreamshaper_8"] == ""
    assert listed["Demo model (random weights)"] == "lcm"
    assert listed["Demo SDXL (random weights)"] == "lcm"


def test_a_full_lcm_checkpoint_takes_cfg_8_as_its_guidance_embedding():
    """SimianLuo/LCM_Dreamshaper_v7 (a UNet with time_cond_proj_dim) is run at guidance_scale 8 on its card: the
    pipeline gives the UNet CFG - 1 as an embedding, so CFG 1 would be no guidance at all."""
    made = recipe("lcm", "sd1", guided=True)
    assert (made.sampler, made.steps, made.cfg_scale, made.cfg_range) == ("LCM", 4, 8.0, (3.0, 12.0))
    assert recipe("lcm", "sd1").cfg_scale == 1.0


def write_guided_lcm_folder(folder):
    """The configs of a diffusers folder whose UNet takes the guidance as an embedding (LCM_Dreamshaper_v7)."""
    for part, config in (("unet", {"in_channels": 4, "cross_attention_dim": 768, "time_cond_proj_dim": 256}),
                         ("scheduler", {"_class_name": "PNDMScheduler"}), ("text_encoder", {}), ("vae", {}),
                         ("tokenizer", {})):
        (folder / part).mkdir(parents=True)
        (folder / part / ("scheduler_config.json" if part == "scheduler" else "config.json")).write_text(
            json.dumps(config))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder


def test_a_diffusers_folder_whose_unet_embeds_the_guidance_is_a_guided_lcm(tmp_path):
    folder = write_guided_lcm_folder(tmp_path / "dreamshaper-distilled")
    info = identify(folder)
    assert info.guidance_embedded and info.few_step == "lcm"
    (folder / "unet" / "config.json").write_text(json.dumps({"in_channels": 4, "cross_attention_dim": 768}))
    assert not identify(folder).guidance_embedded and identify(folder).few_step == ""


@pytest.mark.parametrize("name, instead", [
    ("sdxl_lightning_1step_unet_x0", "2- or 4-step"),
    ("sdxl_lightning_1step_x0", "2- or 4-step"),
    ("Hyper-SDXL-1step-Unet", "Hyper-SDXL-1step-lora"),
    ("Hyper-SDXL-1step-Unet-Comfyui.fp16", "Hyper-SDXL-1step-lora"),
    ("dmd2_sdxl_1step_unet_fp16", "4-step"),
])
def test_one_step_files_the_engine_cannot_run_are_refused_with_the_file_to_use(name, instead):
    said = fewstep.unsupported(name)
    assert said.count(". ") == 0 and said.endswith(".") and instead in said
    with pytest.raises(NoFastPath, match=re.escape(said)):
        fast_plan("sdxl", recognise(name), {}, model_name=name)


@pytest.mark.parametrize("name", ["sdxl_lightning_2step_unet", "sdxl_lightning_4step_lora", "Hyper-SDXL-1step-lora",
                                  "dmd2_sdxl_4step_unet", "Hyper-SDXL-8steps-lora", "lcm-lora-sdxl", "x0_model"])
def test_the_files_the_engine_runs_are_not_refused(name):
    assert fewstep.unsupported(name) == ""


def test_fast_on_a_full_lcm_checkpoint_keeps_its_guidance():
    plan = fast_plan("sd1", "lcm", {}, model_name="LCM_Dreamshaper_v7", guidance_embedded=True)
    assert plan.recipe.cfg_scale == 8.0 and "CFG 8" in plan.note
    assert fast_plan("sd1", "lcm", {}, model_name="LCM_Dreamshaper_v7").recipe.cfg_scale == 1.0


def test_a_servers_model_list_says_which_models_embed_their_guidance():
    from desktop.core.backend import ModelDescriptor
    from desktop.core.remote_protocol import describe_model, read_model

    full_lcm = ModelDescriptor("a", "sd1", "LCM_Dreamshaper_v7", few_step="lcm", guidance_embedded=True)
    assert read_model(describe_model(full_lcm, "a")) == full_lcm
    assert not read_model({**describe_model(full_lcm, "a"), "guidance_embedded": "yes"}).guidance_embedded
