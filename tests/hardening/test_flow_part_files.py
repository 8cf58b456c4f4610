"""Damaged parts of a transformer-only flow model (its text encoder and VAE files in a ComfyUI models tree): each is
refused in one sentence naming the damaged file and its folder, not the model file's internals."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from desktop.core.errors import ModelLoadError
from desktop.core.modelfiles import Family, ModelInfo
from desktop.engine import flow, flow_layout
from desktop.engine.flow_files import load_single_file

ENCODER = ("text_encoders", flow_layout.TEXT_ENCODER_FILE, "Qwen3-4B text encoder")
VAE = ("vae", "ae.safetensors", "FLUX.1 VAE")


@pytest.fixture
def tree(tiny_models, tmp_path):
    """A copy of the tiny Z-Image's ComfyUI tree; returns (models folder, transformer file)."""
    copy = tmp_path / "models"
    shutil.copytree(flow_layout.comfy_tree(tiny_models["zimage"]), copy)
    return copy, copy / "diffusion_models" / tiny_models["zimage"].checkpoint.name


def _load(path):
    info = ModelInfo(path, "safetensors", "checkpoint", Family.ZIMAGE, variant="turbo")
    with pytest.raises(ModelLoadError) as caught:
        load_single_file(path, info, flow.pipeline_class(info, "txt2img"), torch.float32)
    message = str(caught.value)
    assert "Traceback" not in message and "\n" not in message and message.endswith(".")
    return message


def _rewrite(file, change) -> None:
    save_file(change(load_file(str(file))), str(file))


@pytest.mark.parametrize("part", [ENCODER, VAE], ids=["text-encoder", "vae"])
def test_a_truncated_part_is_named_as_damaged_not_as_missing(tree, part):
    models, path = tree
    folder, name, _ = part
    file = models / folder / name
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    message = _load(path)
    assert f"{name} in {models / folder} is damaged or incomplete: download it again." in message
    assert "not found" not in message


@pytest.mark.parametrize("part", [ENCODER, VAE], ids=["text-encoder", "vae"])
def test_a_part_missing_weights_is_named_in_one_sentence(tree, part):
    models, path = tree
    folder, name, label = part
    _rewrite(models / folder / name,
             lambda state: {k: v for k, v in state.items() if ".layers.1." not in k and ".up.1." not in k})
    message = _load(path)
    assert message.endswith(f"{name} ({folder} folder) is not a complete {label}: download it again.")
    assert "layers" not in message and "decoder" not in message, "no internal key names"


def test_a_text_encoder_with_a_damaged_weight_names_its_file(tree):
    """A weight of the wrong shape (the embeddings fit, so the file is taken): PyTorch's "Error(s) in loading
    state_dict for Qwen3Model" names neither the file nor what is wrong."""
    models, path = tree
    folder, name, label = ENCODER
    _rewrite(models / folder / name, lambda state: {
        k: (v[:-1] if k.endswith("layers.0.mlp.down_proj.weight") else v) for k, v in state.items()})
    message = _load(path)
    assert message.endswith(f"{name} ({folder} folder) is not a complete {label}: download it again.")
    assert "state_dict" not in message and "Qwen3Model" not in message


def test_the_engine_explains_a_loading_error_from_any_of_its_lines():
    """PyTorch puts "size mismatch" on the second line of its message."""
    from desktop.engine.models import _explain

    try:
        torch.nn.Linear(4, 4).load_state_dict({"weight": torch.zeros(3, 4), "bias": torch.zeros(4)})
    except RuntimeError as error:
        assert str(error).startswith("Error(s) in loading state_dict for Linear:")
        assert _explain(error).startswith("its weights do not match the architecture Sfumato detected.")
