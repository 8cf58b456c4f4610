"""The few-step engine on tiny models: the LCM and TCD samplers, the SGM Uniform schedule, TAESD decoding of the
final picture and the tiny few-step LoRAs."""

from pathlib import Path

import diffusers
import numpy as np
import pytest

from desktop.core.families import FLOW_SAMPLERS
from desktop.core.progress import TaskState
from desktop.core.request import Hires, Mode
from desktop.core.samplers import SAMPLERS, SGM_UNIFORM
from desktop.engine import generate
from desktop.engine.schedulers import TCD_GAMMA, make_flow_scheduler, make_scheduler
from desktop.engine.tiny_addons import FEW_STEP_LORAS
from tests.support.requests import change, make_request

BASE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
        "steps_offset": 1, "timestep_spacing": "leading"}


def _picture(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _mask(size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[16:48, 16:48] = 255
    return mask


def _steps_run(request, manager) -> tuple[list, list[int]]:
    steps: list[int] = []
    results = generate.run(request, TaskState(on_step=lambda i, n, p: steps.append(i)), manager)
    return results, steps


# -- SGM Uniform ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [s for s, schedules in SAMPLERS.items() if SGM_UNIFORM in schedules])
def test_sgm_uniform_starts_at_the_last_training_timestep(sampler):
    scheduler = make_scheduler(BASE, sampler, SGM_UNIFORM, seeds=[1])
    scheduler.set_timesteps(4)
    timesteps = [round(float(t)) for t in scheduler.timesteps]
    assert timesteps[0] == 999
    assert sorted(set(timesteps), reverse=True) == [999, 749, 499, 249] or sampler in ("DPM2", "Heun", "DPM2 a")
    automatic = make_scheduler(BASE, sampler, seeds=[1])
    automatic.set_timesteps(4)
    assert round(float(automatic.timesteps[0])) != 999  # the model's own "leading" spacing stops short of it


def test_a_run_with_sgm_uniform_uses_trailing_timesteps(cpu_manager, tiny_models):
    request = make_request(prompt="p", model=str(tiny_models["sd1"].folder), width=64, height=64, steps=4, seed=3,
                           sampler="Euler", schedule=SGM_UNIFORM)
    result = generate.run(request, TaskState(), cpu_manager)[0]
    assert cpu_manager.pipeline("txt2img").scheduler.timesteps.tolist() == [999, 749, 499, 249]
    assert result.request.sampling.schedule == SGM_UNIFORM


@pytest.mark.parametrize("sampler", FLOW_SAMPLERS)
def test_every_schedule_a_flow_sampler_lists_makes_a_flow_scheduler(sampler):
    config = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}
    for schedule in SAMPLERS[sampler]:
        make_flow_scheduler(config, sampler, schedule)
    scheduler = make_flow_scheduler(config, sampler, SGM_UNIFORM)
    scheduler.set_timesteps(sigmas=[1.0, 0.9, 0.2, 0.1])  # what a pipeline passes is replaced by the uniform ones
    assert [round(float(s), 4) for s in scheduler.sigmas] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert float(scheduler.timesteps[0]) == 1000


# -- LCM and TCD ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["LCM", "TCD"])
@pytest.mark.parametrize("mode", [Mode.TXT2IMG, Mode.IMG2IMG, Mode.INPAINT])
def test_few_step_samplers_run_every_mode_and_a_batch_is_its_single_runs(cpu_manager, tiny_models, sampler, mode):
    images = {} if mode is Mode.TXT2IMG else {"init_image": _picture(1), "strength": 0.5}
    if mode is Mode.INPAINT:
        images.update(mask=_mask(), mask_blur=0)
    request = make_request(prompt="a cat", model=str(tiny_models["sd1"].folder), width=64, height=64, steps=4,
                           cfg_scale=1.5, seed=20, batch_size=2, sampler=sampler, schedule="Automatic", mode=mode,
                           **images)
    batch, steps = _steps_run(request, cpu_manager)
    assert steps == ([1, 2, 3, 4] if mode is Mode.TXT2IMG else [1, 2])  # strength 0.5 of 4 steps runs 2
    scheduler = cpu_manager.pipeline("inpaint" if mode is Mode.INPAINT else mode.value).scheduler
    assert isinstance(scheduler, getattr(diffusers, f"{sampler}Scheduler"))
    for i, result in enumerate(batch):
        alone = generate.run(change(request, seed=20 + i, batch_size=1), TaskState(), cpu_manager)[0].image
        assert np.abs(result.image.astype(int) - alone.astype(int)).mean() < 1.0
    assert not np.array_equal(batch[0].image, batch[1].image)
    if mode is Mode.INPAINT:
        outside = _mask() == 0
        assert np.array_equal(batch[0].image[outside], _picture(1)[outside])


def test_tcd_steps_with_its_recommended_gamma(cpu_manager, tiny_models, monkeypatch):
    from desktop.engine import schedulers

    seen = []
    step = schedulers.TCD.step
    monkeypatch.setattr(schedulers.TCD, "step", lambda self, *a, eta=0.0, **k: (seen.append(eta),
                                                                                step(self, *a, eta=eta, **k))[1])
    request = make_request(prompt="p", model=str(tiny_models["sd1"].folder), width=64, height=64, steps=2, seed=1,
                           cfg_scale=1.0, sampler="TCD", schedule="Automatic")
    generate.run(request, TaskState(), cpu_manager)
    assert seen == [TCD_GAMMA, TCD_GAMMA] and TCD_GAMMA == 0.3


def test_lcm_takes_more_steps_than_its_distillation_schedule(cpu_manager, tiny_models):
    """A hires fix's schedule is steps / denoise: LCM with 60 steps runs instead of failing on diffusers' 50."""
    scheduler = make_scheduler(BASE, "LCM")
    scheduler.set_timesteps(60)
    assert len(scheduler.timesteps) == 60 and len(set(scheduler.timesteps.tolist())) == 60


@pytest.mark.parametrize("sampler", ["LCM", "TCD"])
@pytest.mark.parametrize("steps", [1, 4, 8, 50, 51, 60, 99, 100, 101, 137, 250, 999, 1000])
def test_every_step_count_starts_from_full_noise(sampler, steps):
    """More steps than the distillation schedule's 50 still start at the last training timestep, 999."""
    scheduler = make_scheduler(BASE, sampler)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()
    assert timesteps[0] == 999 and len(set(timesteps)) == steps == len(timesteps)
    assert timesteps == sorted(timesteps, reverse=True)


def test_few_step_samplers_run_on_sdxl(cpu_manager, tiny_models):
    for sampler in ("LCM", "TCD"):
        request = make_request(prompt="p", model=str(tiny_models["sdxl"].folder), width=64, height=64, steps=2,
                               seed=1, cfg_scale=1.0, sampler=sampler, schedule="Automatic")
        assert generate.run(request, TaskState(), cpu_manager)[0].image.shape == (64, 64, 3)


# -- TAESD decoding of the final picture ----------------------------------------------------------------------------


def _recording_tiny_decode(monkeypatch) -> list:
    """Records (latents, pictures -1..1) of every TAESD decode of a final picture."""
    from desktop.engine import previews

    seen = []
    decode = previews.tiny_decode

    def record(decoder, latents):
        out = decode(decoder, latents)
        seen.append((latents.detach().clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(previews, "tiny_decode", record)
    return seen


def _uint8(pictures) -> np.ndarray:
    return generate._pictures((pictures.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy())


def test_the_tiny_decoder_decodes_the_final_latents_with_the_demo_taesd(cpu_manager, tiny_models, monkeypatch):
    from desktop.engine import hires, tiny

    model = tiny_models["sd1"].folder
    assert tiny.taesd_folder(model) == model / "taesd"
    seen = _recording_tiny_decode(monkeypatch)
    request = make_request(prompt="a cat", model=str(model), width=64, height=64, steps=2, seed=5, batch_size=2,
                           decoder="tiny")
    results = generate.run(request, TaskState(), cpu_manager)
    (latents, decoded), = seen
    assert [r.image.tolist() for r in results] == _uint8(decoded).tolist()
    assert all(dict(r.params).get("Decoder") == "TAESD" for r in results)
    full = generate.run(change(request, decoder="full"), TaskState(), cpu_manager)
    assert "Decoder" not in dict(full[0].params)
    by_vae = generate._pictures(hires.decode(cpu_manager.pipeline("txt2img"), latents))
    assert np.abs(full[0].image.astype(int) - by_vae[0].astype(int)).max() <= 1  # the same latents
    assert np.abs(results[0].image.astype(int) - by_vae[0].astype(int)).mean() > 5  # not the full VAE's decode
    assert not (cpu_manager.tiny_decoder("sd1")[1] / "config.json").exists()  # nothing in the user's models folder


def test_tiny_decoding_keeps_the_pixels_outside_an_inpaint_mask(cpu_manager, tiny_models):
    source = _picture(7)
    request = make_request(prompt="p", model=str(tiny_models["sd1"].folder), mode=Mode.INPAINT, init_image=source,
                           mask=_mask(), mask_blur=0, width=64, height=64, steps=2, seed=2, decoder="tiny")
    result = generate.run(request, TaskState(), cpu_manager)[0]
    outside = _mask() == 0
    assert np.array_equal(result.image[outside], source[outside])
    assert not np.array_equal(result.image[~outside], source[~outside])
    assert ("Decoder", "TAESD") in result.params


@pytest.mark.parametrize("upscaler", ["Lanczos", "Latent"])
def test_tiny_decoding_with_the_hires_fix_decodes_only_the_final_picture(cpu_manager, tiny_models, monkeypatch,
                                                                         upscaler):
    seen = _recording_tiny_decode(monkeypatch)
    request = make_request(prompt="p", model=str(tiny_models["sd1"].folder), width=64, height=64, steps=2, seed=2,
                           decoder="tiny", hires=Hires(enabled=True, scale=1.5, upscaler=upscaler, denoise=0.5))
    result = generate.run(request, TaskState(), cpu_manager)[0]
    assert result.image.shape == (96, 96, 3) and len(seen) == 1 and seen[0][0].shape[-1] == 12
    assert ("Decoder", "TAESD") in result.params


def test_without_taesd_weights_the_full_vae_decodes_and_the_status_says_where_they_go(cpu_manager, tiny_models):
    notes = []
    request = make_request(prompt="p", model=str(tiny_models["sd1"].checkpoint), width=64, height=64, steps=2,
                           seed=2, decoder="tiny")
    result = generate.run(request, TaskState(on_status=notes.append), cpu_manager)[0]
    full = generate.run(change(request, decoder="full"), TaskState(), cpu_manager)[0]
    assert np.array_equal(result.image, full.image) and "Decoder" not in dict(result.params)
    said = [note for note in notes if "TAESD" in note]
    assert len(said) == 1 and "models/taesd" in said[0] and said[0].count(". ") == 0


def test_the_users_taesd_decodes_a_model_of_its_family(cpu_manager, tiny_models):
    import shutil

    from desktop.core import paths

    shutil.copytree(tiny_models["sd1"].folder / "taesd", paths.models_dir() / "taesd")
    request = make_request(prompt="p", model=str(tiny_models["sd1"].checkpoint), width=64, height=64, steps=2,
                           seed=2, decoder="tiny")
    result = generate.run(request, TaskState(), cpu_manager)[0]
    assert ("Decoder", "TAESD") in result.params
    assert cpu_manager.tiny_decoder("sd1")[0] is cpu_manager.tiny_decoder("sd1")[0]  # loaded once


# -- tiny few-step LoRAs, named and laid out as released ------------------------------------------------------------


@pytest.mark.parametrize("kind, family", list(FEW_STEP_LORAS))
def test_tiny_few_step_loras_load_through_the_lora_path(cpu_manager, tiny_models, tmp_path, kind, family):
    from desktop.core import fewstep
    from desktop.engine.tiny_addons import build_few_step_lora
    from tests.engine.test_embeddings import Folder

    model = str(tiny_models[family].folder)
    pipe = cpu_manager.load(model).pipelines[("txt2img", ())]
    path = build_few_step_lora(pipe, kind, tmp_path)
    assert path.name == FEW_STEP_LORAS[(kind, family)][0]
    assert fewstep.recognise(path.name) == kind
    request = make_request(prompt=f"a fox <lora:{path.stem}:1>", model=model, width=64, height=64, steps=2, seed=3,
                           cfg_scale=1.0, sampler="LCM", schedule="Automatic")
    with_lora = generate.run(request, TaskState(), cpu_manager, addons=Folder(path))[0]
    without = generate.run(change(request, prompt="a fox"), TaskState(), cpu_manager, addons=Folder(path))[0]
    assert np.abs(with_lora.image.astype(int) - without.image.astype(int)).mean() > 1
    assert dict(with_lora.params)["Lora hashes"] == f"{path.stem}: 0123456789ab"


def test_lightning_was_released_for_sdxl_only(cpu_manager, tiny_models, tmp_path):
    from desktop.engine.tiny_addons import build_few_step_lora

    pipe = cpu_manager.load(str(tiny_models["sd1"].folder)).pipelines[("txt2img", ())]
    with pytest.raises(ValueError, match="no lightning LoRA"):
        build_few_step_lora(pipe, "lightning", tmp_path)


# -- the flow families ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flux1", "zimage", "sd3"])
def test_a_flow_demo_decodes_with_its_own_tiny_taesd(cpu_manager, tiny_models, monkeypatch, kind):
    seen = _recording_tiny_decode(monkeypatch)
    request = make_request(prompt="a lighthouse", model=str(tiny_models[kind].folder), width=80, height=64, steps=2,
                           seed=1, cfg_scale=1.0, sampler="Euler", schedule=SGM_UNIFORM, decoder="tiny")
    result = generate.run(request, TaskState(), cpu_manager)[0]
    (latents, decoded), = seen
    assert latents.shape[1] == 16 and result.image.shape == (64, 80, 3)  # FLUX.1's packed tokens put back in rows
    assert np.array_equal(result.image, _uint8(decoded)[0])
    assert ("Decoder", "TAESD") in result.params


def test_a_family_without_a_taesd_decodes_with_its_vae_and_says_so(cpu_manager, tiny_models):
    notes = []
    request = make_request(prompt="a lighthouse", model=str(tiny_models["flux2-klein"].folder), width=64, height=64,
                           steps=2, seed=1, cfg_scale=1.0, sampler="Euler", schedule="Automatic", decoder="tiny")
    result = generate.run(request, TaskState(on_status=notes.append), cpu_manager)[0]
    assert "Decoder" not in dict(result.params)
    assert [n for n in notes if "TAESD" in n] == [
        "The full VAE decoded the picture: FLUX.2 [klein] has no TAESD decoder Sfumato can use."]


def _guidance_embedded_model(root, folder):
    """A copy of a demo folder whose UNet takes its guidance as an embedding (time_cond_proj_dim), as a full LCM
    checkpoint's does (SimianLuo/LCM_Dreamshaper_v7)."""
    import shutil

    import torch

    copy = root / "lcm-dreamshaper-tiny"
    shutil.copytree(folder, copy)
    config = dict(diffusers.UNet2DConditionModel.load_config(copy / "unet"), time_cond_proj_dim=16)
    torch.manual_seed(0)
    shutil.rmtree(copy / "unet")
    diffusers.UNet2DConditionModel.from_config(config).save_pretrained(copy / "unet")
    return copy


def test_a_full_lcm_checkpoint_takes_cfg_as_its_embedding_in_one_unet_batch(cpu_manager, tiny_models, tmp_path,
                                                                              monkeypatch):
    """CFG 8 on a UNet with time_cond_proj_dim: one UNet batch a step (no CFG doubling), the guidance given as
    its embedding, and the negative prompt unused, also when a prompt edit switches the encodings mid-run."""
    model = str(_guidance_embedded_model(tmp_path, tiny_models["sd1"].folder))
    seen = []
    forward = diffusers.UNet2DConditionModel.forward

    def counting(self, sample, timestep, encoder_hidden_states, *args, **kwargs):
        seen.append((sample.shape[0], encoder_hidden_states.shape[0], kwargs.get("timestep_cond") is not None))
        return forward(self, sample, timestep, encoder_hidden_states, *args, **kwargs)

    monkeypatch.setattr(diffusers.UNet2DConditionModel, "forward", counting)
    request = make_request(prompt="a [cat:dog:0.5] on a hill", negative_prompt="blurry", model=model, width=64,
                           height=64, steps=4, seed=2, sampler="LCM", schedule="Automatic", cfg_scale=8.0)
    first = generate.run(request, TaskState(), cpu_manager)[0].image
    assert seen == [(1, 1, True)] * 4
    other = generate.run(change(request, negative_prompt="ugly, watermark"), TaskState(), cpu_manager)[0].image
    assert np.array_equal(first, other), "the negative prompt is not used"
    weaker = generate.run(change(request, cfg_scale=3.0), TaskState(), cpu_manager)[0].image
    assert not np.array_equal(first, weaker), "the CFG scale is the guidance embedding"


def test_a_one_step_file_the_engine_cannot_sample_is_refused_before_loading(cpu_manager, tiny_models, tmp_path):
    import shutil

    from desktop.core.errors import SfumatoError

    model = tmp_path / "sdxl_lightning_1step_x0"
    shutil.copytree(tiny_models["sd1"].folder, model)
    with pytest.raises(SfumatoError, match=r"^SDXL-Lightning's 1-step file .* use its 2- or 4-step file"):
        generate.run(make_request(prompt="p", model=str(model), width=64, height=64, steps=1), TaskState(),
                     cpu_manager)


def test_the_model_list_says_a_full_lcm_checkpoint_embeds_its_guidance(tiny_models, tmp_path):
    from desktop.engine.local import LocalBackend

    folder = _guidance_embedded_model(tmp_path, tiny_models["sd1"].folder)
    backend = LocalBackend("cpu", "fp32", models_folders=[tmp_path], hash_cache=tmp_path / "hashes.json")
    listed = {Path(m.ref).name: m for m in backend.models()}
    assert listed[folder.name].few_step == "lcm" and listed[folder.name].guidance_embedded
