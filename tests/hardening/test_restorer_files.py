"""Broken, hostile and foreign restorer files: the Models listing survives them without running their code,
and a restore with one says why in one sentence."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from desktop.core import paths
from desktop.core.postprocess import UpscaleRequest, UpscalerError
from desktop.core.progress import TaskState
from desktop.engine import devices, tiny_upscaler, upscale
from desktop.engine.local import LocalBackend
from desktop.engine.models import ModelManager

from .test_upscaler_files import Payload


@pytest.fixture
def manager():
    return ModelManager(devices.choose("cpu", "fp32"))


def restore_with(manager, path):
    request = UpscaleRequest(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy(), 1.0, upscaler=str(path), restore="denoise")
    with pytest.raises(UpscalerError) as caught:
        upscale.run(request, TaskState(), manager)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_pickle_with_code_in_the_restorers_folder_is_listed_without_running(tmp_path):
    folder = paths.models_dir() / "restorers"
    folder.mkdir(parents=True)
    marker = tmp_path / "ran.txt"
    weights = tiny_upscaler.restorer_state_dict()
    weights["extra"] = Payload(str(marker))
    (folder / "1x-Evil.pth").write_bytes(pickle.dumps(weights, protocol=2))  # torch.save's protocol
    backend = LocalBackend("cpu", "fp32", hash_cache=tmp_path / "hashes.json")
    listed = {m.name: m.family for m in backend.models()}
    assert "1x-Evil" in listed and not marker.exists()
    assert "contains code" in restore_with(ModelManager(devices.choose("cpu", "fp32")), folder / "1x-Evil.pth")
    assert not marker.exists()


def test_a_grey_restorer_says_it_takes_one_channel(manager, tmp_path):
    weights = tiny_upscaler.restorer_state_dict()
    weights["model.0.weight"] = weights["model.0.weight"][:, :1].contiguous()
    weights["model.14.weight"] = weights["model.14.weight"][:1].contiguous()
    weights["model.14.bias"] = weights["model.14.bias"][:1].contiguous()
    save_file(weights, tmp_path / "gray.safetensors")
    assert "takes 1 and gives 1 channels" in restore_with(manager, tmp_path / "gray.safetensors")
    assert upscale.kind_of(tmp_path / "gray.safetensors") == ""


def test_restorer_weights_that_do_not_fit_their_layout_are_called_damaged(manager, tmp_path):
    weights = tiny_upscaler.restorer_state_dict()
    weights["model.6.weight"] = torch.zeros(8, 5, 3, 3)
    save_file(weights, tmp_path / "damaged.safetensors")
    assert "do not fit the architecture" in restore_with(manager, tmp_path / "damaged.safetensors")


def test_an_empty_restorer_file_is_damaged(manager, tmp_path):
    (tmp_path / "empty.safetensors").write_bytes(b"")
    assert "damaged or incomplete" in restore_with(manager, tmp_path / "empty.safetensors")
    assert upscale.kind_of(tmp_path / "empty.safetensors") == ""
