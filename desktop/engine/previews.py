"""Live previews: latents -> a small RGB image after every step, without the VAE.

"approximate" multiplies the latent channels by a fixed channels x 3 matrix
fitted per model family (a well-known approximation; costs microseconds).
"taesd" decodes with the tiny TAESD autoencoder when its weights are on disk
(models/taesd for SD1/SD2, models/taesdxl for SDXL, models/taef1 for FLUX.1
and Z-Image, models/taesd3 for SD3), giving a full-size, much closer preview:
milliseconds on a GPU, but on a CPU a large share of a step, so pair it with
"preview every N steps" there. It runs on the pipeline's device and is loaded
once per family (ModelManager.tiny_decoder), the same one that decodes the
final pictures when a request asks for the TAESD decoder (decoder "tiny").
FLUX.2 has no tiny decoder diffusers can build (TAEF2 adds group norms to
AutoencoderTiny's blocks), so it always gets the approximation.

The flow families hand over latents in their own layouts: SD3 and Z-Image as
(batch, 16, h/8, w/8) like the UNet families; FLUX.1 and FLUX.2 as packed
tokens, (batch, (h/16)*(w/16), channels*4) of 2x2 latent patches, which only
the picture's size puts back in rows (unpack_tokens, token_grid).
"""

from __future__ import annotations

