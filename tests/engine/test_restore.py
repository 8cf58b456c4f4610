"""Denoise / de-JPEG / restore with spandrel's scale-1 models: they run through the upscale engine at scale 1,
are found in the upscaler folders and Sfumato's own restorers folder, listed as restorers, and say
`Postprocess restore: NAME` in their metadata."""

import numpy as np
import pytest

from desktop.core import paths
from desktop.core.backend import UpscaleJob
from desktop.core.errors import InvalidRequest
from desktop.core.postprocess import DEMO_RESTORER, DEMO_RESTORER_NAME, UpscaleRequest, UpscalerError
from desktop.core.progress import TaskState
from desktop.engine import devices, tiny_upscaler, upscale
from desktop.engine.local import LocalBackend
from desktop.engine.models import ModelManager

from .test_upscale import picture


@pytest.fixture
def manager():
    return ModelManager(devices.choose("cpu", "fp32"))


def restore(image, model=DEMO_RESTORER, kind="denoise", **fields):
    return UpscaleRequest(image, 1.0, upscaler=model, restore=kind, **fields)


def test_the_demo_restorer_keeps_the_size_and_changes_the_picture_a_little(manager):
    image = picture(150, 230)
    result, = upscale.run(restore(image), TaskState(), manager)
    assert result.image.shape == image.shape
    difference = np.abs(result.image.astype(int) - image.astype(int))
    assert 0 < difference.mean() < 8, "a faint change, not a new picture"
    assert result.params == (("Postprocess restore", DEMO_RESTORER_NAME),)


def test_a_restore_is_tiled_like_an_upscale(manager):
    image = picture(300, 200)
    restorer = upscale.load(DEMO_RESTORER, manager, TaskState())
    assert restorer.scale == 1 and restorer.architecture == "DnCNN"
    whole = upscale.upscale_image(restorer, image, TaskState(), 10_000).astype(int)
    steps = []
    tiled = upscale.upscale_image(restorer, image, TaskState(on_step=lambda i, n, p: steps.append(n)), 128, 32)
    assert steps[-1] == 6 and np.abs(tiled.astype(int) - whole).max() <= 1


def test_the_metadata_appends_postprocess_restore_to_the_source_parameters(tmp_path):
    backend = LocalBackend("cpu", "fp32", hash_cache=tmp_path / "hashes.json")
    source = "a cat\nSteps: 20, Seed: 7, Size: 40x30"
    result, = backend.run(UpscaleJob(restore(picture(30, 40), kind="jpeg", parameters=source)), TaskState())
    assert result.request.parameters == source + ", Postprocess restore: Demo restorer (random weights)"
    backend.close()


def test_an_upscaler_is_refused_as_a_restorer(manager, tmp_path):
    x2 = tiny_upscaler.build(tmp_path / "2x-Tiny.safetensors", scale=2)
    with pytest.raises(UpscalerError, match="it is an x2 upscaler, not a restorer"):
        upscale.run(restore(picture(10, 10), str(x2)), TaskState(), manager)


def test_a_restore_keeps_the_size():
    with pytest.raises(InvalidRequest, match="keeps the picture's size"):
        UpscaleRequest(picture(10, 10), 2.0, restore="denoise").validated()
    with pytest.raises(InvalidRequest, match="one of denoise, jpeg, restore, face"):
        restore(picture(10, 10), kind="faces").validated()
    with pytest.raises(InvalidRequest, match="face settings"):
        restore(picture(10, 10), kind="face").validated()


def test_restorers_are_found_and_listed_apart_from_upscalers(manager, tmp_path):
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    tiny_upscaler.build(comfy / "upscale_models" / "2x-Tiny.safetensors", scale=2)
    tiny_upscaler.build_restorer(comfy / "upscale_models" / "1x-Denoise.safetensors")
    tiny_upscaler.build_restorer(paths.models_dir() / "restorers" / "FBCNN-ish.safetensors")
    (comfy / "upscale_models" / "broken.pth").write_bytes(b"not a model")
    backend = LocalBackend("cpu", "fp32", [comfy / "checkpoints"], hash_cache=tmp_path / "hashes.json")
    families = {m.name: m.family for m in backend.models() if m.family in ("upscaler", "restorer")}
    assert families["2x-Tiny"] == "upscaler"
    assert families["1x-Denoise"] == families["FBCNN-ish"] == families[DEMO_RESTORER_NAME] == "restorer"
    assert families["broken"] == "upscaler", "an unreadable file stays listed; using it says why it fails"
    result, = upscale.run(restore(picture(10, 10), "fbcnn-ish"), TaskState(), manager, [comfy / "checkpoints"])
    assert result.params == (("Postprocess restore", "FBCNN-ish"),)
