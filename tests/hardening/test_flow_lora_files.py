"""Broken and foreign LoRA files on a flow model: one sentence each, and the model left exactly as it was."""

import diffusers
import pytest
import torch
from safetensors.torch import save_file

from desktop.engine import lora
from desktop.engine.flow_lora import FlowLoraPatcher

A, B = ".lora_A.weight", ".lora_B.weight"
Q = "transformer.transformer_blocks.0.attn.to_q"

CASES = [
    ({Q + A: torch.ones(4, 7), Q + B: torch.ones(32, 4)},
     "odd.safetensors does not fit the loaded FLUX.1 model: 1 of its 1 layers have other sizes. It was probably "
     "trained for another model type."),
    ({"lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": torch.ones(4, 32)},
     "odd.safetensors could not be read as a FLUX.1 LoRA (it lacks lora_unet_double_blocks_0_img_attn_proj.lora_up."
     "weight). It was probably trained for another model type."),
    ({"transformer.foo.bar" + A: torch.ones(4, 32), "transformer.foo.bar" + B: torch.ones(4, 4)},
     "odd.safetensors changes no layer of the loaded FLUX.1 model. It was probably trained for another model type."),
    ({Q + A: torch.ones(4, 32), Q + B: torch.ones(32, 4), Q + ".alpha": torch.tensor(1)},
     "odd.safetensors could not be read as a FLUX.1 LoRA (The alpha key (transformer.transformer_blocks.0.attn.to_q."
     "alpha) seems to be incorrect. If you think this error is unexpected, please open as issue.). It was probably "
     "trained for another model type."),
    ({"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": torch.ones(96, 32)},
     "odd.safetensors is a full model checkpoint, not a LoRA: choose it as the model instead."),
]


@pytest.fixture(scope="module")
def pipe(tiny_models):
    return diffusers.FluxPipeline.from_pretrained(tiny_models["flux1"].folder)


@pytest.mark.parametrize("tensors, sentence", CASES)
def test_a_broken_flow_lora_is_refused_in_a_sentence_and_changes_nothing(pipe, tmp_path, tensors, sentence):
    path = tmp_path / "odd.safetensors"
    save_file(tensors, path)
    before = {name: value.clone() for name, value in pipe.transformer.state_dict().items()}
    with pytest.raises(lora.LoraError) as refused:
        FlowLoraPatcher(pipe, "flux1").apply([lora.LoraUse(path)])
    assert str(refused.value).startswith(sentence) and "\n" not in str(refused.value)
    assert all(torch.equal(value, before[name]) for name, value in pipe.transformer.state_dict().items())
