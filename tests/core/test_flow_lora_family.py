"""A flow-matching family's LoRA is told from its header (layer names in every layout, or the base model its
metadata names), so the LoRA list says which model it is for; SD LoRAs keep their families."""

import pytest

from desktop.core import addons
from desktop.core.modelfiles import Family, identify
from tests.core.test_modelfiles import LORA_SD1, LORA_SDXL
from tests.core.test_modelfiles_flow import write_safetensors


def lora(*stems, suffix=".lora_A.weight"):
    return {stem + suffix: (4, 8) for stem in stems}


@pytest.mark.parametrize("tensors, metadata, family", [
    (lora("lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_0_img_mod_lin",
          "lora_te1_text_model_encoder_layers_0_self_attn_q_proj", suffix=".lora_down.weight"), None, Family.FLUX1),
    (lora("transformer.transformer_blocks.0.attn.to_q", "transformer.single_transformer_blocks.0.attn.to_k"),
     None, Family.FLUX1),  # ai-toolkit / diffusers
    (lora("diffusion_model.double_blocks.0.img_attn.qkv", "diffusion_model.single_blocks.0.modulation.lin"),
     None, Family.FLUX1),  # BFL
    (lora("transformer.transformer_blocks.0.attn.to_q"), {"modelspec.architecture": "flux-1-dev/lora"},
     Family.FLUX1),
    (lora("transformer.transformer_blocks.0.attn.to_q", "transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj"),
     None, Family.FLUX2_KLEIN),
    (lora("transformer.transformer_blocks.0.attn.to_q", "transformer.transformer_blocks.0.attn2.to_k"), None,
     Family.SD3),
    (lora("lora_unet_joint_blocks_0_x_block_attn_qkv", suffix=".lora_down.weight"), None, Family.SD3),
    (lora("transformer.transformer_blocks.0.attn.to_q"), {"ss_base_model_version": "sd3"}, Family.SD3),
    (lora("transformer.layers.0.attention.to_q", "transformer.noise_refiner.0.feed_forward.w1"), None, Family.ZIMAGE),
    (lora("diffusion_model.layers.0.attention.qkv"), None, Family.ZIMAGE),
    (LORA_SDXL, None, Family.SDXL),
    (LORA_SD1, None, Family.SD1),
])
def test_a_loras_family_comes_from_its_layer_names_or_metadata(tmp_path, tensors, metadata, family):
    info = identify(write_safetensors(tmp_path / "style.safetensors", tensors, metadata))
    assert (info.kind, info.family, info.note) == ("lora", family, "")


def test_a_lora_of_only_double_blocks_in_diffusers_names_does_not_guess(tmp_path):
    """FLUX.1, FLUX.2 and SD 3.5 name their double blocks alike: without a telling layer or metadata it says so."""
    tensors = lora("transformer.transformer_blocks.0.attn.to_q")
    info = identify(write_safetensors(tmp_path / "style.safetensors", tensors))
    assert info.kind == "lora" and info.family is Family.UNKNOWN


def test_the_lora_list_says_a_flux1_lora_is_for_flux1(tmp_path):
    folder = tmp_path / "models" / "Lora"
    folder.mkdir(parents=True)
    write_safetensors(folder / "painterly.safetensors", lora("lora_unet_double_blocks_0_img_mod_lin",
                                                             suffix=".lora_down.weight"))
    listed, = addons.list_addons("lora", [tmp_path / "models"])
    assert (listed.name, listed.family) == ("painterly", Family.FLUX1)