import json
import math
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
# The flow families' factors are the published ones of ComfyUI's comfy/latent_formats.py (classes Flux, SD3
# and Flux2). They apply to the latents as the pipelines hold them during sampling, as ComfyUI's samplers do:
# FLUX.1 / Z-Image and SD3 the VAE latent already scaled, (z - shift_factor) * scaling_factor; FLUX.2 the
# batch-normalised latent (its VAE's bn statistics), unpacked to 32 channels. So nothing is undone first.
_FLUX1_FACTORS = [  # the 16-channel VAE of FLUX.1, also Z-Image's
    [-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433], [-0.0174, 0.0160, 0.0617],
    [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115], [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259],
    [-0.0245, 0.0250, 0.1180], [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
    [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499], [-0.1262, -0.0982, -0.0778],
]
_FLUX_BIAS = [-0.0329, -0.0718, -0.0851]  # FLUX.1's; published for FLUX.2 too
_SD3_FACTORS = [
    [-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458], [0.0856, 0.0339, 0.0902],
    [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309], [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358],
    [-0.0194, 0.0020, 0.0669], [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
    [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293], [-0.1448, -0.1463, -0.1189],
]
_FLUX2_FACTORS = [  # the 32 channels of FLUX.2's VAE
    [0.0058, 0.0113, 0.0073], [0.0495, 0.0443, 0.0836], [-0.0099, 0.0096, 0.0644], [0.2144, 0.3009, 0.3652],
    [0.0166, -0.0039, -0.0054], [0.0157, 0.0103, -0.0160], [-0.0398, 0.0902, -0.0235], [-0.0052, 0.0095, 0.0109],
    [-0.3527, -0.2712, -0.1666], [-0.0301, -0.0356, -0.0180], [-0.0107, 0.0078, 0.0013], [0.0746, 0.0090, -0.0941],
    [0.0156, 0.0169, 0.0070], [-0.0034, -0.0040, -0.0114], [0.0032, 0.0181, 0.0080], [-0.0939, -0.0008, 0.0186],
    [0.0018, 0.0043, 0.0104], [0.0284, 0.0056, -0.0127], [-0.0024, -0.0022, -0.0030], [0.1207, -0.0026, 0.0065],
    [0.0128, 0.0101, 0.0142], [0.0137, -0.0072, -0.0007], [0.0095, 0.0092, -0.0059], [0.0000, -0.0077, -0.0049],
    [-0.0465, -0.0204, -0.0312], [0.0095, 0.0012, -0.0066], [0.0290, -0.0034, 0.0025], [0.0220, 0.0169, -0.0048],
    [-0.0332, -0.0457, -0.0468], [-0.0085, 0.0389, 0.0609], [-0.0076, 0.0003, -0.0043], [-0.0111, -0.0460, -0.0614],
]
_FACTORS = {
    "sd1": (_SD15_FACTORS, [0.0, 0.0, 0.0]),
    "sd2": (_SD15_FACTORS, [0.0, 0.0, 0.0]),
    "sdxl": (_SDXL_FACTORS, [0.1084, -0.0175, -0.0011]),
    "flux1": (_FLUX1_FACTORS, _FLUX_BIAS),
    "zimage": (_FLUX1_FACTORS, _FLUX_BIAS),
    "sd3": (_SD3_FACTORS, [0.2394, 0.2135, 0.1925]),
    "flux2-klein": (_FLUX2_FACTORS, _FLUX_BIAS),
}
# The folder of each family's tiny decoder under the models folder (the SD 1.x one for any other family).
_TINY_DECODERS = {"sdxl": "taesdxl", "flux1": "taef1", "zimage": "taef1", "sd3": "taesd3", "flux2-klein": "taef2"}
# Families whose tiny decoder diffusers' AutoencoderTiny cannot build (TAEF2's blocks have group norms it lacks).
_NO_TINY_DECODER = {"flux2-klein"}
# Packed tokens are 2x2 patches of latent pixels; a latent pixel is 8x8 picture pixels.
_TOKEN_SIDE = 16


def taesd_dir(models_dir: Path, family: str) -> Path:
    return models_dir / _TINY_DECODERS.get(family.removesuffix("-refiner"), "taesd")


def has_tiny_decoder(family: str) -> bool:
    """Whether diffusers' AutoencoderTiny can decode this family's latents (not FLUX.2's)."""
    return family.removesuffix("-refiner") not in _NO_TINY_DECODER


def load_tiny_decoder(folder: Path, family: str, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32):
    """The TAESD (AutoencoderTiny, diffusers layout) in `folder` on `device`; None when the family has none, its
    files are not there (never downloaded) or they are another family's (a different number of latent channels).
    Raises UnreadableTinyDecoder, saying why, when config.json is there but the files cannot be read."""
    family = family.removesuffix("-refiner")
    if not has_tiny_decoder(family) or not (folder / "config.json").is_file():
        return None
    from diffusers import AutoencoderTiny

    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UnreadableTinyDecoder(f"its config.json is not valid JSON: {_first_line(error, folder)}") from None
    if not any((folder / name).is_file() for name in _WEIGHTS):
        raise UnreadableTinyDecoder(f"it has config.json but no {_WEIGHTS[0]}")
    try:
        decoder = AutoencoderTiny.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as error:
        raise UnreadableTinyDecoder(_first_line(error, folder)) from None
    if decoder.config.latent_channels != len(_FACTORS.get(family, _FACTORS["sd1"])[0]):
        return None
    return decoder.to(torch.device(device), dtype).eval()


class UnreadableTinyDecoder(Exception):
    """The TAESD's files are there but cannot be read (half downloaded or corrupt); the message says why."""


_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _first_line(error: Exception, folder: Path) -> str:
    """An error's first line, short and without the folder the sentence around it already names."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0].replace(str(folder), "the folder")
    return text if len(text) <= 160 else text[:157] + "..."


def tiny_decode(decoder, latents: torch.Tensor) -> torch.Tensor:
    """(batch, channels, h, w) latents as the pipeline holds them -> pictures (batch, 3, 8h, 8w) in -1..1, undoing
    the scale and shift the TAESD's config names as a pipeline does with its VAE (TAESD and TAESDXL: none)."""
    config = decoder.config
    latents = latents.to(decoder.device, decoder.dtype) / config.scaling_factor + config.shift_factor
    return decoder.decode(latents).sample


def token_grid(count: int, size: tuple[int, int] | None) -> tuple[int, int] | None:
    """Rows and columns of `count` packed tokens of a picture `size` (width, height) pixels; None if unknown.

    Without a size (or with one that does not fit) only a square grid can be told."""
    if size is not None:
        rows, cols = size[1] // _TOKEN_SIDE, size[0] // _TOKEN_SIDE
        if rows * cols == count:
            return rows, cols
    side = math.isqrt(count)
    return (side, side) if side * side == count else None


def unpack_tokens(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """FLUX.1's and FLUX.2's packed latents (batch, rows*cols, channels*4) -> (batch, channels, 2*rows, 2*cols).

    Both pipelines put a token's 2x2 patch channel-major: feature c*4 + dy*2 + dx is channel c at (dy, dx)."""
    batch, _, features = tokens.shape
    rows, cols = grid
    patches = tokens.reshape(batch, rows, cols, features // 4, 2, 2)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, features // 4, rows * 2, cols * 2)


def image_latents(latents: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor | None:
    """The first picture's latents as (1, channels, h, w), whatever the pipeline's layout; None if it cannot tell."""
    first = latents[:1]
    if first.ndim == 3:  # packed tokens (FLUX.1, FLUX.2)
        grid = token_grid(first.shape[1], size)
        return None if grid is None else unpack_tokens(first, grid)
    return first


class Previewer:
    """Turns the pipeline's current latents into an HxWx3 uint8 preview of the first image."""

    def __init__(
        self,
        family: str,
        method: str = "approximate",
        taesd_path: Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        decoder=None,
    ):
        """`decoder`: the TAESD already loaded (ModelManager.tiny_decoder), else it is read from `taesd_path`."""
        if method not in METHODS:
            raise ValueError(f"unknown preview method {method!r}; choose one of {', '.join(METHODS)}")
        self.method = method
        self._decoder = None
        family = family.removesuffix("-refiner")
        factors, bias = _FACTORS.get(family, _FACTORS["sd1"])
        self._factors = torch.tensor(factors, dtype=torch.float32)
        self._bias = torch.tensor(bias, dtype=torch.float32)
        if method == "taesd":
            if decoder is None and taesd_path is not None:
                try:
                    decoder = load_tiny_decoder(taesd_path, family, device, dtype)
                except UnreadableTinyDecoder:
                    decoder = None
            if decoder is None:
                self.method = "approximate"  # weights not on disk: fall back, never download
            self._decoder = decoder

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """`size`: (width, height) of the picture, which packed latents need to be put back in rows."""
        if self.method == "off":
            return None
        first = image_latents(latents, size)
        if first is None:
            return None
        first = first[:, : len(self._factors)]
        if self._decoder is not None:  # decoded where the latents are, then only the pixels move
            rgb = tiny_decode(self._decoder, first)[0].permute(1, 2, 0).float().cpu()
        else:
            rgb = torch.einsum("chw,cr->hwr", first[0].float().cpu(), self._factors) + self._bias
        rgb = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return rgb.numpy()
