"""Bad IP-Adapter files and missing encoders give one sentence, and leave the model as it was."""

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from desktop.core import paths
from desktop.core.control import Reference
from desktop.core.progress import TaskState
from desktop.core.references import ReferenceError
from desktop.engine import generate, tiny_reference
from desktop.engine.local import FolderAddons
from tests.engine.test_reference import manager, picture, run  # noqa: F401 - fixture
from tests.support.requests import make_request


@pytest.fixture
def tiny_adapters(tiny_models):
    """The tiny SD 1.x and SDXL adapters in Sfumato's own folders, as a person would put them there."""
    import json

    built = {}
    for kind in ("sd1", "sdxl"):
        config = json.loads((tiny_models[kind].folder / "unet" / "config.json").read_text())
        built[kind] = tiny_reference.build(paths.models_dir(), kind, config)
    return built


def use(manager, tiny_models, adapter, kind="sd1"):  # noqa: F811
    return run(manager, str(tiny_models[kind].folder), [Reference(picture(1), weight=1.0, adapter=str(adapter))])


def message(manager, tiny_models, adapter, kind="sd1"):  # noqa: F811
    with pytest.raises(ReferenceError) as raised:
        use(manager, tiny_models, adapter, kind)
    text = str(raised.value)
    assert "\n" not in text and text.endswith(".")
    return text


def test_a_file_of_the_own_folder_is_found_by_name(manager, tiny_models, tiny_adapters):  # noqa: F811
    by_name = use(manager, tiny_models, "ip-adapter_tiny-sd1").image
    assert np.array_equal(by_name, use(manager, tiny_models, tiny_adapters["sd1"].adapter).image)


def test_files_that_are_not_adapters(manager, tiny_models, tmp_path):  # noqa: F811
    lora = tmp_path / "detail.safetensors"
    save_file({"lora_unet_down.lora_down.weight": torch.zeros(4, 4)}, str(lora))
    assert message(manager, tiny_models, lora) == (
        "detail.safetensors is not an IP-Adapter file (it has no image_proj and ip_adapter weights). Choose an "
        "IP-Adapter, such as ip-adapter_sd15.safetensors.")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    assert message(manager, tiny_models, junk).startswith("Could not read the IP-Adapter junk.safetensors: ")
    pickle = tmp_path / "ip-adapter_sd15.bin"
    pickle.write_bytes(b"\x80\x02")
    assert message(manager, tiny_models, pickle) == (
        "ip-adapter_sd15.bin is a pickle file; Sfumato uses .safetensors IP-Adapters. Download the .safetensors "
        "version.")
    assert message(manager, tiny_models, "ip-adapter_plus_sd15").startswith(
        "No IP-Adapter file is named ip-adapter_plus_sd15. Put it (a .safetensors file) in ")


def test_an_adapter_of_another_family_or_without_its_encoder(manager, tiny_models, tiny_adapters, tmp_path):  # noqa: F811
    assert message(manager, tiny_models, tiny_adapters["sd1"].adapter, "sdxl") == (
        "ip-adapter_tiny-sd1.safetensors is an IP-Adapter for models of cross-attention width 32; the model is one "
        "of the models of cross-attention width 96. Choose an IP-Adapter made for models of cross-attention width 96.")
    alone = tmp_path / "alone" / "ip-adapter_tiny-sd1.safetensors"
    alone.parent.mkdir()
    alone.write_bytes(tiny_adapters["sd1"].adapter.read_bytes())
    (tiny_adapters["sd1"].encoder / "config.json").rename(tmp_path / "config.json")  # the encoder is gone
    assert message(manager, tiny_models, alone).startswith(
        "No image encoder for the IP-Adapter ip-adapter_tiny-sd1.safetensors was found. Put the CLIP vision encoder "
        "it was trained with (a folder with config.json and model.safetensors")


def test_weights_that_do_not_fit_the_model_leave_it_as_it_was(manager, tiny_models, tiny_adapters, tmp_path):  # noqa: F811
    from safetensors.torch import load_file

    base = run(manager, str(tiny_models["sd1"].folder)).image
    state = load_file(str(tiny_adapters["sd1"].adapter))
    state["image_proj.proj.bias"] = torch.zeros(7)  # found wrong after the attention layers were replaced
    broken = tmp_path / "ip-adapter_broken.safetensors"
    save_file(state, str(broken))
    shutil.copytree(tiny_adapters["sd1"].encoder, tmp_path / "image_encoder")
    text = message(manager, tiny_models, broken)
    assert text == ("Could not load the IP-Adapter ip-adapter_broken.safetensors: its weights do not match the "
                    "model. It may be damaged or made for another model family.")
    assert np.array_equal(run(manager, str(tiny_models["sd1"].folder)).image, base)


