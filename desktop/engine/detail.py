"""Upscale with detail: one img2img pass at low strength over a whole upscaled picture, in latent tiles that
are blended at every step (MultiDiffusion), so no seam exists to hide.

The loop is written here with the img2img pipeline's parts, as diffusers' img2img runs it: the picture is
encoded (the VAE tiles a large one), the scheduler's timesteps are cut by the strength (get_timesteps), and
the noise of a CPU generator seeded with the seed is added. Then at every step the UNet (with CFG) runs on
each overlapping latent tile (TILE latents a side for the model's family, OVERLAP latents shared); the noise
predictions are averaged where tiles overlap with feathered weights that rise linearly from a shared edge
and are normalised to add up to 1 everywhere; and ONE scheduler step is taken on the whole latent. With a
single tile that is exactly diffusers' img2img. SDXL's size conditioning is per tile: the whole picture's
size, the tile's crop corner and its size, as the model was trained on crops.

Progress is one bar of steps x tiles; cancel is checked before every tile; the preview is the whole latent
after every step.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from desktop.core import families
from desktop.core.errors import Cancelled, OutOfMemory, SfumatoError
from desktop.core.postprocess import DetailSettings
from desktop.core.progress import TaskState
from desktop.core.request import MAX_SEED, RANDOM_SEED

from . import editing, generate, hires, inpaint
from .models import ModelManager
from .schedulers import make_scheduler, pipeline_inputs
from .upscale import starts

TILE = {"sd1": 64, "sd2": 96, "sdxl": 128}  # latents a side: the size each family was trained at
OVERLAP = 16  # latents shared by neighbouring tiles


@dataclass(frozen=True)
class Detailed:
    image: np.ndarray  # HxWx3 uint8, the input's size
    seed: int
    model_ref: str  # the model as loaded, for its name and hash
    params: tuple[tuple[str, str], ...]  # what the run adds to the infotext ("Pad conds", "Lora hashes", ...)


def run(settings: DetailSettings, picture: np.ndarray, state: TaskState, models: ModelManager,
        addons: generate.Addons | None = None, preview_method: str = "approximate", tile: int | None = None,
        overlap: int = OVERLAP) -> Detailed:
    """The img2img pass of `settings` over `picture` (HxWx3 uint8), tiled; strength 0 returns it unchanged."""
    settings = settings.validated()
    refuse_flow(settings, models, state)
    sampling, conditioning = settings.sampling, settings.conditioning
    seed = sampling.seed if sampling.seed != RANDOM_SEED else random.randint(0, MAX_SEED)
    loaded, extras = generate.load_for(models, settings.model, conditioning, addons, state)
    if loaded.inpaint_model:
        raise SfumatoError(f"{loaded.name} is an inpainting model; add detail with an ordinary model of its family.")
    steps = sampling.steps
    run_steps = denoise_steps(sampling)
    if run_steps < 1:  # nothing to denoise: the upscaled picture as it is
        return Detailed(picture, seed, loaded.ref, ())
    embeddings = extras.embeddings

    pipe = models.pipeline("img2img")
    guided = sampling.cfg_scale > 1
    spans = editing.spans(conditioning, steps)
    height, width = picture.shape[:2]
    side = tile or TILE.get(loaded.family, 64)
    state.status(f"Adding detail: {run_steps} steps at denoising strength {sampling.strength:g} over "
                 f"{width}x{height}")
    try:
        with torch.inference_mode():
            encodings = models.span_embeddings(pipe, [c for _, c in spans], guided, embeddings)
            schedule = editing.Schedule(list(zip([end for end, _ in spans], encodings, strict=True)), guided, 1)
            latents = _denoise(pipe, loaded, schedule, picture, seed, sampling, side, overlap, state,
                               models.previewer(loaded.family, preview_method, loaded.info.path, state))
            decoded = hires.decode(pipe, latents)
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not generate._is_out_of_memory(error):
            raise
        models.release_cache()
        raise OutOfMemory(f"The {models.device.description} ran out of memory adding detail to a {width}x{height} "
                          "picture. Use a smaller scale, or close other programs.") from None
    generate._check_finite(decoded, latents, pipe.vae.dtype, state)
    image = generate._pictures(decoded)[0][:height, :width]
    return Detailed(np.ascontiguousarray(image), seed, loaded.ref, extras.params(schedule))


def refuse_flow(settings: DetailSettings, models: ModelManager, state: TaskState) -> None:
    """Raise SfumatoError, before anything is loaded or upscaled, when the pass's model is a flow-matching one
    (Z-Image, FLUX, SD 3.5): the tiled loop here runs a UNet with CLIP prompt encodings."""
    info = models.identify(settings.model, state)
    if families.is_flow(info.family):
        raise SfumatoError(f"Upscale with detail does not work with {families.spec(info.family).label} models yet: "
                           "choose an SD 1.x or SDXL model for the detail pass.")


def _denoise(pipe, loaded, schedule: editing.Schedule, picture: np.ndarray, seed: int, sampling, side: int,
             overlap: int, state: TaskState, previewer) -> torch.Tensor:
    device, dtype = pipe.unet.device, pipe.unet.dtype
    generator = torch.Generator("cpu").manual_seed(seed)
    scheduler = make_scheduler(loaded.scheduler_config, sampling.sampler, sampling.schedule, [seed])
    steps = sampling.steps
    scheduler.set_timesteps(steps, device=device)
    start = steps - denoise_steps(sampling)
    timesteps = scheduler.timesteps[start * scheduler.order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)

    padded = inpaint.pad_to_grid(np.ascontiguousarray(picture[..., :3]))
    pixels = pipe.image_processor.preprocess(Image.fromarray(padded)).to(device=device, dtype=dtype)
    pipe.vae.enable_tiling() if pixels.shape[-1] * pixels.shape[-2] > generate.VAE_TILING_AREA \
        else pipe.vae.disable_tiling()
    sdxl = loaded.family == "sdxl"
    clean = _encode(pipe, pixels, generator, sdxl).to(dtype)
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor(clean.shape, generator=generator, device=device, dtype=dtype)
    latents = scheduler.add_noise(clean, noise, timesteps[:1])

    tiles = _tiles(latents.shape[-2], latents.shape[-1], side, overlap, device, dtype)
    accepted = set(inspect.signature(scheduler.step).parameters)
    inputs = {"eta": 0.0, **pipeline_inputs(sampling.sampler), "generator": generator}  # TCD: gamma as eta
    extra = {key: value for key, value in inputs.items() if key in accepted}
    total, done = len(timesteps) * len(tiles), 0
    shown = previewer(latents) if len(tiles) > 1 else None  # the picture as it stands, the tile marked on it
    for index, timestep in enumerate(timesteps):
        kwargs = schedule.entries[schedule._index(index)][1].kwargs
        embeds = schedule._pair(kwargs["prompt_embeds"], kwargs.get("negative_prompt_embeds")).to(device, dtype)
        pooled = schedule._pair(kwargs["pooled_prompt_embeds"], kwargs.get("negative_pooled_prompt_embeds")) \
            .to(device, dtype) if sdxl else None
        model_in = torch.cat([latents] * 2) if schedule.guided else latents
        model_in = scheduler.scale_model_input(model_in, timestep)
        blended = torch.zeros_like(latents, dtype=torch.float32)  # a single tile's prediction comes back exact
        for number, (y, x, h, w, weight) in enumerate(tiles):
            if state.cancelled():
                raise Cancelled(done)
            added = None
            if sdxl:  # the picture's size, the tile's crop corner and size, in pixels (negative = positive)
                added = {"text_embeds": pooled, "time_ids": _time_ids(pipe, padded.shape[:2], (y * 8, x * 8),
                                                                      (h * 8, w * 8), schedule.guided, dtype, device)}
            pred = pipe.unet(model_in[..., y:y + h, x:x + w], timestep, encoder_hidden_states=embeds,
                             added_cond_kwargs=added, return_dict=False)[0]
            if schedule.guided:
                uncond, cond = pred.chunk(2)
                pred = uncond + sampling.cfg_scale * (cond - uncond)
            blended[..., y:y + h, x:x + w] += pred.float() if weight is None else pred.float() * weight
            done += 1
            if number + 1 < len(tiles):
                following = tiles[number + 1]
                state.step(done, total, marked(shown, following[:4], latents.shape[-2:]))
        latents = scheduler.step(blended.to(dtype), timestep, latents, **extra, return_dict=False)[0]
        preview = previewer(latents)
        shown = preview if len(tiles) > 1 else None
        more = shown is not None and index + 1 < len(timesteps)
        state.step(done, total, marked(preview, tiles[0][:4], latents.shape[-2:]) if more else preview)
    return latents


def marked(preview: np.ndarray | None, tile: tuple[int, int, int, int], latent_size) -> np.ndarray | None:
    """A copy of `preview` with the outline of the latent `tile` (y, x, h, w) on it: the tile worked on next,
    light over a dark edge so it shows on any picture."""
    if preview is None:
        return None
    scale_y, scale_x = preview.shape[0] / latent_size[0], preview.shape[1] / latent_size[1]
    y, x, h, w = tile
    top, left = int(y * scale_y), int(x * scale_x)
    bottom = min(preview.shape[0], int((y + h) * scale_y)) - 1
    right = min(preview.shape[1], int((x + w) * scale_x)) - 1
    out = preview.copy()
    for colour, inset in (((20, 20, 20), 0), ((255, 255, 255), 1)):
        t, l, b, r = top + inset, left + inset, bottom - inset, right - inset
        if b <= t or r <= l:
            break
        out[t, l:r + 1] = out[b, l:r + 1] = colour
        out[t:b + 1, l] = out[t:b + 1, r] = colour
    return out


def denoise_steps(sampling) -> int:
    """The steps the pass runs: strength x steps as img2img counts them, but at least one for any strength
    above 0, so a few-step model (Turbo, LCM: 3 steps x 0.25) still repaints instead of returning the picture."""
    if sampling.strength <= 0:
        return 0
    return max(1, min(int(sampling.steps * sampling.strength), sampling.steps))


def _encode(pipe, pixels: torch.Tensor, generator: torch.Generator, sdxl: bool) -> torch.Tensor:
    """Pixels (-1..1) -> scaled latents, a sample of the VAE's distribution drawn with `generator`, as the
    img2img pipelines encode: SDXL's in full precision where the VAE's config asks, cast back to the model's."""
    vae = pipe.vae
    dtype = vae.dtype
    upcast = sdxl and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(dtype=torch.float32)
    try:
        latents = vae.encode(pixels.to(vae.dtype)).latent_dist.sample(generator).to(dtype)
    finally:
        if upcast:
            vae.to(dtype=dtype)
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        return (latents - mean) * vae.config.scaling_factor / std
    return vae.config.scaling_factor * latents


