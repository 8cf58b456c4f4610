"""Diffusers models -> the original single-file checkpoint key layout.

The inverse of diffusers' own LDM -> diffusers converter
(``diffusers.loaders.single_file_utils``): a state dict written with these keys
loads back through ``from_single_file`` to exactly the same tensors.

* SD 1.x (``family="sd1"``, inpainting variants included): ``model.diffusion_model.*``
  (LDM UNet), ``first_stage_model.*`` (VAE), ``cond_stage_model.transformer.*``
  (CLIP, Hugging Face layout).
* SDXL (``family="sdxl"``): the UNet and VAE the same, the first text encoder under
  ``conditioner.embedders.0.transformer.*`` (Hugging Face layout) and the second
  under ``conditioner.embedders.1.model.*`` in the OpenCLIP layout.

Nothing here depends on the tiny sizes; full-size SD 1.5 and SDXL models convert
with the same code.
"""

from __future__ import annotations

import re

import torch

FAMILIES = ("sd1", "sdxl")

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    # SDXL's text_time embedding and the "projection" class embedding share LDM's label_emb.
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
}

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}

_VAE_TOP_LEVEL = {
    "encoder.conv_in": "encoder.conv_in",
    "encoder.conv_out": "encoder.conv_out",
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.conv_out": "decoder.conv_out",
    "decoder.conv_norm_out": "decoder.norm_out",
    "quant_conv": "quant_conv",
    "post_quant_conv": "post_quant_conv",
}

_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}

