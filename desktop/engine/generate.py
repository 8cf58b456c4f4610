"""run(request, state, models) -> results: the only place that calls a pipeline.

Each mode becomes one pipeline call plus pixel work before and after it
(desktop/engine/inpaint.py). The prompt is encoded once per model and text
(ModelManager.prompt_embeddings), so a new seed or a batch count reuses it.
Seeds: image i of a batch uses seed + i, drawn from a CPU generator so the
same seed gives the same picture on every run of the same device and precision.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from desktop.core.backend import Result
from desktop.core.errors import Cancelled, NoPicture, OutOfMemory
from desktop.core.geometry import Bounds, Extent, only_masked_area
from desktop.core.progress import TaskState
from desktop.core.request import GenerationRequest, InpaintArea, MaskedContent, Mode

from . import inpaint
from .models import ModelManager
from .schedulers import make_scheduler


VAE_TILING_AREA = 1536 * 1536


@dataclass
class _Prepared:
    """Pipeline inputs for one mode, and how to turn its output into the result."""

    pipeline: str  # "txt2img" | "img2img" | "inpaint"
    inputs: dict
    finish: Callable[[np.ndarray], np.ndarray] = lambda image: image


def run(
    request: GenerationRequest,
    state: TaskState,
    models: ModelManager,
    preview_method: str = "approximate",
    preview_every: int = 1,
) -> list[Result]:
    """Generate the images of `request`. Raises InvalidRequest, ModelLoadError, OutOfMemory or Cancelled."""
    request = request.resolved()
    loaded = models.load(request.model, state)
    if state.cancelled():
        raise Cancelled(0)
    prepared = _on_grid(_prepare(request, loaded.inpaint_model))
    pipe = models.pipeline(prepared.pipeline)
    pipe.scheduler = make_scheduler(loaded.scheduler_config, request.sampler, request.schedule, request.seeds)
    previewer = models.previewer(loaded.family, preview_method)
    state.status(f"Generating {request.batch_size} image(s), {request.width}x{request.height}")
    last: dict = {}  # the latents of the last step, to tell a broken model from a broken VAE decode

    def on_step_end(pipe, index: int, timestep, tensors: dict) -> dict:
        last["latents"] = tensors["latents"]
        if state.cancelled():
            raise Cancelled(index + 1)
        total = getattr(pipe, "num_timesteps", None) or request.steps
        show = (index + 1) % max(1, preview_every) == 0 or index + 1 == total
        state.step(index + 1, total, previewer(tensors["latents"]) if show else None)
        return {}

    # Large pictures decode in overlapping tiles: the VAE's peak memory stays that of a 512x512 tile.
    if request.width * request.height > VAE_TILING_AREA:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()

    def call():
        with torch.inference_mode():
            embeddings = models.prompt_embeddings(pipe, request.prompt, request.negative_prompt,
                                                  guided=request.cfg_scale > 1)
            return pipe(
                **embeddings,
                num_inference_steps=request.steps,
                guidance_scale=request.cfg_scale,
                num_images_per_prompt=request.batch_size,
                generator=[torch.Generator("cpu").manual_seed(seed) for seed in request.seeds],
                output_type="np",
                callback_on_step_end=on_step_end,
                **prepared.inputs,
            )

    output = None
    try:
        output = call()
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not _is_out_of_memory(error):
            raise
    if output is None:  # out of memory; retried outside the except, so the failed attempt's tensors are freed
        models.release_cache()
        state.status("Out of memory: trying again with lighter settings (sliced attention, tiled VAE)...")
        try:
            with _lighter(pipe, loaded.plan.attention_slicing):
                output = call()
        except (torch.OutOfMemoryError, RuntimeError) as again:
            if not _is_out_of_memory(again):
                raise
            raise _out_of_memory(request, models) from again
    _check_finite(output.images, last.get("latents"), pipe.vae.dtype)
    images = (np.clip(output.images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return [Result(prepared.finish(image), seed, request) for image, seed in zip(images, request.seeds, strict=True)]


def _check_finite(images: np.ndarray, latents, vae_dtype: torch.dtype) -> None:
    """A model that computes NaN (damaged weights, or numbers too large for half
    precision) would otherwise give a black picture as if it had worked."""
    if np.isfinite(images).all():
        return
    fix = "set the precision to fp32 (File > Settings, or --precision fp32)"
    if vae_dtype in (torch.float16, torch.bfloat16) and latents is not None and bool(torch.isfinite(latents).all()):
        raise NoPicture("The model produced no picture: its VAE's output was not a number (NaN) in half "
                        f"precision. To decode in full precision, {fix}.")
    raise NoPicture("The model produced no picture: its output was not a number (NaN). The model file may be "
                    f"damaged; if it works in other programs, {fix}.")


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


@contextmanager
def _lighter(pipe, sliced: bool):
    """Attention in slices and the VAE in tiles: slower, but far less memory at once."""
    pipe.enable_attention_slicing("max")
    pipe.vae.enable_tiling()
    try:
        yield
    finally:  # back to the attention the model was loaded with, for the next run
        if sliced:
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()


def _out_of_memory(request: GenerationRequest, models: ModelManager) -> OutOfMemory:
    models.release_cache()
    return OutOfMemory(
        f"The {models.device.description} ran out of memory making {request.batch_size} image(s) of "
        f"{request.width}x{request.height}, even with lighter settings. Lower the size or the batch size, "
        "or close other programs that use the graphics card."
    )


def _prepare(request: GenerationRequest, inpaint_model: bool) -> _Prepared:
    size = {"width": request.width, "height": request.height}
    if request.mode is Mode.TXT2IMG:
        if not inpaint_model:
            return _Prepared("txt2img", size)
        grey = np.full((request.height, request.width, 3), 127, np.uint8)
        return _full_mask_inpaint(grey, 1.0, size)
    if request.mode is Mode.IMG2IMG:
        image = _resize(_rgb(request.init_image), request.extent)
        if not inpaint_model:
            return _Prepared("img2img", {"image": Image.fromarray(image), "strength": request.strength})
        return _full_mask_inpaint(image, request.strength, size)
    if request.mode is Mode.OUTPAINT:
        filled, _, soft = inpaint.outpaint_canvas(request.init_image, request.expand, request.mask_blur, request.mask)
        return _masked(filled, filled, soft, request.strength)
    return _prepare_inpaint(request)


def _on_grid(prepared: _Prepared) -> _Prepared:
    """Pipelines work in 8x8 latent cells: generate a picture of any size at the next multiple of 8, crop back.

    The inputs grow on the right and bottom (inpaint.pad_to_grid) and the
    output is cut to the asked size before `finish`, so an inpaint changes
    no pixel outside its mask and the last rows and columns can be repainted.
    """
    inputs = dict(prepared.inputs)
    image = inputs.get("image")
    width, height = (inputs["width"], inputs["height"]) if "width" in inputs else image.size
    grid = Extent(width, height).multiple_of_8()
    if grid == (width, height):
        return prepared
    for key in ("image", "mask_image"):
        if key in inputs:
            inputs[key] = Image.fromarray(inpaint.pad_to_grid(np.asarray(inputs[key])))
    if "width" in inputs:
        inputs.update(width=grid.width, height=grid.height)
    finish = prepared.finish
    return _Prepared(prepared.pipeline, inputs, lambda generated: finish(generated[:height, :width]))


def _prepare_inpaint(request: GenerationRequest) -> _Prepared:
    original = _rgb(request.init_image)
    mask = request.mask
    if request.inpaint_area is InpaintArea.WHOLE:
        original, mask = _resize(original, request.extent), _resize(mask, request.extent)
        soft = inpaint.blur_mask(mask, request.mask_blur)
        return _masked(original, _masked_content(request, original, mask), soft, request.strength)

    soft_full = inpaint.blur_mask(mask, request.mask_blur)
    box = only_masked_area(mask, request.mask_blur + request.inpaint_padding, request.extent)
    crop_image = _resize(original[box.slices], request.extent)
    crop_mask = _resize(mask[box.slices], request.extent)
    crop_soft = inpaint.blur_mask(crop_mask, request.mask_blur)
    content = _masked_content(request, crop_image, crop_mask)
    prepared = _masked(crop_image, content, crop_soft, request.strength)
    crop_finish = prepared.finish

    def finish(generated: np.ndarray) -> np.ndarray:
        patch = _resize(crop_finish(generated), box.extent)
        return _paste_region(original, patch, soft_full, box)

    prepared.finish = finish
    return prepared


def _masked(original: np.ndarray, content: np.ndarray, soft: np.ndarray, strength: float) -> _Prepared:
    """Inpaint `content` under the soft mask, then paste onto `original` (exact where the mask is 0)."""
    h, w = content.shape[:2]
    inputs = {
        "image": Image.fromarray(content),
        "mask_image": Image.fromarray((soft * 255 + 0.5).astype(np.uint8)),
        "strength": strength,
        "width": w,
        "height": h,
    }
    return _Prepared("inpaint", inputs, lambda generated: inpaint.paste_back(original, generated, soft))


def _full_mask_inpaint(image: np.ndarray, strength: float, size: dict) -> _Prepared:
    """txt2img / img2img on a 9-channel inpainting model: repaint everything."""
    mask = np.full(image.shape[:2], 255, np.uint8)
    inputs = {"image": Image.fromarray(image), "mask_image": Image.fromarray(mask), "strength": strength, **size}
    return _Prepared("inpaint", inputs)


def _masked_content(request: GenerationRequest, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if request.masked_content is MaskedContent.FILL:
        return inpaint.fill_masked(image, mask)
    if request.masked_content is MaskedContent.LATENT_NOISE:
        return inpaint.noise_masked(image, mask, request.seed)
    return image


def _paste_region(original: np.ndarray, patch: np.ndarray, soft: np.ndarray, box: Bounds) -> np.ndarray:
    out = original.copy()
    out[box.slices] = inpaint.paste_back(original[box.slices], patch, soft[box.slices])
    return out


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[..., :3])


def _resize(image: np.ndarray, size: Extent) -> np.ndarray:
    if image.shape[1] == size.width and image.shape[0] == size.height:
        return image
    return np.asarray(Image.fromarray(image).resize(tuple(size), Image.Resampling.LANCZOS))