def _time_ids(pipe, size: tuple[int, int], corner: tuple[int, int], tile: tuple[int, int], guided: bool, dtype,
              device) -> torch.Tensor:
    """SDXL's size conditioning of one tile, as its img2img pipeline makes it: the picture's size, the tile's
    crop corner and size in pixels (a refiner: the aesthetic scores instead of the size), negative first."""
    if getattr(pipe.config, "requires_aesthetics_score", False):
        ids = [[*size, *corner, 2.5], [*size, *corner, 6.0]] if guided else [[*size, *corner, 6.0]]
    else:
        ids = [[*size, *corner, *tile]] * (2 if guided else 1)
    return torch.tensor(ids, dtype=dtype, device=device)


def _tiles(height: int, width: int, side: int, overlap: int, device, dtype) -> list:
    """(y, x, h, w, weight) of the latent tiles; weight is None for a single tile (exactly the untiled run),
    else the tile's share of the blend: a ramp from each shared edge over the overlap, normalised so the shares
    add up to 1 at every latent."""
    overlap = min(overlap, side // 2)
    ys, xs = starts(height, side, overlap), starts(width, side, overlap)
    if len(ys) == len(xs) == 1:
        return [(0, 0, height, width, None)]
    h, w = min(side, height), min(side, width)

    def ramp(length: int, lead: bool, trail: bool) -> torch.Tensor:
        weight = torch.ones(length, dtype=torch.float32)
        rise = (torch.arange(overlap, dtype=torch.float32) + 1) / (overlap + 1)
        if lead:
            weight[:overlap] = rise
        if trail:
            weight[length - overlap:] = torch.minimum(weight[length - overlap:], rise.flip(0))
        return weight

    total = torch.zeros(height, width)
    raw = []
    for y in ys:
        wy = ramp(h, y > 0, y + h < height)
        for x in xs:
            weight = wy[:, None] * ramp(w, x > 0, x + w < width)[None, :]
            total[y:y + h, x:x + w] += weight
            raw.append((y, x, weight))
    return [(y, x, h, w, (weight / total[y:y + h, x:x + w]).to(device)) for y, x, weight in raw]
