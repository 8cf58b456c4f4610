"""The device plan: which settings a model gets on a GPU of a given size, on a Mac, on the CPU."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.models.attention_processor import SlicedAttnProcessor

from desktop.core.modelfiles import Family
from desktop.core.progress import TaskState
from desktop.core.request import Mode
from desktop.engine import bundled_configs, devices, generate, tuning
from desktop.engine.models import ModelManager
from tests.support.requests import make_request

GiB = tuning.GiB
CUDA_FP16 = devices.DeviceChoice(torch.device("cuda"), torch.float16, "CUDA (test)")
MPS_FP16 = devices.DeviceChoice(torch.device("mps"), torch.float16, "Apple GPU (test)")


def full_size_weights(family: str) -> int:
    """Bytes of a full-size model's UNet, VAE and text encoders in fp16, counted without allocating them."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = bundled_configs.assemble_config(family, Path(tempfile.mkdtemp()) / family)
    with torch.device("meta"):
        modules = [UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet")),
                   AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae")),
                   CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder"))]
        if family == "sdxl":
            modules.append(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(config / "text_encoder_2")))
    return sum(p.numel() * 2 for m in modules for p in m.parameters())


@pytest.fixture(scope="module")
def weights():
    return {"sd1": full_size_weights("sd1"), "sdxl": full_size_weights("sdxl")}


def test_full_size_models_are_the_sizes_users_know(weights):
    assert 1.9 * GiB < weights["sd1"] < 2.1 * GiB  # SD1.5 in fp16: about 2 GB
    assert 6.2 * GiB < weights["sdxl"] < 6.7 * GiB  # SDXL in fp16: about 7 GB


@pytest.mark.parametrize(("family", "gpu", "offload"), [
    ("sd1", 3, True), ("sd1", 4, False), ("sd1", 24, False),
    ("sdxl", 6, True), ("sdxl", 8, True), ("sdxl", 12, False), ("sdxl", 24, False),
])
def test_models_too_big_for_the_gpu_are_offloaded(weights, family, gpu, offload):
    plan = tuning.plan(CUDA_FP16, Family(family), weights[family], gpu_memory=gpu * GiB)
    assert plan.offload is offload
    assert plan.channels_last and not plan.attention_slicing
    assert (f"the GPU has {gpu:.1f} GiB" in plan.note) is offload


@pytest.mark.parametrize(("ram", "sliced"), [(8, True), (16, True), (32, True), (64, False), (128, False)])
def test_macs_with_less_than_64_gib_slice_attention(weights, ram, sliced):
    plan = tuning.plan(MPS_FP16, Family.SD1, weights["sd1"], system_memory=ram * GiB)
    assert plan.attention_slicing is sliced and not plan.offload


def test_the_cpu_gets_channels_last_only_in_half_precision(weights):
    bf16 = tuning.plan(devices.choose("cpu", "bf16"), Family.SD1, weights["sd1"], None, 8 * GiB)
    fp32 = tuning.plan(devices.choose("cpu", "fp32"), Family.SD1, weights["sd1"], None, 8 * GiB)
    assert bf16 == tuning.Plan(channels_last=True)
    assert fp32 == tuning.Plan()


def test_an_offloaded_model_is_never_moved_whole_and_every_mode_is_offloaded(tiny_models, monkeypatch):
    offloaded, moved = [], []
    monkeypatch.setattr(DiffusionPipeline, "enable_model_cpu_offload",
                        lambda pipe, device=None: offloaded.append((type(pipe).__name__, device)))
    real_to = DiffusionPipeline.to

    def to(pipe, *args, **kwargs):
        moved.extend(a for a in (*args, kwargs.get("device")) if isinstance(a, (str, torch.device)))
        return real_to(pipe, *args, **kwargs)

    monkeypatch.setattr(DiffusionPipeline, "to", to)
    monkeypatch.setattr(tuning, "plan", lambda *a, **k: tuning.Plan(offload=True, note="model offload: test"))
    manager = ModelManager(devices.choose("cpu", "fp32"))
    state = TaskState()
    statuses = []
    state.status = statuses.append
    manager.load(str(tiny_models["sd1"].folder), state)
    assert "model offload: test" in statuses[-1]
    manager.pipeline("img2img")
    assert offloaded == [("StableDiffusionPipeline", torch.device("cpu")),
                         ("StableDiffusionImg2ImgPipeline", torch.device("cpu"))]
    assert moved == []  # the offload hooks bring each model to the GPU while it runs; nothing else moves them


def test_an_out_of_memory_retry_gives_back_the_sliced_attention_it_found(tiny_models, monkeypatch):
    monkeypatch.setattr(tuning, "plan", lambda *a, **k: tuning.Plan(attention_slicing=True))
    manager = ModelManager(devices.choose("cpu", "fp32"))
    model = str(tiny_models["sd1"].folder)
    request = make_request(prompt="a pier", model=model, width=64, height=64, steps=2, seed=3,
                                mode=Mode.TXT2IMG)
    generate.run(request, TaskState(), manager)
    unet = manager.pipeline("txt2img").unet
    assert all(isinstance(p, SlicedAttnProcessor) for p in unet.attn_processors.values())

    real_forward, failures = unet.forward, []

    def once_out_of_memory(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(unet, "forward", once_out_of_memory)
    image = generate.run(request, TaskState(), manager)[0].image
    assert failures and image.shape == (64, 64, 3) and np.ptp(image) > 0
    assert all(isinstance(p, SlicedAttnProcessor) for p in unet.attn_processors.values())


def test_a_model_that_runs_out_of_gpu_memory_loading_is_offloaded_instead(tiny_models, monkeypatch):
    applied = []

    def apply(pipe, plan, device):
        applied.append(plan.offload)
        if not plan.offload:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(tuning, "measure", lambda choice: (16 * GiB, 32 * GiB))  # looks like it fits
    monkeypatch.setattr(tuning, "apply", apply)
    monkeypatch.setattr(tuning, "configure_backends", lambda choice: None)  # no process-wide CUDA switches here
    manager = ModelManager(CUDA_FP16)
    statuses = []
    state = TaskState()
    state.status = statuses.append
    loaded = manager.load(str(tiny_models["sd1"].folder), state)
    assert applied == [False, True]
    assert loaded.plan.offload and "ran out of memory loading it whole" in statuses[-1]
