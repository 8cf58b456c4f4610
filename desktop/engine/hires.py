"""Hires fix (AUTOMATIC1111's "Hires. fix"): the second pass of a text-to-image run.

generate.run makes the first pass at the request's size, then asks this
module for the second: the upscale and the img2img pass's inputs (a Prepared,
as the preparers give). The run keeps one prompt encoding, seed, sampler and
LoRA set for both passes.

- Upscale: "Latent ..." upscalers resize the first pass's latents (torch
  interpolation: bilinear, bicubic or nearest, with or without antialiasing,
  as A1111's latent modes); "Lanczos" and "Nearest" resize its decoded
  picture, which the img2img pipeline encodes again; a model upscaler ("Demo
  upscaler", an upscaler file) runs at its native scale, tiled
  (desktop/engine/upscale.py), then Lanczos makes the size. Resize to a size with
  both sides set covers that size, then cuts it at the centre (A1111).
- Steps, as A1111 counts them: the second pass runs all of its steps (Hires
  steps, or the first pass's count when 0) as the last part of a longer
  schedule, steps / denoise, so a denoising strength of 0.5 and 10 steps
  runs 10 steps from step 10 of a 20-step schedule (plan(): A1111's
  setup_img2img_steps for a hires pass).
- A 9-channel inpainting model runs the pass as an inpaint of the whole
  picture, from pixels: latents are decoded first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from desktop.core.geometry import Extent
from desktop.core.request import GenerationRequest

from . import inpaint

#: A1111's latent upscale modes: upscaler -> (torch interpolation mode, antialias).
LATENT_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
PIXEL_MODES = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}


@dataclass(frozen=True)
class Plan:
    steps: int  # the denoising steps the second pass runs
    schedule_steps: int  # the schedule they are the last part of (num_inference_steps)
    strength: float  # what the pipeline is given so that exactly `steps` of `schedule_steps` run
    upscaled: Extent  # the size the first pass is upscaled to
    target: Extent  # the final picture's size (the upscale, cut to a resize size)
    latent: bool  # the upscale resizes latents, not pixels


def plan(request: GenerationRequest) -> Plan:
    hires, width, height = request.hires, request.width, request.height
    steps = hires.steps or request.sampling.steps
    schedule = max(steps, int(steps / min(hires.denoise, 0.999)))
    # diffusers runs int(schedule * strength) steps: half a step over `steps` makes that exactly `steps`
    strength = 1.0 if schedule == steps else (steps + 0.5) / schedule
    return Plan(steps, schedule, strength, hires.upscaled(width, height), hires.target(width, height),
                hires.upscaler in LATENT_MODES)


def second_pass(request: GenerationRequest, plan: Plan, inpainting_model: bool, first, decode, enlarge=None):
    """The second pass's Prepared (generate.Prepared: task, inputs, finish, shown), from the first pass's output:
    latents (N, C, h, w) when `plan.latent`, else its pictures (list of HxWx3 uint8 at the request's size).
    `decode(latents) -> pictures` is used when latents must become pixels (an inpainting model); `enlarge(picture)`
    is the model upscaler's native-scale upscale, for an upscaler that is neither latent nor Lanczos / Nearest."""
    from .generate import Prepared, _full_mask_inpaint  # the preparers' own pieces

    grid = plan.target.multiple_of_8()
    shown = (plan.target.width / grid.width, plan.target.height / grid.height)
    width, height = plan.target

    def finish(generated: np.ndarray) -> np.ndarray:
        return generated[:height, :width]

    if plan.latent:
        latents = upscale_latents(first, request.hires.upscaler, plan.upscaled, grid)
        if not inpainting_model:
            return Prepared("img2img", {"image": latents, "strength": plan.strength}, finish, shown=shown)
        pictures = [picture[:height, :width] for picture in decode(latents)]
    else:
        pictures = [upscale_picture(picture, request.hires.upscaler, plan.upscaled, plan.target, enlarge)
                    for picture in first]
    images = [Image.fromarray(inpaint.pad_to_grid(picture)) for picture in pictures]
    if not inpainting_model:
        return Prepared("img2img", {"image": images, "strength": plan.strength}, finish, shown=shown)
    prepared = _full_mask_inpaint(np.asarray(images[0]), plan.strength, {"width": grid.width, "height": grid.height})
    return dataclasses.replace(prepared, inputs={**prepared.inputs, "image": images}, finish=finish, shown=shown)


def upscale_latents(latents: torch.Tensor, upscaler: str, upscaled: Extent, grid: Extent) -> torch.Tensor:
    """The latents resized to cover `upscaled` (in 8-pixel cells), then cut at the centre to the cells of `grid`."""
    mode, antialias = LATENT_MODES[upscaler]
    cells_w, cells_h = -(-upscaled.width // 8), -(-upscaled.height // 8)
    options = {"antialias": antialias} if mode in ("bilinear", "bicubic") else {}
    resized = torch.nn.functional.interpolate(latents.float(), size=(cells_h, cells_w), mode=mode, **options)
    x, y = (cells_w - grid.width // 8) // 2, (cells_h - grid.height // 8) // 2
    return resized[..., y:y + grid.height // 8, x:x + grid.width // 8].to(latents.dtype)


def upscale_picture(picture: np.ndarray, upscaler: str, upscaled: Extent, target: Extent, enlarge=None) -> np.ndarray:
    """The picture resized to `upscaled` with Pillow (a model upscaler: `enlarge`d first, then Lanczos), then cut
    at the centre to `target`."""
    if upscaler in PIXEL_MODES:
        resized = np.asarray(Image.fromarray(picture).resize(tuple(upscaled), PIXEL_MODES[upscaler]))
    else:
        resized = np.asarray(Image.fromarray(enlarge(picture)).resize(tuple(upscaled), Image.Resampling.LANCZOS))
    x, y = (upscaled.width - target.width) // 2, (upscaled.height - target.height) // 2
    return np.ascontiguousarray(resized[y:y + target.height, x:x + target.width])


def decode(pipe, latents: torch.Tensor) -> np.ndarray:
    """Latents -> pictures (N, H, W, 3) floats 0..1 through the pipeline's VAE, in full precision where its
    config asks (SDXL's VAE overflows in half precision), as the pipelines decode."""
    vae = pipe.vae
    dtype = vae.dtype
    upcast = dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        latents = latents.to(device=vae.device, dtype=vae.dtype)
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
            std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        with torch.inference_mode():
            images = vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(images, output_type="np")
    finally:
        if upcast:
            vae.to(dtype=dtype)
