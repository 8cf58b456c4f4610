"""The few-step engine on tiny models: the LCM and TCD samplers and the SGM Uniform schedule."""

import diffusers
import numpy as np
import pytest

from desktop.core.families import FLOW_SAMPLERS
from desktop.core.progress import TaskState
from desktop.core.request import Mode
from desktop.core.samplers import SAMPLERS, SGM_UNIFORM
from desktop.engine import generate
from desktop.engine.schedulers import TCD_GAMMA, make_flow_scheduler, make_scheduler
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


def test_few_step_samplers_run_on_sdxl(cpu_manager, tiny_models):
    for sampler in ("LCM", "TCD"):
        request = make_request(prompt="p", model=str(tiny_models["sdxl"].folder), width=64, height=64, steps=2,
                               seed=1, cfg_scale=1.0, sampler=sampler, schedule="Automatic")
        assert generate.run(request, TaskState(), cpu_manager)[0].image.shape == (64, 64, 3)
