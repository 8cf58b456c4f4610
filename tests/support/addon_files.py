"""Tiny LoRA and embedding files with real key layouts (kohya names, A1111 embeddings), for the add-on tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

KOHYA_SD1 = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
KOHYA_SDXL = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"


def write_lora(path: Path, family: str = "sd1", metadata: dict | None = None, seed: int = 0) -> Path:
    """A rank-2 kohya LoRA of one layer; ``seed`` changes its numbers (and so its hash)."""
    rng = np.random.default_rng(seed)
    key, width = (KOHYA_SDXL, 2048) if family == "sdxl" else (KOHYA_SD1, 768)
    tensors = {
        f"{key}.lora_down.weight": rng.standard_normal((2, width)).astype(np.float16),
        f"{key}.lora_up.weight": rng.standard_normal((320, 2)).astype(np.float16),
        f"{key}.alpha": np.array(2.0, dtype=np.float16),
    }
    meta = {"ss_base_model_version": "sdxl_base_v1-0"} if family == "sdxl" else {}
    meta.update(metadata or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta or None)
    return path


def write_embedding(path: Path, family: str = "sd1", vectors: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    if family == "sdxl":
        tensors = {"clip_l": rng.standard_normal((vectors, 768)).astype(np.float32),
                   "clip_g": rng.standard_normal((vectors, 1280)).astype(np.float32)}
    else:
        tensors = {"emb_params": rng.standard_normal((vectors, 768)).astype(np.float32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
