"""The upscale request: its sizes, its checks, A1111's Extras keys, and where named upscalers are found."""

import numpy as np
import pytest

from desktop.core import paths
from desktop.core.errors import InvalidRequest
from desktop.core.geometry import Extent
from desktop.core.postprocess import (UpscaleRequest, find_upscaler, list_upscalers, upscale_params,
                                      upscaler_folders, with_params)


def image(height=37, width=50):
    return np.zeros((height, width, 3), np.uint8)


@pytest.mark.parametrize("scale, size, target, factor", [
    (1.5, None, (75, 56), 1.5), (2, None, (100, 74), 2.0), (3, None, (150, 111), 3.0),
    (4, Extent(333, 222), (333, 222), 6.66),
])
def test_target_size_and_written_factor(scale, size, target, factor):
    request = UpscaleRequest(image(), scale, size).validated()
    assert tuple(request.target()) == target
    assert request.factor() == pytest.approx(factor)


@pytest.mark.parametrize("changes, field", [
    ({"scale": 0}, "scale"), ({"scale": -1}, "scale"), ({"scale": 9}, "scale"), ({"scale": float("inf")}, "scale"),
    ({"size": Extent(0, 10)}, "size"), ({"image": np.zeros((4, 4), np.uint8)}, "image"),
    ({"image": np.zeros((4, 4, 3), np.float32)}, "image"), ({"upscaler": ""}, "upscaler"),
])
def test_bad_requests_name_their_field(changes, field):
    with pytest.raises(InvalidRequest) as caught:
        UpscaleRequest(image()).replace(**changes).validated()
    assert caught.value.field == field and caught.value.message.endswith(".")


def test_parameters_get_a1111_extras_keys_appended():
    params = upscale_params(2.0, "4x-UltraSharp")
    assert params == (("Postprocess upscale by", "2"), ("Postprocess upscaler", "4x-UltraSharp"))
    source = "a fox\nSteps: 20, Seed: 1\n"
    assert with_params(source, params) == \
        "a fox\nSteps: 20, Seed: 1, Postprocess upscale by: 2, Postprocess upscaler: 4x-UltraSharp"
    assert with_params("", params) == "Postprocess upscale by: 2, Postprocess upscaler: 4x-UltraSharp"
    assert upscale_params(1.5, "x")[0] == ("Postprocess upscale by", "1.5")


def test_named_upscalers_are_found_in_the_other_apps_folders(tmp_path):
    a1111 = tmp_path / "stable-diffusion-webui" / "models"
    comfy = tmp_path / "ComfyUI" / "models"
    for folder in (a1111 / "Stable-diffusion", comfy / "checkpoints"):
        folder.mkdir(parents=True)
    (a1111 / "ESRGAN").mkdir()
    (a1111 / "ESRGAN" / "4x-UltraSharp.pth").write_bytes(b"x")
    (a1111 / "RealESRGAN").mkdir()
    (a1111 / "RealESRGAN" / "RealESRGAN_x4plus.pth").write_bytes(b"x")
    (comfy / "upscale_models" / "sub").mkdir(parents=True)
    (comfy / "upscale_models" / "sub" / "2x-Compact.safetensors").write_bytes(b"x")
    (comfy / "upscale_models" / "readme.txt").write_text("x")
    own = paths.models_dir() / "upscalers"
    own.mkdir(parents=True)
    (own / "4x-UltraSharp.safetensors").write_bytes(b"x")
    folders = [a1111 / "Stable-diffusion", comfy / "checkpoints"]

    assert upscaler_folders(folders) == [own, a1111 / "ESRGAN", a1111 / "RealESRGAN", comfy / "upscale_models"]
    assert set(list_upscalers(folders)) == {"4x-UltraSharp", "RealESRGAN_x4plus", "2x-Compact"}
    assert find_upscaler("4x-UltraSharp", folders) == own / "4x-UltraSharp.safetensors"  # Sfumato's own first
    assert find_upscaler("realesrgan_x4plus", folders) == a1111 / "RealESRGAN" / "RealESRGAN_x4plus.pth"
    assert find_upscaler("2x-Compact.safetensors", folders) == comfy / "upscale_models" / "sub" / "2x-Compact.safetensors"
    assert find_upscaler("4x-Nothing", folders) is None


def test_an_upscale_with_detail_is_named_so_and_its_bad_settings_are_one_sentence():
    from desktop.core.postprocess import DetailSettings, describe
    from desktop.core.request import Sampling

    image = np.zeros((8, 8, 3), np.uint8)
    assert describe(UpscaleRequest(image, 2, detail=DetailSettings())) == "Upscale x2 with detail"
    assert DetailSettings().sampling.strength == 0.35
    with pytest.raises(InvalidRequest) as error:
        UpscaleRequest(image, 2, detail=DetailSettings(sampling=Sampling(strength=1.5))).validated()
    assert error.value.field == "strength"
    with pytest.raises(InvalidRequest) as error:
        UpscaleRequest(image, 2, detail=DetailSettings(model=" ")).validated()
    assert error.value.field == "model" and "name the model" in str(error.value)
