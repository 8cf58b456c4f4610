"""Broken, hostile and foreign model files: a clear sentence each, and the previous model keeps working."""

import io
import json
import os
import pickle
import shutil
import struct
import threading
import zipfile

import pytest
import torch

from desktop.core import modelfiles
from desktop.core.errors import ModelLoadError, NoPicture
from desktop.core.modelfiles import ModelFileError
from desktop.core.progress import TaskState

from desktop.engine import generate
from tests.support.requests import make_request

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
    request = make_request(prompt="x", model=good, width=64, height=64, steps=1, seed=1)
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


# ------------------------------------------------ headers, pipes, devices, mixed parts, NaN


def within(seconds, call):
    """call()'s result (or its exception) if it returns within `seconds`; a hang fails the test."""
    outcome = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it blocked or read forever"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def raw_header(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


@pytest.mark.parametrize("header", [
    b'{"a": ' + b"[" * 100_000,  # a list nested 100,000 levels deep
    b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,  # an object nested as deep
], ids=["deep-list", "deep-object"])
def test_a_deeply_nested_header_is_not_a_model_file(cpu_manager, tmp_path, header):
    path = tmp_path / "deep.safetensors"
    path.write_bytes(raw_header(header))
    with pytest.raises(ModelFileError, match="deep.safetensors is not a valid model file: its header is nested too deeply"):
        modelfiles.identify(path)
    (listed,) = modelfiles.scan([tmp_path])
    assert listed.kind == "unknown" and "nested too deeply" in listed.note
    with pytest.raises(ModelLoadError, match="nested too deeply"):
        cpu_manager.load(str(path))


needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")


@needs_fifo
@pytest.mark.parametrize("name", ["m.safetensors", "m.ckpt"])
def test_a_named_pipe_is_refused_at_once_and_not_listed(cpu_manager, tmp_path, name):
    path = tmp_path / name
    os.mkfifo(path)  # nothing ever writes to it: open() for reading would wait forever
    with pytest.raises(ModelFileError, match=f"{name} is not a valid model file: it is a named pipe .*not a regular file"):
        within(10, lambda: modelfiles.identify(path))
    assert within(10, lambda: modelfiles.scan([tmp_path])) == []
    with pytest.raises(ModelLoadError, match="named pipe"):
        within(10, lambda: cpu_manager.load(str(path)))


@pytest.mark.skipif(not os.path.exists("/dev/urandom"), reason="needs /dev/urandom")
def test_a_link_to_an_endless_device_is_refused_at_once_and_not_listed(cpu_manager, tmp_path):
    path = tmp_path / "m.ckpt"
    path.symlink_to("/dev/urandom")  # reading it never ends
    with pytest.raises(ModelFileError, match="m.ckpt is not a valid model file: it is a device, not a regular file"):
        within(10, lambda: modelfiles.identify(path))
    assert within(10, lambda: modelfiles.scan([tmp_path])) == []
    with pytest.raises(ModelFileError, match="it is a device"):
        within(10, lambda: modelfiles.model_hash(path))
    with pytest.raises(ModelLoadError, match="it is a device"):
        within(10, lambda: cpu_manager.load(str(path)))


@needs_fifo
def test_a_diffusers_folder_with_a_named_pipe_inside_is_refused_at_once(tiny_models, tmp_path):
    folder = shutil.copytree(tiny_models["sd1"].folder, tmp_path / "piped")
    (folder / "unet" / "config.json").unlink()
    os.mkfifo(folder / "unet" / "config.json")
    with pytest.raises(ModelFileError, match="its unet/config.json is a named pipe"):
        within(10, lambda: modelfiles.identify(folder))
    os.unlink(folder / "unet" / "config.json")
    shutil.copy(tiny_models["sd1"].folder / "unet" / "config.json", folder / "unet" / "config.json")
    os.mkfifo(folder / "vae" / "extra.bin")
    with pytest.raises(ModelFileError, match="its vae/extra.bin is not a regular file"):
        within(10, lambda: modelfiles.identify(folder))


def test_an_sdxl_named_folder_of_sd1_parts_is_refused_at_load_and_the_previous_model_stays(
        cpu_manager, tiny_models, tmp_path):
    good = str(tiny_models["sd1"].folder)
    request = make_request(prompt="x", model=good, width=64, height=64, steps=1, seed=1)
    generate.run(request, TaskState(), cpu_manager)
    folder = shutil.copytree(tiny_models["sd1"].folder, tmp_path / "mixed")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(ModelLoadError) as caught:
        cpu_manager.load(str(folder))
    assert str(caught.value) == (
        "Could not load the model mixed: mixed is not a valid model file: its model_index.json names "
        "StableDiffusionXLPipeline, an SDXL pipeline, but it has no text_encoder_2 or tokenizer_2, which SDXL "
        "needs: its parts come from different models. Download the model again.")
    assert cpu_manager.current.ref == good
    assert generate.run(request, TaskState(), cpu_manager)[0].image.shape == (64, 64, 3)


def test_a_ckpt_with_model_keys_and_code_says_it_holds_code(cpu_manager, tmp_path):
    marker = tmp_path / MARKER
    keys = ["model.diffusion_model.input_blocks.0.0.weight",
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"]
    pickled = io.BytesIO()
    with zipfile.ZipFile(pickled, "w") as archive:  # an SD 1.x checkpoint by its keys, but code as its values
        archive.writestr("archive/data.pkl", pickle.dumps({"state_dict": {k: Payload(str(marker)) for k in keys}}, protocol=2))
        archive.writestr("archive/version", "3\n")
    path = tmp_path / "evil-sd1.ckpt"
    path.write_bytes(pickled.getvalue())
    assert modelfiles.identify(path).family is modelfiles.Family.SD1
    with pytest.raises(ModelLoadError) as caught:
        cpu_manager.load(str(path))
    assert str(caught.value) == (
        "Could not load the model evil-sd1.ckpt: this .ckpt file contains code, not only weights, so it was not "
        "opened. Use a .safetensors version of the model.")
    assert not marker.exists()


def test_an_all_nan_checkpoint_says_it_made_no_picture(cpu_manager, tiny_models, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny = tiny_models["sd1"]
    weights = {name: torch.full_like(tensor, float("nan")) if tensor.is_floating_point() else tensor
               for name, tensor in load_file(str(tiny.checkpoint)).items()}
    path = tmp_path / "nan.safetensors"
    save_file(weights, str(path), metadata={"format": "pt"})
    shutil.copytree(tiny.config, tmp_path / "nan.config")
    request = make_request(prompt="x", model=str(path), width=64, height=64, steps=2, seed=1)
    with pytest.raises(NoPicture, match=r"^The model produced no picture: its output was not a number \(NaN\)\. "
                                        r"The model file may be damaged; .*fp32"):
        generate.run(request, TaskState(), cpu_manager)
