"""One rule for "the other app's models folder": A1111 / Forge / SD.Next and ComfyUI layouts, used by every search
beside them (ControlNets, IP-Adapters and their encoders, upscalers, the depth preprocessor)."""

from pathlib import Path

import pytest

from desktop.core import controlnets, postprocess, references
from desktop.core.app_folders import app_models_folder


@pytest.mark.parametrize("name, app", [("Stable-diffusion", "a1111"), ("stable-diffusion", "a1111"),
                                       ("stablediffusion", "a1111"), ("checkpoints", "comfyui"),
                                       ("Checkpoints", "comfyui")])
def test_an_apps_checkpoint_folder_names_the_app_and_its_models_folder(tmp_path, name, app):
    assert app_models_folder(tmp_path / "webui" / "Models" / name) == (app, tmp_path / "webui" / "Models")
    assert app_models_folder(str(tmp_path / "webui" / "models" / name)) == (app, tmp_path / "webui" / "models")


@pytest.mark.parametrize("folder", ["models/loras", "stuff/Stable-diffusion", "checkpoints", "models", "/"])
def test_other_folders_are_no_apps(folder):
    assert app_models_folder(Path(folder)) is None


def test_every_search_beside_an_app_accepts_the_same_folder_names(tmp_path):
    """SD.Next's models/stablediffusion is found by all of them, not only by the ControlNet search."""
    models = tmp_path / "sdnext" / "models"
    for sub in ("stablediffusion", "ControlNet", "clip_vision", "ESRGAN"):
        (models / sub).mkdir(parents=True)
    folders = [models / "stablediffusion"]
    assert models / "ControlNet" in controlnets.controlnet_folders(folders)
    assert models / "ControlNet" in references.adapter_folders(folders)
    assert models / "clip_vision" in references.encoder_folders(folders)
    assert models / "ESRGAN" in postprocess.upscaler_folders(folders)
