"""Broken, hostile and foreign model files: a clear sentence each, and the previous model keeps working."""

import io
import json
import pickle
import struct
import zipfile

import pytest

from desktop.core.errors import ModelLoadError
from desktop.core.progress import TaskState
from desktop.core.request import GenerationRequest
from desktop.engine import generate

MARKER = "sfumato-pickle-ran.txt"


class Payload:
    """Unpickling this would create a file: the side effect the test looks for."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def safetensors(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def hostile_files(tmp_path, good_checkpoint):
    marker = tmp_path / MARKER
    pickled = io.BytesIO()
    with zipfile.ZipFile(pickled, "w") as archive:  # the layout torch.save writes
        archive.writestr("archive/data.pkl", pickle.dumps({"state_dict": Payload(str(marker))}, protocol=2))
        archive.writestr("archive/version", "3\n")
    return {
        "truncated.safetensors": good_checkpoint.read_bytes()[: len(good_checkpoint.read_bytes()) // 3],
        "huge-header.safetensors": struct.pack("<Q", 10**12) + b"{}",
        "overlapping.safetensors": safetensors({
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)),
        "unknown-family.safetensors": safetensors({
            "encoder.layer.0.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, bytes(16)),
        "a-picture.safetensors": b"\x89PNG\r\n\x1a\n" + bytes(200),
        "notes.safetensors": b"these are my prompt notes, not a model\n" * 20,
        "evil.ckpt": pickled.getvalue(),
    }, marker


def test_each_bad_model_file_says_why_and_the_previous_model_keeps_working(cpu_manager, tiny_models, tmp_path):
    good = str(tiny_models["sd1"].folder)
    request = GenerationRequest(prompt="x", model=good, width=64, height=64, steps=1, seed=1)
    generate.run(request, TaskState(), cpu_manager)
    files, marker = hostile_files(tmp_path, tiny_models["sd1"].checkpoint)
    outcomes = {}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ModelLoadError) as caught:
            cpu_manager.load(str(path))
        message = str(caught.value)
        assert name in message and message.endswith(".") and "Traceback" not in message
        outcomes[name] = message
        assert cpu_manager.current.ref == good, f"{name}: the previous model is still loaded"
        result = generate.run(request, TaskState(), cpu_manager)[0]
        assert result.image.shape == (64, 64, 3)
    assert not marker.exists(), "the pickle's code never ran"
    assert len(outcomes) == 7
    assert "damaged or incomplete" in outcomes["truncated.safetensors"] or "truncated" in outcomes["truncated.safetensors"]
