"""Tiny LoRA files for the tiny flow models (tiny_flow.py), written on the fly for tests and benchmarks.

``build_lora(pipe, layout, path)`` writes random LoRA factors for a few layers of a loaded tiny FLUX.1,
FLUX.2 klein, SD 3.5 or Z-Image pipeline, in the layout a trainer writes them:

- "kohya" (FLUX.1 only): sd-scripts' names of the original (BFL) layers, ``lora_unet_double_blocks_0_img_attn_qkv``
  with one lora_down for the fused q, k and v and one lora_up for all three, ``alpha`` equal to the rank, and a
  layer of the CLIP text encoder (``lora_te1_text_model_encoder_layers_0_self_attn_q_proj``);
- "diffusers": ai-toolkit's and diffusers' names, ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``.
  For FLUX.1 the same seed gives the same changes as "kohya", split into the diffusers model's layers as
  diffusers' converter splits them: both files must make the same picture.

The changes are as large as the layers' own weights, so a picture visibly changes. Same arguments, same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

# FLUX.1's kohya layer (BFL name) -> the diffusers layers its rows are split into, for double block i and
# single block i. Not the single blocks' linear1: diffusers' converter splits it at the real model's widths.
_FLUX1_DOUBLE = {
    "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "img_attn_proj": ("attn.to_out.0",),
    "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "img_mlp_0": ("ff.net.0.proj",),
    "img_mod_lin": ("norm1.linear",),
}
_FLUX1_SINGLE = {"linear2": ("proj_out",), "modulation_lin": ("norm.linear",)}

# The layers the "diffusers" layout changes in the other families (their own names, so each file says its family).
_TARGETS = {
    "SD3Transformer2DModel": ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn2.to_k",
                              "transformer_blocks.0.ff.net.0.proj", "transformer_blocks.1.attn.add_k_proj",
                              "transformer_blocks.1.norm1.linear", "proj_out"),
    "ZImageTransformer2DModel": ("layers.0.attention.to_q", "layers.0.feed_forward.w1",
                                 "noise_refiner.0.attention.to_v", "context_refiner.0.attention.to_k"),
    "Flux2Transformer2DModel": ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.ff.linear_in",
                                "single_transformer_blocks.0.attn.to_qkv_mlp_proj"),
}


def build_lora(pipe, layout: str, path: Path, rank: int = 4, seed: int = 0, strength: float = 1.0) -> Path:
    """Write a random LoRA for the loaded tiny flow pipeline `pipe` and return its path (.safetensors)."""
    from safetensors.torch import save_file

    transformer = pipe.transformer
    kind = type(transformer).__name__
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    if kind == "FluxTransformer2DModel":
        if layout not in ("kohya", "diffusers"):
            raise ValueError(f"unknown FLUX.1 LoRA layout {layout!r}")
        for stem, parts in _flux1_layers(transformer).items():
            modules = [_text_layer(pipe.text_encoder, p.removeprefix("text_encoder."))
                       if p.startswith("text_encoder.") else transformer.get_submodule(p) for p in parts]
            down, up = _factors(torch.cat([m.weight for m in modules]), rank, strength, gen)
            if layout == "kohya":
                stem = stem if stem.startswith("lora_te1_") else "lora_unet_" + stem
                tensors[f"{stem}.lora_down.weight"] = down
                tensors[f"{stem}.lora_up.weight"] = up
                tensors[f"{stem}.alpha"] = torch.tensor(float(rank))
                continue
            rows = 0
            for name, module in zip(parts, modules):
                out = module.weight.shape[0]
                name = name if name.startswith("text_encoder.") else "transformer." + name
                tensors[f"{name}.lora_A.weight"] = down.clone()
                tensors[f"{name}.lora_B.weight"] = up[rows:rows + out].clone()
                rows += out
    else:
        if layout != "diffusers" or kind not in _TARGETS:
            raise ValueError(f"no {layout!r} LoRA layout for {kind}")
        for name in _TARGETS[kind]:
            down, up = _factors(transformer.get_submodule(name).weight, rank, strength, gen)
            tensors[f"transformer.{name}.lora_A.weight"] = down
            tensors[f"transformer.{name}.lora_B.weight"] = up
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
    return path


def _flux1_layers(transformer) -> dict[str, tuple[str, ...]]:
    """kohya stem -> the diffusers module paths it changes, for every double and the first single block."""
    layers = {}
    for i in range(len(transformer.transformer_blocks)):
        for name, parts in _FLUX1_DOUBLE.items():
            layers[f"double_blocks_{i}_{name}"] = tuple(f"transformer_blocks.{i}.{p}" for p in parts)
    for name, parts in _FLUX1_SINGLE.items():
        layers[f"single_blocks_0_{name}"] = tuple(f"single_transformer_blocks.0.{p}" for p in parts)
    layers["lora_te1_text_model_encoder_layers_0_self_attn_q_proj"] = (
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",)
    return layers


def _text_layer(encoder, path: str):
    """A CLIP layer by its kohya path, whether or not this transformers version has the text_model level."""
    try:
        return encoder.get_submodule(path)
    except AttributeError:
        return encoder.get_submodule(path.removeprefix("text_model."))


def _factors(weight: torch.Tensor, rank: int, strength: float, gen: torch.Generator):
    """(down (rank, in), up (out, rank)) whose product is about `strength` times as large as `weight`."""
    out, inn = weight.shape
    scale = math.sqrt(strength * float(weight.detach().float().std()) / math.sqrt(rank))
    down = torch.randn(rank, inn, generator=gen) * scale
    up = torch.randn(out, rank, generator=gen) * scale
    return down, up
