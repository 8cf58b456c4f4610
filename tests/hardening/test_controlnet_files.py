"""Hostile or broken ControlNet files: one sentence each, never a traceback, never code run."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from desktop.engine.controlnet import ControlNetError, read, resolve


class RunsCode:
    def __reduce__(self):
        return (print, ("code ran",))


def reason(path) -> str:
    with pytest.raises(ControlNetError) as refused:
        read(path, path.name, torch.float32)
    text = str(refused.value)
    assert "\n" not in text and text.startswith(f"Could not use the ControlNet {path.name}: ")
    return text


def test_a_damaged_file(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x40\x00\x00\x00\x00\x00\x00\x00{not json")
    assert "damaged or incomplete. Download it again." in reason(path)


def test_a_pickle_with_code_is_not_opened(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as file:
        pickle.dump({"control_model.time_embed.0.weight": RunsCode()}, file)
    assert "contains code, not only weights" in reason(path)
    assert "code ran" not in capsys.readouterr().out


def test_a_file_that_is_not_a_controlnet(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.lora_up.weight": torch.zeros(2, 2)}, str(path))
    assert "it is not a ControlNet" in reason(path)


def test_a_union_controlnet_is_refused_with_a_sentence(tmp_path):
    path = tmp_path / "union.safetensors"
    save_file({"controlnet_cond_embedding.conv_in.weight": torch.zeros(1), "task_embedding": torch.zeros(1)}, str(path))
    assert "\"union\" ControlNet" in reason(path)
    folder = tmp_path / "union-folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetUnionModel"}))
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert "\"union\" ControlNet" in reason(folder)


def test_a_folder_without_a_controlnet(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert "without a ControlNet's config.json" in reason(folder)


def test_truncated_weights_of_a_real_layout(tmp_path):
    path = tmp_path / "half.safetensors"
    save_file({"control_model.input_hint_block.0.weight": torch.zeros(16, 3, 3, 3)}, str(path))
    assert "not laid out as a ControlNet's" in reason(path)


def test_a_name_no_file_has(tmp_path):
    with pytest.raises(ControlNetError, match="no ControlNet of that name in .* Give its path, or put it there."):
        resolve("no_such_controlnet", [tmp_path])
