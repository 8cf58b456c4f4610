"""A full-size SD1.5 checkpoint, random weights, original key layout, through the real single-file loader.

Slow (about a gigabyte of weights written and read): run with `pytest -m slow`.
"""

import numpy as np
import pytest
import torch

from desktop.core.modelfiles import Family, identify
from desktop.core.progress import TaskState

from desktop.engine import bundled_configs, devices, generate
from desktop.engine.ldm_layout import to_original_layout
from desktop.engine.models import ModelManager
from tests.support.requests import make_request

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sd15_checkpoint(tmp_path_factory):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    config = bundled_configs.assemble_config("sd1", tmp_path_factory.mktemp("cfg") / "sd1")
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae"))
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder"))
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    state = {k: v.to(torch.float16).contiguous() for k, v in to_original_layout(unet, vae, [text], "sd1").items()}
    path = tmp_path_factory.mktemp("ckpt") / "random-sd15.safetensors"
    save_file(state, str(path))
    return path


def test_full_size_sd15_loads_offline_and_generates(sd15_checkpoint, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    info = identify(sd15_checkpoint)
    assert info.family is Family.SD1 and not info.inpaint
    manager = ModelManager(devices.choose("cpu"))
    loaded = manager.load(str(sd15_checkpoint))
    assert sum(p.numel() for p in manager.pipeline("txt2img").unet.parameters()) == 859_520_964
    request = make_request(prompt="a photo of a cat", model=str(sd15_checkpoint), width=64, height=64,
                                steps=1, seed=1)
    image = generate.run(request, TaskState(), manager)[0].image
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
