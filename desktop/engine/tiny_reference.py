"""Tiny random-weight IP-Adapters and their CLIP image encoder, for the tiny models (tiny.py), written offline.

They are laid out as ComfyUI keeps the real ones, so the finding and loading code is the one real files go
through: ``root/ipadapter/ip-adapter_<name>.safetensors`` (one file, keys ``image_proj.*`` and
``ip_adapter.*`` as h94/IP-Adapter's ``ip-adapter_sd15.safetensors``) and ``root/clip_vision/<encoder>/``
(a transformers ``CLIPVisionModelWithProjection`` folder: config.json + model.safetensors, as h94's
``models/image_encoder``). The adapter's weights follow diffusers' own tests: one ``to_k_ip`` / ``to_v_ip``
pair per cross-attention layer of the UNet, numbered 1, 3, 5, ... in the UNet's processor order, and the
plain IP-Adapter image projection (a linear layer to 4 tokens, then a layer norm). Weights come from
per-tensor seeds, so a build gives the same bytes every time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

ENCODER_NAME = "tiny-clip-vision"
ADAPTER_NAMES = {"sd1": "ip-adapter_tiny-sd1", "sdxl": "ip-adapter_tiny-sdxl"}
TOKENS = 4  # the plain IP-Adapter's image tokens
_SEED_TAG = "sfumato-tiny-reference"


@dataclass(frozen=True)
class TinyReference:
    adapter: Path  # the IP-Adapter file
    encoder: Path  # the image encoder folder


def paths(root: Path, family: str) -> TinyReference:
    return TinyReference(Path(root) / "ipadapter" / f"{ADAPTER_NAMES[family]}.safetensors",
                         Path(root) / "clip_vision" / ENCODER_NAME)


def build(root: Path, family: str, unet_config: dict) -> TinyReference:
    """Write (or find already written) the tiny IP-Adapter for a UNet of this config, and the image encoder."""
    built = paths(root, family)
    if not (built.encoder / "model.safetensors").is_file():
        _write_encoder(built.encoder)
    if not built.adapter.is_file():
        _write_adapter(built.adapter, unet_config)
    return built


def encoder_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2,
                            num_attention_heads=4, image_size=32, patch_size=4)


def adapter_state_dict(unet_config: dict, embed_dim: int) -> dict[str, torch.Tensor]:
    """The IP-Adapter's tensors for a UNet of this config, in the single-file layout."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
    cross = unet.config.cross_attention_dim
    shapes = {"image_proj.proj.weight": (TOKENS * cross, embed_dim), "image_proj.proj.bias": (TOKENS * cross,),
              "image_proj.norm.weight": (cross,), "image_proj.norm.bias": (cross,)}
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention: no image tokens
        attention = unet.get_submodule(name.removesuffix(".processor"))
        inner = attention.to_k.out_features
        shapes[f"ip_adapter.{key}.to_k_ip.weight"] = (inner, cross)
        shapes[f"ip_adapter.{key}.to_v_ip.weight"] = (inner, cross)
        key += 2
    return {name: _seeded(name, shape) for name, shape in shapes.items()}


def _seeded(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Like PyTorch's defaults (uniform in +-1/sqrt(fan_in)); norm scales near 1; from a seed per tensor."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{_SEED_TAG}/{name}/{shape}".encode()))
    values = torch.empty(shape)
    if len(shape) == 1 and name.endswith("norm.weight"):
        return values.normal_(1.0, 0.05, generator=gen)
    if len(shape) == 1:
        return values.normal_(0.0, 0.02, generator=gen)
    bound = 1.0 / shape[1] ** 0.5
    return values.uniform_(-bound, bound, generator=gen)


def _write_adapter(path: Path, unet_config: dict) -> None:
    from safetensors.torch import save_file

    state = adapter_state_dict(unet_config, encoder_config().projection_dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, temporary, metadata={"format": "pt"})
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _write_encoder(folder: Path) -> None:
    from transformers import CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(_SEED_TAG.encode()))
        model = CLIPVisionModelWithProjection(encoder_config())
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        model.save_pretrained(work, safe_serialization=True)
        shutil.rmtree(folder, ignore_errors=True)  # what an interrupted build left
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