def test_comfyuis_single_file_encoder_is_read_from_its_shapes(manager, tiny_models, tiny_adapters, tmp_path):  # noqa: F811
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from desktop.core import references

    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    (comfy / "ipadapter").mkdir()
    (comfy / "clip_vision").mkdir()
    adapter = comfy / "ipadapter" / "ip-adapter_tiny-sd1.safetensors"
    adapter.write_bytes(tiny_adapters["sd1"].adapter.read_bytes())
    shutil.rmtree(tiny_adapters["sd1"].encoder)  # only ComfyUI's file is left
    config = CLIPVisionConfig(hidden_size=768, intermediate_size=37, projection_dim=32, num_hidden_layers=2,
                              num_attention_heads=12, hidden_act="quick_gelu", image_size=32, patch_size=16)
    torch.manual_seed(0)
    encoder = comfy / "clip_vision" / "CLIP-ViT-B-tiny.safetensors"
    save_file(CLIPVisionModelWithProjection(config).state_dict(), str(encoder))
    assert references.encoder_file_config(encoder) == {
        "hidden_size": 768, "intermediate_size": 37, "projection_dim": 32, "num_hidden_layers": 2,
        "num_attention_heads": 12, "hidden_act": "quick_gelu", "image_size": 32, "patch_size": 16, "num_channels": 3}
    folders = [comfy / "checkpoints"]
    assert references.find_encoder(adapter, references.read_adapter(adapter), folders) == encoder
    base = run(manager, str(tiny_models["sd1"].folder)).image
    request = make_request(model=str(tiny_models["sd1"].folder), prompt="a fox", width=64, height=64, steps=3, seed=7,
                           sampler="Euler", references=(Reference(picture(1), weight=1.0, adapter=adapter.stem),))
    steered = generate.run(request, TaskState(), manager, addons=FolderAddons(folders))[0].image
    assert float(np.abs(steered.astype(int) - base.astype(int)).mean()) > 2.0


def test_the_demo_adapter_with_a_real_model_says_what_to_choose():
    from types import SimpleNamespace

    from desktop.engine import reference

    unet = SimpleNamespace(config=SimpleNamespace(cross_attention_dim=2048))
    with pytest.raises(ReferenceError) as raised:
        reference._adapter_path("demo", SimpleNamespace(family="sdxl"), unet, ())
    assert str(raised.value).startswith(
        "The demo IP-Adapter only works with the demo model. Choose an IP-Adapter file for SDXL models (such as "
        "ip-adapter_sdxl_vit-h.safetensors) and put it in ")


def test_the_adapters_of_sfumato_comfyui_and_a1111_are_listed(tmp_path):
    from desktop.core import references

    comfy, a1111 = tmp_path / "ComfyUI" / "models", tmp_path / "webui" / "models"
    for folder in (comfy / "checkpoints", comfy / "ipadapter", a1111 / "Stable-diffusion", a1111 / "ControlNet",
                   references.own_folder()):
        folder.mkdir(parents=True)
    for path in (comfy / "ipadapter" / "ip-adapter-plus_sd15.safetensors", a1111 / "ControlNet" /
                 "ip-adapter_sdxl_vit-h.safetensors", a1111 / "ControlNet" / "control_v11p_sd15_canny.safetensors",
                 references.own_folder() / "style.safetensors", comfy / "ipadapter" / "notes.txt"):
        path.write_bytes(b"")
    listed = references.list_adapters([comfy / "checkpoints", a1111 / "Stable-diffusion"])
    assert list(listed) == ["style", "ip-adapter-plus_sd15", "ip-adapter_sdxl_vit-h"]


def test_an_adapters_hash_is_the_old_style_one_a1111s_controlnet_extension_writes(tmp_path):
    """A1111's ControlNet extension names each file of models/ControlNet (IP-Adapters too) by the sha256 of the
    64 KiB at 1 MiB, as desktop/core/controlnets.short_hash; not the whole file's sha256."""
    import hashlib

    from desktop.core import controlnets
    from desktop.engine import reference

    data = np.random.default_rng(0).integers(0, 256, 0x120000, np.uint8).tobytes()
    path = tmp_path / "ip-adapter_sd15.safetensors"
    path.write_bytes(data)
    expected = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert reference._short_hash(path) == controlnets.short_hash(path) == expected
    assert reference._short_hash(tmp_path / "gone.safetensors") == ""
