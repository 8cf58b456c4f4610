import numpy as np
import pytest
import torch

from desktop.core.progress import TaskState

from desktop.core.samplers import AUTOMATIC, KARRAS, SAMPLERS, SGM_UNIFORM
from desktop.engine import generate
from desktop.engine.previews import Previewer
from tests.support.requests import change, make_request

CASES = [(s, AUTOMATIC) for s in SAMPLERS] + [(s, sched[0]) for s, sched in SAMPLERS.items() if sched] + [
    (s, SGM_UNIFORM) for s, sched in SAMPLERS.items() if SGM_UNIFORM in sched[1:]]


@pytest.mark.parametrize("sampler, schedule", CASES)
def test_every_sampler_generates_reproducibly(cpu_manager, tiny_models, sampler, schedule):
    request = make_request(prompt="p", model=str(tiny_models["sd1"].folder), width=64, height=64,
                                steps=3, seed=4, sampler=sampler, schedule=schedule)
    first = generate.run(request, TaskState(), cpu_manager)[0].image
    again = generate.run(request, TaskState(), cpu_manager)[0].image
    assert np.array_equal(first, again), "same seed, same sampler: same picture"
    assert type(cpu_manager.pipeline("txt2img").scheduler).__name__ != "PNDMScheduler"


def test_approximate_preview_is_latent_sized_rgb():
    latents = torch.randn(2, 4, 12, 8)
    preview = Previewer("sdxl")(latents)
    assert preview.shape == (12, 8, 3) and preview.dtype == np.uint8
    assert Previewer("sd1", "off")(latents) is None


def test_taesd_preview_when_its_weights_are_on_disk(tmp_path):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    tiny_decoder = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                                   num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))
    tiny_decoder.save_pretrained(tmp_path / "taesd")
    preview = Previewer("sd1", "taesd", tmp_path / "taesd")(torch.randn(1, 4, 8, 6))
    assert preview.shape == (64, 48, 3)
    # No weights: falls back to the approximation instead of downloading.
    assert Previewer("sd1", "taesd", tmp_path / "missing").method == "approximate"


def test_a_sampler_does_not_leak_settings_into_the_next(cpu_manager, tiny_models):
    model = str(tiny_models["sd1"].folder)
    request = make_request(prompt="p", model=model, width=64, height=64, steps=3, seed=4, sampler="Euler")
    before = generate.run(request, TaskState(), cpu_manager)[0].image
    generate.run(change(request, sampler="DPM++ 2M SDE", schedule="Karras"), TaskState(), cpu_manager)
    after = generate.run(request, TaskState(), cpu_manager)[0].image
    assert np.array_equal(before, after)
    assert "algorithm_type" not in cpu_manager.current.scheduler_config


EXPECTED = {"Euler": "EulerDiscreteScheduler", "Euler a": "EulerAncestralDiscreteScheduler",
            "DPM++ 2M": "DPMSolverMultistepScheduler", "DPM++ 2M SDE": "DPMSolverMultistepScheduler",
            "DPM++ SDE": "DPMSolverSDEScheduler", "DDIM": "DDIMScheduler", "UniPC": "UniPCMultistepScheduler",
            "LMS": "LMSDiscreteScheduler", "Heun": "HeunDiscreteScheduler", "DPM2": "KDPM2DiscreteScheduler",
            "DPM2 a": "KDPM2AncestralDiscreteScheduler", "LCM": "LCMScheduler", "TCD": "TCDScheduler"}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_each_sampler_maps_to_its_scheduler(sampler):
    from desktop.engine.schedulers import make_scheduler

    base = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    scheduler = make_scheduler(base, sampler, "Automatic")
    assert EXPECTED[sampler] in [cls.__name__ for cls in type(scheduler).__mro__]
    if "SDE" in sampler and sampler.startswith("DPM++ 2M"):
        assert scheduler.config.algorithm_type == "sde-dpmsolver++"
    if KARRAS in SAMPLERS[sampler]:
        assert make_scheduler(base, sampler, "Karras").config.use_karras_sigmas
    if SGM_UNIFORM in SAMPLERS[sampler]:
        assert make_scheduler(base, sampler, SGM_UNIFORM).config.timestep_spacing == "trailing"


def test_dpm_sde_batch_images_match_their_own_seed(cpu_manager, tiny_models):
    model = str(tiny_models["sd1"].folder)
    request = make_request(prompt="p", model=model, width=64, height=64, steps=3, seed=10, batch_size=2,
                                sampler="DPM++ SDE")
    batch = generate.run(request, TaskState(), cpu_manager)
    alone = generate.run(change(request, seed=11, batch_size=1), TaskState(), cpu_manager)[0].image
    assert np.abs(batch[1].image.astype(int) - alone.astype(int)).mean() < 2.0


def test_taesd_is_loaded_once_and_used_for_runs(cpu_manager, tiny_models):
    from diffusers import AutoencoderTiny

    from desktop.core import paths

    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)).save_pretrained(
        paths.models_dir() / "taesd")
    cpu_manager._previewer_key = None  # this test's SFUMATO_HOME has the weights
    previews = []
    model = str(tiny_models["sd1"].checkpoint)  # not the demo folder, which has a TAESD of its own
    request = make_request(prompt="p", model=model, width=64, height=72, steps=2, seed=1)
    generate.run(request, TaskState(on_step=lambda i, n, p: previews.append(p.shape)), cpu_manager, "taesd")
    first = cpu_manager.previewer("sd1", "taesd")
    generate.run(request, TaskState(), cpu_manager, "taesd")
    assert cpu_manager.previewer("sd1", "taesd") is first and first.method == "taesd"
    assert previews == [(72, 64, 3), (72, 64, 3)]
    # the previews and the final TAESD decode share one decoder; a demo model's is its own
    assert first._decoder is cpu_manager.tiny_decoder("sd1")[0]
    demo = tiny_models["sd1"].folder
    assert cpu_manager.previewer("sd1", "taesd", demo)._decoder is cpu_manager.tiny_decoder("sd1", demo)[0]
    assert cpu_manager.tiny_decoder("sd1", demo)[1] == demo / "taesd"
