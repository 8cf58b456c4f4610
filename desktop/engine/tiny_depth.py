"""A tiny random-weight Depth Anything V2 model in transformers' folder layout, built on disk offline (tests).

It has the layout of depth-anything/Depth-Anything-V2-Small-hf (config.json, model.safetensors,
preprocessor_config.json) with a Dinov2 backbone of width 16 and four layers instead of 384 and twelve: about
40 k weights, built in a fraction of a second. `width` 768 or 1024 gives a config that reads as the Base or Large
size (non-commercial weights) while staying small. The head's last bias is positive, so its depth is not all
zero. Same seed, same weights on every build.
"""

from __future__ import annotations

import json
from pathlib import Path

SEED = 20_240


def build(folder: str | Path, width: int = 16, input_size: int = 28) -> Path:
    """Write the tiny model into `folder` and return it. `width` is the backbone's hidden size (its config's
    `hidden_size`, by which the size's name is read); `input_size` the processor's shorter side."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    folder = Path(folder)
    backbone = Dinov2Config(image_size=input_size, patch_size=14, hidden_size=width, num_hidden_layers=4,
                            num_attention_heads=2, intermediate_size=2 * width, out_indices=[1, 2, 3, 4],
                            reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=width,
                                 neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=8, head_hidden_size=4,
                                 patch_size=14, initializer_range=0.5)
    torch.manual_seed(SEED)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():
        for name, parameter in model.head.named_parameters():
            if name.endswith("bias"):
                parameter.fill_(0.1)
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar
    try:
        model.save_pretrained(folder, safe_serialization=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    processor = {
        "image_processor_type": "DPTImageProcessor", "do_resize": True, "keep_aspect_ratio": True,
        "ensure_multiple_of": 14, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "do_pad": False, "size": {"height": input_size, "width": input_size},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2), encoding="utf-8")
    return folder
