"""ControlNet files shared without a config load offline: the config is read off the weights' shapes."""

import pytest
import torch
from diffusers import ControlNetModel
from safetensors.torch import save_file

from desktop.engine import controlnet, tiny_control

FIELDS = ("in_channels", "block_out_channels", "down_block_types", "layers_per_block", "cross_attention_dim",
          "attention_head_dim", "use_linear_projection", "transformer_layers_per_block",
          "conditioning_embedding_out_channels", "addition_embed_type", "addition_time_embed_dim",
          "projection_class_embeddings_input_dim", "mid_block_type")

SD1_LIKE = dict(block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32)
SDXL_LIKE = dict(block_out_channels=(64, 128), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                 cross_attention_dim=2048, attention_head_dim=[1, 2], transformer_layers_per_block=[1, 2],
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=6 * 256 + 1280, norm_num_groups=32)


def normal(config: dict) -> dict:
    def value(v):
        return list(v) if isinstance(v, (list, tuple)) else v
    out = {k: value(config.get(k)) for k in FIELDS}
    for key, blocks in (("attention_head_dim", out["block_out_channels"]), ("transformer_layers_per_block", out["block_out_channels"])):
        if isinstance(out[key], int):
            out[key] = [out[key]] * len(blocks)
    return out


@pytest.mark.parametrize("kind, sizes", [("sd1", SD1_LIKE), ("sdxl", SDXL_LIKE)])
def test_a_file_without_a_config_loads_with_the_config_its_weights_say(tmp_path, kind, sizes):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        original = ControlNetModel(**sizes)
    for param in original.parameters():  # no zeros, so a weight in the wrong place shows
        torch.nn.init.normal_(param.data, std=0.02)
    path = tmp_path / f"control_{kind}.safetensors"
    state = tiny_control.ldm_state_dict(original) if kind == "sd1" else \
        {k: v.contiguous() for k, v in original.state_dict().items()}
    save_file(state, str(path))
    loaded = controlnet.read(path, path.name, torch.float32)
    assert normal(dict(loaded.config)) == normal(dict(original.config))
    a, b = original.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
