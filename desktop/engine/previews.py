"""Live previews: latents -> a small RGB image after every step, without the VAE.

"approximate" multiplies the 4 latent channels by a fixed 4x3 matrix fitted
per model family (a well-known approximation; costs microseconds). "taesd"
decodes with the tiny TAESD autoencoder when its weights are on disk
(models/taesd for SD1/SD2, models/taesdxl for SDXL), giving a full-size,
much closer preview: milliseconds on a GPU, but on a CPU a large share of a
step, so pair it with "preview every N steps" there. It runs on the
pipeline's device and is loaded once (ModelManager.previewer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

METHODS = ("approximate", "taesd", "off")

# Latent -> RGB factors (rows: latent channels) and bias, per family.
_SD15_FACTORS = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
]
_SDXL_FACTORS = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
]
_FACTORS = {
    "sd1": (_SD15_FACTORS, [0.0, 0.0, 0.0]),
    "sd2": (_SD15_FACTORS, [0.0, 0.0, 0.0]),
    "sdxl": (_SDXL_FACTORS, [0.1084, -0.0175, -0.0011]),
}


def taesd_dir(models_dir: Path, family: str) -> Path:
    return models_dir / ("taesdxl" if family.startswith("sdxl") else "taesd")


class Previewer:
    """Turns the pipeline's current latents into an HxWx3 uint8 preview of the first image."""

    def __init__(
        self,
        family: str,
        method: str = "approximate",
        taesd_path: Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown preview method {method!r}; choose one of {', '.join(METHODS)}")
        self.method = method
        self._decoder = None
        self._device, self._dtype = torch.device(device), dtype
        if method == "taesd":
            if taesd_path is None or not (taesd_path / "config.json").is_file():
                self.method = "approximate"  # weights not on disk: fall back, never download
            else:
                from diffusers import AutoencoderTiny

                decoder = AutoencoderTiny.from_pretrained(taesd_path, local_files_only=True)
                self._decoder = decoder.to(self._device, dtype).eval()
        factors, bias = _FACTORS.get(family.removesuffix("-refiner"), _FACTORS["sd1"])
        self._factors = torch.tensor(factors, dtype=torch.float32)
        self._bias = torch.tensor(bias, dtype=torch.float32)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> np.ndarray | None:
        if self.method == "off":
            return None
        if self._decoder is not None:  # decoded where the latents are, then only the pixels move
            first = latents[:1, :4].to(self._device, self._dtype)
            rgb = self._decoder.decode(first).sample[0].permute(1, 2, 0).float().cpu()
        else:
            first = latents[:1, :4].float().cpu()
            rgb = torch.einsum("chw,cr->hwr", first[0], self._factors) + self._bias
        rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return rgb.numpy()
