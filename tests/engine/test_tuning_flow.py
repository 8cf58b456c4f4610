"""The device plan for the flow-matching families: what runs where on GPUs of 8 to 80 GiB, and what the user is told.

Byte counts are of the real-size models, built from the bundled configs on the meta device (no weights allocated),
in bfloat16 as the families are released.
"""

from __future__ import annotations

import time

import pytest
import torch

from desktop.core.modelfiles import Family
from desktop.engine import devices, tuning
from tests.support.released_models import meta_components

GiB = tuning.GiB
CUDA_BF16 = devices.DeviceChoice(torch.device("cuda"), torch.bfloat16, "CUDA (test)")
CPU_BF16 = devices.DeviceChoice(torch.device("cpu"), torch.bfloat16, "CPU (test)")

FAMILY = {"flux1-dev": Family.FLUX1, "sd3.5-medium": Family.SD3, "sd3.5-large": Family.SD3,
          "zimage-turbo": Family.ZIMAGE, "flux2-klein-4b": Family.FLUX2_KLEIN, "flux2-klein-9b": Family.FLUX2_KLEIN}


class Sizes:
    def __init__(self, components: dict[str, int], denoiser: int):
        self.components = components  # name -> bytes in bf16
        self.weights = sum(components.values())
        self.largest = max(components.values())
        self.denoiser = denoiser  # the transformer's parameters


def real_size(name: str) -> Sizes:
    """Bytes of every model of the released `name`, counted on the meta device from its bundled configs."""
    sizes, denoiser = {}, 0
    for component, model in meta_components(name).items():
        sizes[component] = sum(p.numel() for p in model.parameters()) * 2
        if component == "transformer":
            denoiser = sizes[component] // 2
    return Sizes(sizes, denoiser)


@pytest.fixture(scope="module")
def real():
    return {name: real_size(name) for name in FAMILY}


def test_the_real_models_are_the_sizes_users_know(real):
    flux = real["flux1-dev"]
    assert 23.7e9 < flux.components["transformer"] < 23.9e9  # FLUX.1 dev's transformer: 23.8 GB in bf16
    assert 9.4e9 < flux.components["text_encoder_2"] < 9.6e9  # T5-XXL's encoder: 9.5 GB
    assert flux.largest == flux.components["transformer"]
    assert 16.0e9 < real["sd3.5-large"].components["transformer"] < 16.2e9  # 8.1 B parameters
    assert 12.2e9 < real["zimage-turbo"].components["transformer"] < 12.4e9  # 6.2 B
    assert 7.6e9 < real["flux2-klein-4b"].components["transformer"] < 7.9e9  # 3.9 B
    # klein 9B's Qwen3-8B is almost as big as its transformer; the larger of the two is what model offload needs
    klein9 = real["flux2-klein-9b"]
    assert klein9.largest == klein9.components["transformer"] > klein9.components["text_encoder"] > 16e9


ALL, MODEL, SEQUENTIAL = "all on the GPU", "model offload", "sequential offload"

DECISIONS = {  # GPU GiB free: 8, 12, 16, 24, 80
    "flux1-dev": (SEQUENTIAL, SEQUENTIAL, SEQUENTIAL, MODEL, ALL),
    "sd3.5-medium": (SEQUENTIAL, MODEL, MODEL, ALL, ALL),
    "sd3.5-large": (SEQUENTIAL, SEQUENTIAL, SEQUENTIAL, MODEL, ALL),
    "zimage-turbo": (SEQUENTIAL, SEQUENTIAL, MODEL, ALL, ALL),
    "flux2-klein-4b": (SEQUENTIAL, MODEL, MODEL, ALL, ALL),
    "flux2-klein-9b": (SEQUENTIAL, SEQUENTIAL, SEQUENTIAL, MODEL, ALL),
}


def decision(plan: tuning.Plan) -> str:
    return SEQUENTIAL if plan.sequential else MODEL if plan.offload else ALL


@pytest.mark.parametrize("name", DECISIONS)
@pytest.mark.parametrize("gpu", [8, 12, 16, 24, 80])
def test_each_family_on_each_gpu_size(real, name, gpu):
    size = real[name]
    expected = DECISIONS[name][[8, 12, 16, 24, 80].index(gpu)]
    plan = tuning.plan(CUDA_BF16, FAMILY[name], size.weights, gpu * GiB, 64 * GiB, largest=size.largest)
    assert decision(plan) == expected
    assert plan.sequential <= plan.offload  # sequential is a kind of offload: the weights live in system memory
    assert tuning.pool(CUDA_BF16, plan) == (tuning.GPU if expected == ALL else tuning.SYSTEM)
    if expected == ALL:
        assert plan.note == "" and plan.channels_last
    else:
        assert plan.note.startswith(expected) and f"the GPU has {gpu:.1f} GiB free" in plan.note
    if expected == SEQUENTIAL:
        assert not plan.channels_last  # the hooks keep the weights on the meta device between uses


