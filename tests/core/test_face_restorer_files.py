"""Face restoration models (GFPGAN, RestoreFormer, CodeFormer) are told by their key names, nothing loaded, and
the Models listing calls them face restorers, never upscalers or VAEs."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from desktop.core import model_sources, modelfiles


def tensors(*names):
    return {name: np.zeros((2, 2), np.float32) for name in names}


FACES = {  # a few of each model's real key names, with tiny tensors
    "GFPGANv1.4": tensors("conv_body_first.weight", "toRGB.0.weight", "stylegan_decoder.style_mlp.1.weight",
                          "stylegan_decoder.to_rgb1.modulated_conv.weight"),
    "RestoreFormer": tensors("quantize.embedding.weight", "encoder.conv_in.weight", "quant_conv.weight",
                             "encoder.down.0.block.0.norm1.weight", "encoder.conv_out.weight",
                             "decoder.conv_out.weight", "decoder.conv_in.weight"),
    "codeformer": tensors("position_emb", "quantize.embedding.weight", "ft_layers.0.self_attn.in_proj_weight",
                          "encoder.blocks.0.weight", "generator.blocks.0.weight"),
}


@pytest.mark.parametrize("name", FACES)
def test_face_restorers_are_identified_as_face_restorers(tmp_path, name):
    path = tmp_path / f"{name}.safetensors"
    save_file(FACES[name], str(path))
    info = modelfiles.identify(path)
    assert info.kind == "face restorer"
    assert "face restorer" in info.note
    assert model_sources.problem_of(info) == "a face restorer (for fixing faces), not a full model"


def test_codeformer_names_its_non_commercial_licence(tmp_path):
    save_file(FACES["codeformer"], str(tmp_path / "codeformer.safetensors"))
    note = modelfiles.identify(tmp_path / "codeformer.safetensors").note
    assert "CodeFormer" in note and "S-Lab License 1.0" in note and "non-commercial" in note


def test_a_vae_is_still_a_vae(tmp_path):
    save_file(tensors("encoder.conv_in.weight", "decoder.conv_out.weight", "quant_conv.weight",
                      "encoder.conv_out.weight"), str(tmp_path / "vae.safetensors"))
    assert modelfiles.identify(tmp_path / "vae.safetensors").kind == "vae"


@pytest.mark.parametrize("keys", [("control_model.input_blocks.0.0.weight", "control_model.zero_convs.0.0.weight"),
                                  ("controlnet_cond_embedding.conv_in.weight", "controlnet_down_blocks.0.weight")])
def test_a_controlnet_is_a_controlnet_not_an_unsupported_file(tmp_path, keys):
    """Both layouts a ControlNet comes in (A1111's ldm keys, diffusers'), named for what they are used for."""
    save_file(tensors(*keys), str(tmp_path / "control.safetensors"))
    info = modelfiles.identify(tmp_path / "control.safetensors")
    assert info.kind == "controlnet" and "does not support" not in info.note
    assert model_sources.problem_of(info) == "a ControlNet (for control layers and `--control`), not a full model"
