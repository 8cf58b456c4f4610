"""SDXL "union" ControlNets (ControlNetUnionModel) end to end on the tiny SDXL model: a tiny union net built from its
UNet (tiny_control.build_union), saved as a diffusers folder and loaded by the real loader."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from desktop.core.control import Control
from desktop.core.errors import SfumatoError
from desktop.core.progress import TaskState
from desktop.core.request import Mode
from desktop.engine import controlnet, generate, tiny_control
from tests.support.requests import make_request


@pytest.fixture(scope="session")
def union(tiny_models, tmp_path_factory):
    """The tiny union ControlNet's folder."""
    return tiny_control.build_union(tmp_path_factory.mktemp("tiny-union"), tiny_models["sdxl"].folder.parent)


@pytest.fixture(scope="session")
def ordinary(tiny_models, tmp_path_factory):
    """An ordinary tiny SDXL ControlNet's folder."""
    root = tmp_path_factory.mktemp("tiny-controls")
    return tiny_control.build(root, "sdxl", models_root=tiny_models["sdxl"].folder.parent).folder


def picture(seed=0, w=64, h=64):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def run(manager, model, *controls, **fields):
    fields = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 1, "model": str(model),
              "controls": tuple(controls), **fields}
    return generate.run(make_request(**fields), TaskState(), manager)[0]


def differ(a, b) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_a_union_controlnet_folder_loads_by_the_real_loader(union):
    net = controlnet.read(union, "tiny-control-union-sdxl", torch.float32)
    assert type(net).__name__ == "ControlNetUnionModel" and controlnet.is_union(net)
    assert net.config.num_control_type == 8
    assert bool(net.spatial_ch_projs.weight.any())  # not zero: the control picture can change the result


def test_a_union_control_at_weight_0_or_ending_at_0_gives_the_pixels_of_none(cpu_manager, tiny_models, union):
    sdxl = tiny_models["sdxl"].folder
    none = run(cpu_manager, sdxl).image
    assert np.array_equal(run(cpu_manager, sdxl, Control(str(union), picture(), type="canny", weight=0.0)).image,
                          none)
    assert np.array_equal(run(cpu_manager, sdxl, Control(str(union), picture(), type="canny", end=0.0)).image, none)
    acting = run(cpu_manager, sdxl, Control(str(union), picture(), type="canny"))
    assert differ(acting.image, none) > 0.5
    assert dict(acting.params)["ControlNet 0"].startswith("Module: canny, Model: tiny-control-union-sdxl [")


def test_the_picture_and_the_type_change_the_result(cpu_manager, tiny_models, union):
    sdxl = tiny_models["sdxl"].folder
    a = run(cpu_manager, sdxl, Control(str(union), picture(1), type="canny")).image
    again = run(cpu_manager, sdxl, Control(str(union), picture(1), type="canny")).image
    b = run(cpu_manager, sdxl, Control(str(union), picture(2), type="canny")).image
    depth = run(cpu_manager, sdxl, Control(str(union), picture(1), type="depth")).image
    assert np.array_equal(a, again)
    assert differ(a, b) > 0.5
    assert differ(a, depth) > 0.1  # the control mode reaches the net


def test_two_controls_on_one_union_controlnet(cpu_manager, tiny_models, union):
    sdxl = tiny_models["sdxl"].folder
    canny = Control(str(union), picture(1), type="canny")
    depth = Control(str(union), picture(2), type="depth", weight=0.5, start=0.2, end=0.8)
    one = run(cpu_manager, sdxl, canny, steps=4)
    both = run(cpu_manager, sdxl, canny, depth, steps=4)  # the depth control acts at steps 2 and 3
    assert differ(one.image, both.image) > 0.5
    assert np.array_equal(run(cpu_manager, sdxl, canny, depth.replace(weight=0.0), steps=4).image, one.image)
    params = dict(both.params)
    assert params["ControlNet 0"].startswith("Module: canny, Model: tiny-control-union-sdxl [")
    assert params["ControlNet 1"].startswith("Module: depth_anything_v2, Model: tiny-control-union-sdxl [")
    assert params["ControlNet 1"].endswith("Weight: 0.5, Guidance Start: 0.2, Guidance End: 0.8")
    held = [key for key in cpu_manager._held if key[0] == controlnet.KIND and "union" in key[1]]
    assert len(held) == 1  # the union ControlNet is loaded once for both


@pytest.mark.parametrize("mode", [Mode.IMG2IMG, Mode.INPAINT])
def test_img2img_and_inpaint_take_a_union_control(cpu_manager, tiny_models, union, mode):
    sdxl = tiny_models["sdxl"].folder
    fields = dict(mode=mode, init_image=picture(7), strength=0.75, steps=3)
    if mode is Mode.INPAINT:
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, 16:48] = 255
        fields["mask"] = mask
    none = run(cpu_manager, sdxl, **fields).image
    guided = run(cpu_manager, sdxl, Control(str(union), picture(), type="scribble"), **fields).image
    assert differ(guided, none) > 0.1


def test_a_picture_without_a_type_is_refused_with_a_sentence(cpu_manager, tiny_models, union):
    with pytest.raises(SfumatoError) as refused:
        run(cpu_manager, tiny_models["sdxl"].folder, Control(str(union), picture(), type="none"))
    assert str(refused.value) == (
        "Could not use the ControlNet tiny-control-union-sdxl: it is a \"union\" ControlNet, which must be told what "
        "the control picture shows: choose the control's type (canny, lineart, scribble or depth) instead of none.")


def test_a_union_controlnet_with_an_sd1_model_is_refused_naming_both(cpu_manager, tiny_models, union):
    with pytest.raises(SfumatoError) as refused:
        run(cpu_manager, tiny_models["sd1"].folder, Control(str(union), picture(), type="canny"))
    message = str(refused.value)
    assert "it is an SDXL ControlNet (cross-attention width 96)" in message and "\n" not in message
    assert "tiny-sd1 is an SD 1.x model (width 32). Choose a ControlNet made for SD 1.x." in message


def test_a_union_and_an_ordinary_controlnet_together_are_refused(cpu_manager, tiny_models, union, ordinary):
    sdxl = tiny_models["sdxl"].folder
    for controls in ((Control(str(union), picture(), type="canny"), Control(str(ordinary), picture())),
                     (Control(str(ordinary), picture()), Control(str(union), picture(), type="canny"))):
        with pytest.raises(SfumatoError) as refused:
            run(cpu_manager, sdxl, *controls)
        assert str(refused.value) == (
            "Could not use the ControlNet tiny-control-union-sdxl: it is a \"union\" ControlNet, which cannot run "
            "together with an ordinary ControlNet such as tiny-control-sdxl. Use union ControlNets only, or ordinary "
            "ones only.")


def test_a_single_file_union_controlnet_asks_for_its_folder(tmp_path, union):
    net = controlnet.read(union, "folder", torch.float32)
    path = tmp_path / "union-promax.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    with pytest.raises(controlnet.ControlNetError) as refused:
        controlnet.read(path, path.name, torch.float32)
    assert "as a single file, which diffusers cannot read. Use its diffusers folder" in str(refused.value)