_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def to_original_layout(unet, vae, text_encoders: list, family: str) -> dict[str, torch.Tensor]:
    """Return one state dict in the original (LDM / SGM) layout for a whole pipeline.

    ``text_encoders`` is ``[text_encoder]`` for SD 1.x and
    ``[text_encoder, text_encoder_2]`` for SDXL. Tensors keep their dtype; every
    value is a contiguous tensor that shares memory with no other value, so the
    result can go straight to ``safetensors.torch.save_file``.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    expected = 1 if family == "sd1" else 2
    if len(text_encoders) != expected:
        raise ValueError(f"{family} takes {expected} text encoder(s), got {len(text_encoders)}")

    out: dict[str, torch.Tensor] = {}
    _add(out, UNET_PREFIX, unet_to_ldm(unet.state_dict(), unet.config.layers_per_block))
    _add(out, VAE_PREFIX, vae_to_ldm(vae.state_dict(), len(vae.config.up_block_types)))
    if family == "sd1":
        _add(out, SD1_CLIP_PREFIX, clip_to_hf_layout(text_encoders[0].state_dict()))
    else:
        _add(out, SDXL_CLIP_PREFIX, clip_to_hf_layout(text_encoders[0].state_dict()))
        _add(out, SDXL_OPEN_CLIP_PREFIX, clip_to_open_clip(text_encoders[1].state_dict()))
    return out


def _add(out: dict[str, torch.Tensor], prefix: str, part: dict[str, torch.Tensor]) -> None:
    for key, value in part.items():
        full = prefix + key
        if full in out:
            raise ValueError(f"two weights map to {full}")
        out[full] = value.detach().contiguous().clone()


def _split_layer(rest: str) -> tuple[str, str]:
    """'conv1.weight' -> ('conv1', 'weight'); 'to_out.0.bias' -> ('to_out.0', 'bias')."""
    layer, _, param = rest.rpartition(".")
    return layer, param


def _resnet(rest: str) -> str:
    layer, param = _split_layer(rest)
    if layer not in _UNET_RESNET:
        raise ValueError(f"unexpected UNet resnet weight {rest!r}")
    return f"{_UNET_RESNET[layer]}.{param}"


def unet_to_ldm(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """Diffusers ``UNet2DConditionModel`` keys -> LDM ``UNetModel`` keys (no prefix).

    LDM numbers the encoder as one flat list ``input_blocks``: ``0`` is conv_in, then
    per down block ``layers_per_block`` entries of ``[resnet, attention?]`` and, for
    all but the last block, one downsampler entry ``[op]``. The decoder is the flat
    list ``output_blocks`` with ``layers_per_block + 1`` entries per up block; the
    upsampler sits in the block's last entry after the resnet and, if present, the
    attention (``.1.conv`` or ``.2.conv``).
    """
    if not isinstance(layers_per_block, int):
        raise ValueError("only a single int layers_per_block has an LDM layout")
    per_down = layers_per_block + 1
    per_up = layers_per_block + 1
    up_has_attention = {
        int(m.group(1)) for k in state if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))
    }

    out = {}
    for key, value in state.items():
        out[_unet_key(key, per_down, per_up, layers_per_block, up_has_attention)] = value
    return out


def _unet_key(key: str, per_down: int, per_up: int, lpb: int, up_has_attention: set[int]) -> str:
    layer, param = _split_layer(key)
    if layer in _UNET_TOP_LEVEL:
        return f"{_UNET_TOP_LEVEL[layer]}.{param}"

    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        block, i, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + block * per_down + i}.0.{_resnet(rest)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        block, i, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + block * per_down + i}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)", key):
        block, param = int(m[1]), m[2]
        return f"input_blocks.{1 + block * per_down + lpb}.0.op.{param}"

    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        i, rest = int(m[1]), m[2]
        return f"middle_block.{2 * i}.{_resnet(rest)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"

    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        block, i, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{block * per_up + i}.0.{_resnet(rest)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        block, i, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{block * per_up + i}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)", key):
        block, param = int(m[1]), m[2]
        slot = 2 if block in up_has_attention else 1
        return f"output_blocks.{block * per_up + lpb}.{slot}.conv.{param}"

    raise ValueError(f"UNet weight {key!r} has no LDM counterpart")


def vae_to_ldm(state: dict[str, torch.Tensor], num_up_blocks: int) -> dict[str, torch.Tensor]:
    """Diffusers ``AutoencoderKL`` keys -> LDM ``AutoencoderKL`` keys (no prefix).

    The LDM decoder counts its up blocks from the lowest resolution upwards, the
    reverse of diffusers; the mid-block attention uses 1x1 convolutions where
    diffusers uses linear layers.
    """
    out = {}
    for key, value in state.items():
        new_key, is_attention = _vae_key(key, num_up_blocks)
        if is_attention and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)
        out[new_key] = value
    return out


def _vae_key(key: str, num_up_blocks: int) -> tuple[str, bool]:
    layer, param = _split_layer(key)
    if layer in _VAE_TOP_LEVEL:
        return f"{_VAE_TOP_LEVEL[layer]}.{param}", False

    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}", False
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        block = num_up_blocks - 1 - int(m[1])
        return f"decoder.up.{block}.block.{m[2]}.{_vae_resnet(m[3])}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)", key):
        block = num_up_blocks - 1 - int(m[1])
        return f"decoder.up.{block}.upsample.conv.{m[2]}", False

    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}", False
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        inner, param = _split_layer(m[2])
        if inner not in _VAE_ATTENTION:
            raise ValueError(f"unexpected VAE attention weight {key!r}")
        return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[inner]}.{param}", True

    raise ValueError(f"VAE weight {key!r} has no LDM counterpart")


def _vae_resnet(rest: str) -> str:
    layer, param = _split_layer(rest)
    if layer == "conv_shortcut":
        layer = "nin_shortcut"
    elif layer not in ("norm1", "conv1", "norm2", "conv2"):
        raise ValueError(f"unexpected VAE resnet weight {rest!r}")
    return f"{layer}.{param}"


def _with_text_model_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as ``text_model.*`` (+ ``text_projection.weight``), whatever the transformers version.

    transformers >= 5.6 flattened ``CLIPTextModel`` (no ``text_model.`` level) while
    ``CLIPTextModelWithProjection`` keeps it; checkpoints always carry it.
    """
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue  # a buffer, not a weight; diffusers' loader has no use for it
        if key.startswith("text_model.") or key.startswith("text_projection."):
            out[key] = value
        else:
            out["text_model." + key] = value
    return out


def clip_to_hf_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CLIP text model as stored under ``cond_stage_model.transformer.`` (no prefix)."""
    return _with_text_model_prefix(state)


def clip_to_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``CLIPTextModelWithProjection`` keys -> OpenCLIP text tower keys (no prefix).

    q, k and v projections become one ``in_proj_weight`` / ``in_proj_bias``
    (concatenated in that order) and the projection is stored transposed.
    """
    state = _with_text_model_prefix(state)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    fixed = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        if key == "text_projection.weight":
            out["text_projection"] = value.T
            continue
        m = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key)
        if not m:
            raise ValueError(f"text encoder weight {key!r} has no OpenCLIP counterpart")
        index, rest = int(m[1]), m[2]
        layer, param = _split_layer(rest)
        if qm := re.fullmatch(r"self_attn\.([qkv])_proj", layer):
            qkv.setdefault((index, param), {})[qm[1]] = value
        elif layer in _OPEN_CLIP_LAYER:
            out[f"transformer.resblocks.{index}.{_OPEN_CLIP_LAYER[layer]}.{param}"] = value
        else:
            raise ValueError(f"text encoder weight {key!r} has no OpenCLIP counterpart")
    for (index, param), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"layer {index} lacks one of the q/k/v {param}s")
        name = "in_proj_weight" if param == "weight" else "in_proj_bias"
        out[f"transformer.resblocks.{index}.attn.{name}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out