def test_flux_dev_on_24_gib_needs_more_than_the_gpu_but_its_transformer_fits(real):
    flux = real["flux1-dev"]
    need = flux.weights + tuning.working_memory(Family.FLUX1)
    assert 33 * GiB < need < 35 * GiB
    assert tuning.offload_need(Family.FLUX1, flux.largest) < 24 * GiB < need


def test_without_the_largest_part_a_model_too_big_is_model_offloaded_as_before(real):
    plan = tuning.plan(CUDA_BF16, Family.FLUX1, real["flux1-dev"].weights, 8 * GiB)
    assert plan.offload and not plan.sequential


@pytest.mark.parametrize(("gpu", "sentence"), [
    (80, "needs about 33.9 GiB; this GPU has 80.0 GiB free: it runs whole on the GPU"),
    (24, "needs about 33.9 GiB; this GPU has 24.0 GiB free: it will run with model offload, about 1.3x slower"),
    (8, "needs about 33.9 GiB; this GPU has 8.0 GiB free: it will run with sequential offload, about 4x slower"),
])
def test_the_estimate_before_loading_says_how_it_will_run(real, gpu, sentence):
    flux = real["flux1-dev"]
    assert tuning.estimate(CUDA_BF16, Family.FLUX1, flux.weights, gpu * GiB, largest=flux.largest) == sentence


def test_on_the_cpu_the_estimate_is_seconds_per_step_from_the_measured_speed(real, monkeypatch):
    monkeypatch.setattr(tuning, "cpu_flops", lambda dtype: 1e12)  # a 1 TFLOP/s CPU
    flux, medium = real["flux1-dev"], real["sd3.5-medium"]
    # FLUX.1: 2 x 11.9 B parameters x (4096 + 512) tokens x 1.14 = 125 TFLOP a step
    assert tuning.estimate(CPU_BF16, Family.FLUX1, flux.weights, denoiser=flux.denoiser) == \
        "about 130 s per step at 1024x1024 on this CPU"
    # SD3.5 Medium runs two passes (its CFG scale is 4.5): 2 x 2.24 B x (4096 + 333) x 2 x 1.14 = 45 TFLOP
    assert tuning.estimate(CPU_BF16, Family.SD3, medium.weights, denoiser=medium.denoiser, variant="medium") == \
        "about 45 s per step at 1024x1024 on this CPU"
    # a quarter of the image tokens beside the same 512 text tokens: (1024 + 512) / (4096 + 512) of the time
    assert tuning.estimate(CPU_BF16, Family.FLUX1, flux.weights, denoiser=flux.denoiser, size=(512, 512)) == \
        "about 42 s per step at 512x512 on this CPU"
    assert tuning.estimate(CPU_BF16, Family.SD1, 2 * GiB, denoiser=860_000_000) == ""  # UNet families: no model


def test_the_cpu_speed_is_measured_quickly_once():
    tuning.cpu_flops.cache_clear()
    start = time.perf_counter()
    first = tuning.cpu_flops(torch.float32)
    took = time.perf_counter() - start
    start = time.perf_counter()
    assert tuning.cpu_flops(torch.float32) == first
    assert time.perf_counter() - start < 0.001  # remembered
    assert took < 0.3
    assert 1e9 < first < 1e14  # between a slow laptop core and a many-core AMX server


class FakePipe:
    def __init__(self):
        self.calls = []
        self.transformer = torch.nn.Linear(4, 4)
        self.vae = torch.nn.Conv2d(3, 3, 1)

    @property
    def components(self):
        return {"transformer": self.transformer, "vae": self.vae, "scheduler": object()}

    def enable_sequential_cpu_offload(self, device=None):
        self.calls.append(("sequential", device))

    def enable_model_cpu_offload(self, device=None):
        self.calls.append(("model", device))

    def to(self, device):
        self.calls.append(("to", device))


def test_a_sequential_plan_installs_sequential_offload_and_moves_nothing():
    pipe = FakePipe()
    tuning.apply(pipe, tuning.Plan(offload=True, sequential=True), torch.device("cpu"))
    assert pipe.calls == [("sequential", torch.device("cpu"))]
    pipe = FakePipe()
    tuning.apply(pipe, tuning.Plan(offload=True), torch.device("cpu"))
    assert pipe.calls == [("model", torch.device("cpu"))]


def test_component_sizes_of_a_pipeline():
    pipe = FakePipe()
    assert tuning.largest_component(pipe) == (16 + 4) * 4  # the Linear's fp32 weight and bias
    assert tuning.denoiser_parameters(pipe) == 20
