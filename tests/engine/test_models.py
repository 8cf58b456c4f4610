"""Loading models: single files offline, bad files, sharing weights between modes."""

import gc
import shutil
import weakref

import numpy as np
import pytest

from desktop.core.errors import ModelLoadError
from desktop.core.modelfiles import Family
from desktop.core.progress import TaskState
from desktop.core.request import Mode
from desktop.engine import devices, generate
from desktop.engine.models import ModelManager
from tests.support.requests import make_request


def generate_once(manager, model, **fields):
    request = make_request(prompt="a boat", model=model, width=64, height=64, steps=3, seed=9, **fields)
    return generate.run(request, TaskState(), manager)[0].image


@pytest.mark.parametrize("kind", ["sd1", "sd1-inpaint", "sdxl"])
def test_single_file_loads_offline_and_matches_the_folder(tiny_models, monkeypatch, kind):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny = tiny_models[kind]
    manager = ModelManager(devices.choose("cpu", "fp32"))
    from_file = manager.load(str(tiny.checkpoint))
    assert from_file.family == ("sdxl" if kind == "sdxl" else "sd1")
    assert from_file.inpaint_model == kind.endswith("inpaint")
    file_image = generate_once(manager, str(tiny.checkpoint))
    folder_image = generate_once(manager, str(tiny.folder))
    assert np.array_equal(file_image, folder_image)


def test_switching_modes_shares_the_weights(cpu_manager, tiny_models):
    model = str(tiny_models["sd1"].folder)
    loaded = cpu_manager.load(model)
    generate_once(cpu_manager, model)
    generate_once(cpu_manager, model, mode=Mode.IMG2IMG, init_image=np.zeros((64, 64, 3), np.uint8))
    assert cpu_manager.load(model) is loaded  # no reload
    txt2img, img2img, inpaint = (cpu_manager.pipeline(k) for k in ("txt2img", "img2img", "inpaint"))
    assert txt2img.unet is img2img.unet is inpaint.unet
    assert txt2img.vae is inpaint.vae and txt2img.text_encoder is img2img.text_encoder


def test_unload_frees_the_weights(tiny_models):
    manager = ModelManager(devices.choose("cpu"))
    manager.load(str(tiny_models["sd1"].folder))
    unet = weakref.ref(manager.pipeline("txt2img").unet)
    manager.pipeline("inpaint")
    manager.unload()
    gc.collect()
    assert unet() is None


def broken_copies(tiny, folder):
    """Damaged versions of a good checkpoint, as users end up with them."""
    good = tiny.checkpoint.read_bytes()
    cases = {
        "truncated.safetensors": good[: len(good) // 2],
        "empty.safetensors": b"",
        "webpage.safetensors": b"<!DOCTYPE html><html>404</html>" * 10,
        "garbage-header.safetensors": (2**40).to_bytes(8, "little") + good[8:],
    }
    for name, data in cases.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in cases]


def test_broken_files_explain_themselves_and_keep_the_previous_model(tiny_models, tmp_path):
    manager = ModelManager(devices.choose("cpu"))
    good = str(tiny_models["sd1"].folder)
    before = generate_once(manager, good)
    for path in broken_copies(tiny_models["sd1"], tmp_path):
        with pytest.raises(ModelLoadError) as caught:
            manager.load(str(path))
        assert path.name in str(caught.value)
        assert manager.current.ref == good
    assert np.array_equal(generate_once(manager, good), before)


def test_wrong_weights_for_the_architecture(tiny_models, tmp_path):
    """A checkpoint whose tensors do not fit its config: a clear error, not a traceback."""
    tiny = tiny_models["sd1"]
    shutil.copy(tiny.checkpoint, tmp_path / "odd.safetensors")
    shutil.copytree(tiny_models["sdxl"].config, tmp_path / "odd.config")  # wrong architecture beside it
    with pytest.raises(ModelLoadError):
        ModelManager(devices.choose("cpu")).load(str(tmp_path / "odd.safetensors"))


def test_missing_model_and_non_checkpoints(tmp_path):
    manager = ModelManager(devices.choose("cpu"))
    with pytest.raises(ModelLoadError, match="no such file"):
        manager.load(str(tmp_path / "nothing.safetensors"))


def test_demo_model_is_built_on_first_use(sfumato_home):
    manager = ModelManager(devices.choose("cpu"))
    messages = []
    loaded = manager.load("demo", TaskState(on_status=messages.append))
    assert loaded.info.family is Family.SD1
    assert str(sfumato_home) in str(loaded.info.path)
    assert any("demo" in m for m in messages)
