"""Broken, hostile and foreign upscaler files: one sentence each, no code run, and the CLI goes on."""

import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from desktop.core.postprocess import UpscaleRequest, UpscalerError
from desktop.core.progress import TaskState
from desktop.engine import devices, tiny_upscaler, upscale
from desktop.engine.models import ModelManager

MARKER = "sfumato-upscaler-pickle-ran.txt"


class Payload:
    """Unpickling this would create a file: the side effect the test looks for."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def manager():
    return ModelManager(devices.choose("cpu", "fp32"))


def use(manager, path):
    with pytest.raises(UpscalerError) as caught:
        upscale.load(str(path), manager, TaskState())
    message = str(caught.value)
    assert message.startswith(f"Could not use the upscaler {path.name if path.is_dir() else path.stem}: ")
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_pickle_with_code_is_refused_and_its_code_never_runs(manager, tmp_path):
    path = tmp_path / "4x-evil.pth"
    marker = tmp_path / MARKER
    weights = tiny_upscaler.state_dict()
    weights["extra"] = Payload(str(marker))
    path.write_bytes(pickle.dumps(weights, protocol=2))  # torch.save's protocol
    assert "contains code, not only weights" in use(manager, path)
    assert not marker.exists()
    torch.save({"params_ema": {"x": Payload(str(marker))}}, tmp_path / "evil.pt")
    assert "contains code" in use(manager, tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_plain_pth_loads_through_weights_only(manager, tmp_path):
    path = tmp_path / "RealESRGAN_x4plus_tiny.pth"
    torch.save({"params_ema": tiny_upscaler.state_dict(scale=2)}, path)  # Real-ESRGAN's own wrapping
    assert upscale.load(str(path), manager, TaskState()).scale == 2


@pytest.mark.parametrize("name, data, expected", [
    ("truncated.safetensors", None, "damaged or incomplete"),
    ("huge-header.safetensors", struct.pack("<Q", 2**40) + b"{}", "damaged or incomplete"),
    ("noise.pth", bytes(range(256)) * 8, "damaged or incomplete"),
    ("empty.pth", b"", "damaged or incomplete"),
    ("notes.txt", b"hello", "Sfumato opens upscalers saved as .safetensors, .pth, .pt or .ckpt files."),
])
def test_damaged_files_get_a_sentence(manager, tmp_path, name, data, expected):
    path = tmp_path / name
    if data is None:
        whole = tmp_path / "whole.safetensors"
        tiny_upscaler.build(whole)
        data = whole.read_bytes()[:200]
    path.write_bytes(data)
    assert expected in use(manager, path)


def test_a_file_of_another_kind_is_not_taken_for_an_upscaler(manager, tmp_path):
    sd = tmp_path / "v1-5-pruned.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, str(sd))
    assert "not one of the upscaler architectures Sfumato knows" in use(manager, sd)
    nothing = tmp_path / "nothing.pth"
    torch.save({"step": 3, "note": "no tensors"}, nothing)
    assert "holds no weights" in use(manager, nothing)


def test_weights_that_do_not_fit_their_layout_are_called_damaged(manager, tmp_path):
    weights = tiny_upscaler.state_dict()
    weights["body.2.weight"] = torch.zeros(8, 5, 3, 3)  # the layout says 8 -> 8 features
    path = tmp_path / "4x-broken.safetensors"
    save_file(weights, str(path))
    assert "do not fit the architecture" in use(manager, path)


def test_a_missing_name_or_a_folder_says_where_upscalers_go(manager, tmp_path):
    message = use(manager, tmp_path / "4x-UltraSharp")
    assert "no upscaler of that name" in message and "upscalers" in message
    folder = tmp_path / "a-folder.pth"
    folder.mkdir()
    assert "is a folder" in use(manager, folder)


def test_a_request_too_large_is_refused_before_any_work():
    import numpy as np

    from desktop.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="at most 32768 pixels a side"):
        UpscaleRequest(np.zeros((9000, 10, 3), np.uint8), 4).validated()
    with pytest.raises(InvalidRequest, match="more than 0"):
        UpscaleRequest(np.zeros((10, 10, 3), np.uint8), float("nan")).validated()
