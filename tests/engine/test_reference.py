"""Reference pictures (IP-Adapter) end to end on the tiny models: loaded by diffusers' loader, steering the
picture by weight, mode and picture, and gone again after the run."""

import os

import numpy as np
import torch
import pytest
from diffusers import StableDiffusionPipeline
from PIL import Image

from desktop.core import references
from desktop.core.control import Reference
from desktop.core.progress import TaskState
from desktop.core.request import Mode
from desktop.engine import devices, generate, reference, tiny_reference
from desktop.engine.models import ModelManager
from tests.support.requests import make_request

STEPS = 3


def picture(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((48, 40, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def manager():
    return ModelManager(devices.choose("cpu"))


def run(manager, model, refs=(), **fields):
    request = make_request(model=model, prompt="a fox", width=64, height=64, steps=STEPS, seed=7, sampler="Euler",
                           schedule="Automatic", references=tuple(refs), **fields)
    return generate.run(request, TaskState(), manager)[0]


def differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_the_tiny_adapter_loads_through_diffusers_own_loader_from_comfyui_folders(tiny_models, tmp_path):
    models = tmp_path / "ComfyUI" / "models"
    pipe = StableDiffusionPipeline.from_pretrained(tiny_models["sd1"].folder, safety_checker=None,
                                                   requires_safety_checker=False, local_files_only=True)
    built = tiny_reference.build(models, "sd1", dict(pipe.unet.config))
    assert built.adapter.parent == models / "ipadapter" and built.encoder.parent == models / "clip_vision"
    assert {p.name for p in built.encoder.iterdir()} == {"config.json", "model.safetensors"}
    pipe.load_ip_adapter(str(built.adapter.parent), subfolder="", weight_name=built.adapter.name,
                         image_encoder_folder=os.path.relpath(built.encoder, built.adapter.parent),
                         local_files_only=True)
    assert pipe.image_encoder.config.projection_dim == 32
    assert type(pipe.unet.attn_processors["up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"]
                ).__name__ == "IPAdapterAttnProcessor2_0"
    # found by name from ComfyUI's checkpoints folder, with its encoder
    folders = [models / "checkpoints"]
    (models / "checkpoints").mkdir()
    found = references.find_adapter("ip-adapter_tiny-sd1", folders)
    assert found == built.adapter
    assert references.find_encoder(found, references.read_adapter(found), folders) == built.encoder


def test_a_reference_steers_the_picture_by_weight_and_picture_and_leaves_nothing_behind(manager, tiny_models):
    model = str(tiny_models["sd1"].folder)
    base = run(manager, model).image
    assert np.array_equal(run(manager, model, [Reference(picture(1), weight=0.0)]).image, base), "weight 0 is none"
    one = run(manager, model, [Reference(picture(1), weight=1.0)])
    assert differ(one.image, base) > 5.0
    assert dict(one.params)["IP-Adapter 0"].startswith("Model: ip-adapter_tiny-sd1 [")
    assert dict(one.params)["IP-Adapter 0"].endswith("], Weight: 1, Mode: content")
    other = run(manager, model, [Reference(picture(2), weight=1.0)]).image
    assert differ(other, one.image) > 0.8, "another picture, another result"
    assert np.array_equal(run(manager, model).image, base), "no adapter stays in the UNet after the run"
    assert np.array_equal(run(manager, model, [Reference(picture(1), weight=1.0)]).image, one.image), "repeatable"
    # the pipelines made after a run with a reference have none either: an img2img made now equals one made
    # by a manager that never saw a reference
    init = np.full((64, 64, 3), 120, np.uint8)
    later = run(manager, model, mode=Mode.IMG2IMG, init_image=init, strength=0.8).image
    fresh = run(ModelManager(devices.choose("cpu")), model, mode=Mode.IMG2IMG, init_image=init, strength=0.8).image
    assert np.array_equal(later, fresh)


def test_several_references_each_keep_their_weight(manager, tiny_models):
    model = str(tiny_models["sd1"].folder)
    a = Reference(picture(1), weight=1.0)
    only_a = run(manager, model, [a]).image
    with_b_at_0 = run(manager, model, [a, Reference(picture(2), weight=0.0)])
    assert np.array_equal(with_b_at_0.image, only_a), "a second adapter at weight 0 changes nothing"
    assert dict(with_b_at_0.params)["IP-Adapter 1"].endswith("Weight: 0, Mode: content")
    both = run(manager, model, [a, Reference(picture(2), weight=1.0)]).image  # one adapter, two pictures
    assert differ(both, only_a) > 0.5


def test_style_uses_only_the_style_layers_on_sdxl_and_sd1(manager, tiny_models):
    for kind in ("sdxl", "sd1"):
        model = str(tiny_models[kind].folder)
        base = run(manager, model).image
        style = run(manager, model, [Reference(picture(1), weight=1.0, mode="style")])
        content = run(manager, model, [Reference(picture(1), weight=1.0, mode="content")]).image
        assert differ(style.image, base) > 1.5, kind
        assert differ(style.image, content) > 3.0, kind
        assert dict(style.params)["IP-Adapter 0"].endswith("Mode: style")
        assert np.array_equal(run(manager, model, [Reference(picture(1), weight=0.0, mode="style")]).image, base)


def test_the_style_layers_are_instantstyles():
    assert references.style_scale("sdxl", [3, 3, 0], 0.8) == {"up": {"block_0": [0.0, 0.8, 0.0]}}
    assert references.style_scale("sd1", [0, 3, 3, 3], 0.5) == {"up": {"block_1": 0.5}}


def test_an_rgba_layer_is_seen_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    seen = np.asarray(reference._picture(rgba))
    assert seen[0, 0].tolist() == [10, 20, 30] and seen[1, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize("shape", [(1, 4000, 4), (4000, 1, 3)])
def test_a_thin_picture_reaches_the_image_processor_as_a_white_square(shape):
    """A single stroke on a reference layer trimmed to what is painted: CLIP's processor would first scale its
    short side to 224 (224x896000 pixels: seconds and gigabytes), so the picture is centred on a white square."""
    from transformers import CLIPImageProcessor

    thin = np.zeros(shape, np.uint8)
    thin[..., 3:] = 255
    seen = reference._picture(thin)
    assert seen.size == (4000, 4000)
    pixels = np.asarray(seen)
    middle = (1999, slice(None)) if shape[0] == 1 else (slice(None), 1999)
    assert (pixels[middle] == 0).all() and (pixels == 255).mean() > 0.99  # the stroke, in the middle, on white
    handed = CLIPImageProcessor(size=224, crop_size=224)([seen], return_tensors="pt").pixel_values
    assert tuple(handed.shape) == (1, 3, 224, 224)


def test_the_hires_fix_uses_the_references_in_both_passes(manager, tiny_models):
    """The second pass runs another pipeline (img2img) on the same UNet, which has the adapters then: it must get
    the encodings too (without them the UNet refuses to run)."""
    from desktop.core.request import Hires

    model, on = str(tiny_models["sd1"].folder), Hires(enabled=True, scale=1.5, steps=2, denoise=0.5,
                                                      upscaler="Lanczos")
    plain = run(manager, model, hires=on).image
    steered = run(manager, model, [Reference(picture(1), weight=1.0)], hires=on)
    assert steered.image.shape == (96, 96, 3)
    assert differ(steered.image, plain) > 5.0
    assert np.array_equal(run(manager, model, hires=on).image, plain)


def test_a_run_out_of_memory_tries_again_with_its_references(manager, tiny_models, monkeypatch):
    """The lighter retry slices attention, which would replace the adapter's layers: with references it does not."""
    model, refs = str(tiny_models["sd1"].folder), [Reference(picture(1), weight=1.0)]
    steered = run(manager, model, refs).image
    unet = manager.pipeline("txt2img").unet
    forward, calls = unet.forward, []

    def once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(unet, "forward", once)
    assert np.array_equal(run(manager, model, refs).image, steered)
    monkeypatch.undo()
    assert np.array_equal(run(manager, model, refs).image, steered)
