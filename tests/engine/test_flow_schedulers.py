"""Flow-matching samplers and schedules: what each family runs, and the shift that replaces the model's own."""

import numpy as np
import pytest
import torch

from desktop.core import families
from desktop.core.progress import TaskState
from desktop.core.request import Mode
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
    assert families.FLOW_SAMPLERS == ("Euler",)
    with pytest.raises(ValueError, match="no flow-matching scheduler"):
        make_flow_scheduler(FLUX_DEV, "DPM++ 2M")


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
