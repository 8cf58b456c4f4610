"""A tiny random-weight upscaler that spandrel detects, built on disk offline: the demo upscaler and the tests'.

It has the layout of Real-ESRGAN's Compact (SRVGGNetCompact) model, spandrel's "RealESRGAN Compact":
``body.0`` a 3x3 convolution from RGB, ``body.1`` its PReLU, then `num_conv` (convolution, PReLU) pairs and a
last convolution to 3 x scale² channels that a pixel shuffle turns into the larger picture, added to the
nearest-neighbour enlargement of the input. Eight features and two inner convolutions: 3.3 k weights. The last
convolution's weights are small, so the demo's pictures are the input enlarged with a little texture, not
noise. Same seed, same bytes on every build.

The demo restorer (`build_restorer`) is a DnCNN of eight 3x3 convolutions of eight features (spandrel detects
its "model.0" ... "model.14" layout, scale 1, purpose Restoration): it subtracts the noise it predicts from the
picture, and with its small last layer that is a faint change, so the demo's restore keeps the picture.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

VERSION = 1
SEED = 20_161


def state_dict(scale: int = 4, features: int = 8, num_conv: int = 2, seed: int = SEED) -> dict:
    """The weights, as spandrel's Compact architecture names them."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def normal(*shape, std):
        return (torch.randn(*shape, generator=generator) * std).contiguous()

    weights = {"body.0.weight": normal(features, 3, 3, 3, std=0.2), "body.0.bias": torch.zeros(features),
               "body.1.weight": torch.full((features,), 0.25)}
    index = 2
    for _ in range(num_conv):
        weights[f"body.{index}.weight"] = normal(features, features, 3, 3, std=0.1)
        weights[f"body.{index}.bias"] = torch.zeros(features)
        weights[f"body.{index + 1}.weight"] = torch.full((features,), 0.25)
        index += 2
    out = 3 * scale * scale
    weights[f"body.{index}.weight"] = normal(out, features, 3, 3, std=0.02)
    weights[f"body.{index}.bias"] = torch.zeros(out)
    return weights


def restorer_state_dict(features: int = 8, layers: int = 8, seed: int = SEED) -> dict:
    """The weights of a colour DnCNN (act_mode "R": convolution, ReLU, ..., convolution), as spandrel names them."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for layer in range(layers):
        inputs = 3 if layer == 0 else features
        outputs = 3 if layer == layers - 1 else features
        std = 0.02 if layer == layers - 1 else 0.1
        weights[f"model.{2 * layer}.weight"] = (torch.randn(outputs, inputs, 3, 3, generator=generator) * std).contiguous()
        weights[f"model.{2 * layer}.bias"] = torch.zeros(outputs)
    return weights


def build(path: str | os.PathLike, scale: int = 4, **options) -> Path:
    """Write the upscaler to `path` (.safetensors) unless it is already there; returns the path."""
    return _write(path, lambda: state_dict(scale, **options), "upscaler")


def build_restorer(path: str | os.PathLike, **options) -> Path:
    """Write the demo restorer to `path` (.safetensors) unless it is already there; returns the path."""
    return _write(path, lambda: restorer_state_dict(**options), "restorer")


def _write(path: str | os.PathLike, weights, what: str) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
    os.close(handle)
    try:
        save_file(weights(), temporary, metadata={"sfumato": f"tiny-{what}-{VERSION}"})
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def demo_path(demo_dir: str | os.PathLike) -> Path:
    """Where the demo upscaler lives: in the demo model's folder, which the model listing leaves out."""
    return Path(demo_dir) / "upscaler" / f"demo-upscaler-x4-v{VERSION}.safetensors"


def restorer_path(demo_dir: str | os.PathLike) -> Path:
    """Where the demo restorer lives, beside the demo upscaler."""
    return Path(demo_dir) / "upscaler" / f"demo-restorer-x1-v{VERSION}.safetensors"
