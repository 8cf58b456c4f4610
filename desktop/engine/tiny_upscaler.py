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

The demo face restorer (`build_face_restorer`) is a RestoreFormer (spandrel's purpose FaceSR) of 32 channels at
every level and one residual block per level: 0.55 M weights (2.2 MB), from which spandrel reads its sizes.
With random weights its faces are a smooth blur of the codebook's colours: it shows that the face fix runs, not
what a trained restorer does.
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


def face_restorer_state_dict(channels: int = 32, seed: int = SEED) -> dict:
    """The weights of a tiny RestoreFormer (spandrel's architecture, random weights; its GroupNorms need channels
    in multiples of 32). Six levels as the real one, so its attention runs at 16x16 for a 512-pixel face."""
    import torch

    from .upscale import import_spandrel

    import_spandrel()  # spandrel's registry, with the torchvision stand-in where torchvision does not import
    from spandrel.architectures.RestoreFormer import RestoreFormer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RestoreFormer(n_embed=32, embed_dim=channels, ch=channels, out_ch=3, ch_mult=(1,) * 6,
                              num_res_blocks=1, attn_resolutions=(16,), dropout=0.0, in_channels=3, resolution=512,
                              z_channels=channels, double_z=False, enable_mid=True, head_size=8)
    return {key: value.contiguous() for key, value in model.state_dict().items()}


def build(path: str | os.PathLike, scale: int = 4, **options) -> Path:
    """Write the upscaler to `path` (.safetensors) unless it is already there; returns the path."""
    return _write(path, lambda: state_dict(scale, **options), "upscaler")


def build_restorer(path: str | os.PathLike, **options) -> Path:
    """Write the demo restorer to `path` (.safetensors) unless it is already there; returns the path."""
    return _write(path, lambda: restorer_state_dict(**options), "restorer")


def build_face_restorer(path: str | os.PathLike, **options) -> Path:
    """Write the demo face restorer to `path` (.safetensors) unless it is already there; returns the path."""
    return _write(path, lambda: face_restorer_state_dict(**options), "face-restorer")


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


def face_restorer_path(demo_dir: str | os.PathLike) -> Path:
    """Where the demo face restorer lives, beside the demo upscaler."""
    return Path(demo_dir) / "upscaler" / f"demo-face-restorer-v{VERSION}.safetensors"
