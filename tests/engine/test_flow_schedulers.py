"""Flow-matching samplers and schedules: what each family runs, and the shift that replaces the model's own."""

import numpy as np
import pytest
import torch

from desktop.core import families
from desktop.core.progress import TaskState
from desktop.core.request import Mode
from desktop.core.samplers import SAMPLERS
from desktop.engine import devices, generate, tiny
from desktop.engine.models import ModelManager
from desktop.engine.schedulers import make_flow_scheduler
from tests.support.requests import make_request

FLUX_DEV = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
            "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}


def sigmas(scheduler, steps=4, mu=1.0):
    scheduler.set_timesteps(steps, sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return scheduler.sigmas


def test_a_shift_replaces_the_models_own_and_its_dynamic_shifting():
    own = make_flow_scheduler(FLUX_DEV, "Euler")
    shifted = make_flow_scheduler(FLUX_DEV, "Euler", shift=2.0)
    assert own.config.use_dynamic_shifting and own.config.shift == 3.0
    assert not shifted.config.use_dynamic_shifting and shifted.config.shift == 2.0
    assert not torch.allclose(sigmas(own), sigmas(shifted))
    assert torch.allclose(sigmas(shifted, mu=0.1), sigmas(shifted, mu=2.0)), "a fixed shift: the size does not matter"


@pytest.mark.parametrize("schedule, flag", [("Karras", "use_karras_sigmas"), ("Exponential", "use_exponential_sigmas"),
                                            ("Beta", "use_beta_sigmas")])
def test_schedules_respace_the_flow_sigmas(schedule, flag):
    scheduler = make_flow_scheduler({**FLUX_DEV, flag: False}, "Euler", schedule)
    assert getattr(scheduler.config, flag)
    automatic = make_flow_scheduler({**FLUX_DEV, flag: True}, "Euler")
    assert not getattr(automatic.config, flag), "Automatic is the model's own spacing"
    spaced = sigmas(scheduler)
    assert spaced[0] > spaced[-2] > 0 and spaced[-1] == 0
    assert not torch.allclose(spaced, sigmas(automatic))


def test_only_the_samplers_every_flow_pipeline_runs_are_offered():
    assert families.FLOW_SAMPLERS == ("Euler", "Euler a", "DPM++ 2M", "UniPC")
    for name in families.FLOW_SAMPLERS:
        make_flow_scheduler(FLUX_DEV, name)
    with pytest.raises(ValueError, match="no flow-matching scheduler"):
        make_flow_scheduler(FLUX_DEV, "LMS")


def solve(sampler, steps, schedule="Automatic", mean=0.7, spread=0.3):
    """Samples of N(mean, spread^2) from 4096 noises, stepped with the exact velocity of that flow."""
    scheduler = make_flow_scheduler({**FLUX_DEV, "use_dynamic_shifting": False}, sampler, schedule)
    scheduler.set_timesteps(steps, sigmas=np.linspace(1.0, 1 / steps, steps))
    scheduler.generators = [torch.Generator().manual_seed(1)]
    x = torch.randn(1, 4096, generator=torch.Generator().manual_seed(0))
    for t in scheduler.timesteps:
        s = float(t) / 1000
        x0 = mean + (1 - s) * spread ** 2 / ((1 - s) ** 2 * spread ** 2 + s ** 2) * (x - (1 - s) * mean)
        x = scheduler.step((x - x0) / s, t, x).prev_sample
    return x


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "UniPC"])
def test_the_multistep_solvers_follow_the_same_flow_as_euler_with_fewer_steps(sampler):
    """On a flow whose velocity is known exactly, DPM++ 2M and UniPC land where Euler does with 2000 steps, and
    closer than Euler with as many steps (second order against first)."""
    exact = solve("Euler", 2000)
    for steps in (20, 40):
        solver, euler = ((solve(name, steps) - exact).abs().max() for name in (sampler, "Euler"))
        assert solver < euler / 1.7
    assert (solve(sampler, 40) - exact).abs().max() < 0.02
    assert (solve(sampler, 40, "Karras") - solve("Euler", 2000, "Karras")).abs().max() < 0.05


def test_euler_a_samples_the_flows_distribution_with_fresh_noise():
    """Euler a's noise is not Euler's path: its samples differ, but come from the same distribution."""
    ancestral = solve("Euler a", 400)
    assert abs(ancestral.mean() - 0.7) < 0.02 and abs(ancestral.std() - 0.3) < 0.02
    assert (ancestral - solve("Euler", 400)).abs().mean() > 0.05


@pytest.fixture(scope="module")
def manager():
    return ModelManager(devices.choose("cpu", "fp32"))


@pytest.mark.parametrize("kind", tiny.FLOW_KINDS)
def test_every_schedule_runs_on_every_family(manager, tiny_models, kind):
    picture = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    made = {}
    for schedule in ("Automatic", "Karras", "Exponential", "Beta"):
        for mode, fields in ((Mode.TXT2IMG, {}), (Mode.IMG2IMG, {"init_image": picture, "strength": 0.75})):
            request = make_request(model=str(tiny_models[kind].folder), mode=mode, prompt="a lighthouse", width=64,
                                   height=64, steps=3, seed=4, sampler="Euler", schedule=schedule, cfg_scale=1.0,
                                   **fields)
            made[schedule, mode], = generate.run(request, TaskState(), manager)
            assert made[schedule, mode].image.std() > 1
    assert not np.array_equal(made["Automatic", Mode.TXT2IMG].image, made["Karras", Mode.TXT2IMG].image)


def picture_fields(mode):
    picture = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    return {Mode.TXT2IMG: {}, Mode.IMG2IMG: {"init_image": picture, "strength": 0.75},
            Mode.INPAINT: {"init_image": picture, "mask": mask, "mask_blur": 0, "strength": 0.9}}[mode]


def make(manager, tiny_models, kind, sampler, mode=Mode.TXT2IMG, schedule="Automatic", steps=3, seed=4, **more):
    request = make_request(model=str(tiny_models[kind].folder), mode=mode, prompt="a lighthouse", width=64,
                           height=64, steps=steps, seed=seed, sampler=sampler, schedule=schedule, cfg_scale=1.0,
                           **picture_fields(mode), **more)
    return generate.run(request, TaskState(), manager)


@pytest.mark.parametrize("sampler", families.FLOW_SAMPLERS[1:])
def test_every_sampler_and_schedule_runs_in_every_mode(manager, tiny_models, sampler):
    for schedule in ("Automatic", *SAMPLERS[sampler]):
        for mode in (Mode.TXT2IMG, Mode.IMG2IMG, Mode.INPAINT):
            result, = make(manager, tiny_models, "flux1", sampler, mode, schedule)
            assert np.isfinite(result.image).all() and result.image.std() > 1, (schedule, mode)


@pytest.mark.parametrize("kind", tiny.FLOW_KINDS)
def test_every_sampler_runs_on_every_family(manager, tiny_models, kind):
    made = [make(manager, tiny_models, kind, sampler)[0].image for sampler in families.FLOW_SAMPLERS]
    assert all(np.isfinite(image).all() for image in made)
    assert all(image.std() > 1 for image in made)
    assert not np.array_equal(made[0], made[1]), "Euler a is not Euler"


def test_dpm_2m_and_unipc_with_many_steps_land_near_euler_on_a_model(manager, tiny_models):
    """The same seed, 20 steps: solvers of the same flow give nearly the same picture (under 3 levels of 255 on
    average; measured 0.8 for DPM++ 2M, 0.9 for UniPC), while another seed's picture is far from it (measured 39)."""
    euler, dpm, unipc = (make(manager, tiny_models, "zimage", name, steps=20)[0].image.astype(float)
                         for name in ("Euler", "DPM++ 2M", "UniPC"))
    other = make(manager, tiny_models, "zimage", "Euler", steps=20, seed=5)[0].image.astype(float)
    assert max(np.abs(euler - dpm).mean(), np.abs(euler - unipc).mean()) < 3 < np.abs(euler - other).mean()


def test_euler_a_is_reproducible_and_a_batch_is_its_single_runs(manager, tiny_models):
    for mode in (Mode.TXT2IMG, Mode.IMG2IMG):
        batch = make(manager, tiny_models, "sd3", "Euler a", mode, seed=7, batch_size=2)
        singles = [make(manager, tiny_models, "sd3", "Euler a", mode, seed=seed)[0] for seed in (7, 8)]
        for made, single in zip(batch, singles, strict=True):
            assert made.seed == single.seed
            assert np.abs(made.image.astype(int) - single.image.astype(int)).max() <= 1, mode
        assert not np.array_equal(batch[0].image, batch[1].image)
