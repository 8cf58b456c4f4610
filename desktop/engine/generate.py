"""run(request, state, models) -> results: the only place that calls a pipeline.

Each mode has a preparer (PREPARERS: mode -> prepare(request, traits) ->
Prepared): the pipeline task to ask the model manager for (with its extras),
the pipeline's inputs, and `finish`, the pixel work on its output
(desktop/engine/inpaint.py). One wrapper, _on_grid, pads every mode's inputs
to the 8-pixel grid and crops the output back. The prompt is encoded once per
model and conditioning (ModelManager.span_embeddings), so a new seed or a
batch count reuses it.
Seeds: image i of a batch uses seed + i, drawn from a CPU generator so the
same seed gives the same picture on every run of the same device and precision.
Text to image with the hires fix on is two pipeline calls (passes), with the
same seeds, prompt encodings and LoRAs, on one progress bar: the second one's
inputs come from desktop/engine/hires.py.
The flow-matching families (desktop/engine/flow.py) run the same way with
their own pipelines, a 16-pixel grid, the prompt as plain text and their
own guidance; what they cannot do yet is refused before the model loads.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass
from pathlib import Path
import re
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from desktop.core.backend import Result
from desktop.core import families, fewstep, prompts
from desktop.core.errors import Cancelled, NoPicture, OutOfMemory, SfumatoError
from desktop.core.geometry import Bounds, Extent, only_masked_area
from desktop.core.progress import TaskState
from desktop.core.request import (DEMO_HIRES_UPSCALER, GenerationRequest, InpaintArea, InpaintSettings, MaskedContent,
                                  Mode)

from . import controlnet, editing, flow, hires, inpaint
from .models import CHECKPOINT, ModelManager
from . import previews, reference, runtimes
from .schedulers import make_flow_scheduler, make_scheduler, pipeline_inputs


VAE_TILING_AREA = 1536 * 1536


@dataclass(frozen=True)
class Traits:
    """What a preparer needs to know of the loaded model."""

    family: str  # "sd1", "sd2", "sdxl", or a flow-matching family (desktop/engine/flow.py)
    inpaint: bool  # a 9-channel inpainting model (or FLUX.1 Fill): every mode runs as an inpaint
    grid: int = 8  # pixels per latent cell: sizes are generated at a multiple of it
    img2img: bool = True  # the family has an img2img pipeline; without one img2img is a full-mask inpaint

    @classmethod
    def of(cls, loaded) -> Traits:
        if not loaded.flow:
            return cls(loaded.family, loaded.inpaint_model)
        return cls(loaded.family, loaded.inpaint_model, flow.GRID, flow.has_img2img(loaded.family))


@dataclass(frozen=True)
class Prepared:
    """Pipeline inputs for one mode, and how to turn its output into the result."""

    task: str  # "txt2img" | "img2img" | "inpaint"
    inputs: dict
    finish: Callable[[np.ndarray], np.ndarray] = lambda image: image
    extras: tuple = ()  # what the pipeline needs beside the model (a ControlNet, ...): part of its cache key
    shown: tuple[float, float] = (1.0, 1.0)  # the part of the generated width and height that is the result
    crop: Bounds | None = None  # inpaint "only masked": the part of the input picture that is generated


class Addons(Protocol):
    """Finds the LoRAs and textual-inversion embeddings a prompt names (kind "lora" or "embedding")."""

    def find(self, kind: str, name: str) -> Path | None: ...

    def files(self, kind: str) -> dict[str, Path]: ...  # name -> file, every one there is

    def short_hash(self, kind: str, path: Path) -> str: ...  # as A1111 writes it in "Lora hashes", "TI hashes"

    def where(self, kind: str) -> str: ...  # where new ones go, for messages


class NoAddons:
    def find(self, kind: str, name: str) -> Path | None:
        return None

    def files(self, kind: str) -> dict[str, Path]:
        return {}

    def short_hash(self, kind: str, path: Path) -> str:
        return ""

    def where(self, kind: str) -> str:
        return "a model folder"


def run(
    request: GenerationRequest,
    state: TaskState,
    models: ModelManager,
    preview_method: str = "approximate",
    preview_every: int = 1,
    addons: Addons | None = None,
) -> list[Result]:
    """Generate the images of `request`. Raises InvalidRequest, ModelLoadError, OutOfMemory or Cancelled."""
    try:
        return _run(request, state, models, preview_method, preview_every, addons)
    finally:  # IP-Adapters patch the model's UNet, which all its pipelines share: none stays after the run
        reference.release()


def _run(request: GenerationRequest, state: TaskState, models: ModelManager, preview_method: str,
         preview_every: int, addons: Addons | None) -> list[Result]:
    request = request.resolved()
    info = models.identify(request.model, state)
    family = info.family
    if fewstep.unsupported(info.name):  # a one-step distillation sampled wrong would make only noise
        raise SfumatoError(fewstep.unsupported(info.name))
    if families.is_flow(family):  # what these models cannot do stops the run before their long load
        flow.refuse_unsupported(request, family, len(editing.spans(request.conditioning, request.sampling.steps)))
        flow.refuse_sampler(family, request.sampling.sampler)
    loaded, extras = load_for(models, request.model, request.conditioning, addons, state)
    # CFG doubles the UNet's batch, except on a UNet that takes the guidance as an embedding (a full LCM
    # checkpoint's): there the pipeline hands it CFG - 1 and runs one batch, with no negative prompt
    guided = request.sampling.cfg_scale > 1 and not guidance_embedded(loaded)
    references = reference.prepare(request.references, models, getattr(addons, "folders", ()), state, guided)
    embeddings = extras.embeddings
    guidance = controlnet.prepare(request, models, getattr(addons, "folders", ()), state, loaded)
    prepared = prepare(request, Traits.of(loaded))
    if guidance is not None:
        prepared = guidance.attach(prepared, request)
    sampling = request.sampling
    second = hires.plan(request) if request.hires.enabled else None
    enlarge = _enlarger(request.hires.upscaler, models, state, addons, loaded.ref) \
        if second and not second.latent else None
    previewer = models.previewer(loaded.family, preview_method, loaded.info.path, state)
    tiny = _tiny_decoder(request, models, loaded, state)  # the TAESD that decodes the final pictures, or None
    final = "tiny" if tiny is not None else "np"  # "tiny": the pipeline hands over latents, the TAESD decodes
    last: dict = {}  # the latents of the last step, to tell a broken model from a broken VAE decode
    done = {"steps": 0, "later": second.steps if second else 0}  # the steps of the passes before and after this
    ran_on: dict = {"params": ()}  # the runtime's infotext params (runtimes.serving), from the last pass
    texts = _flow_texts(request.conditioning, loaded, state) if loaded.flow else None

    def denoise(prepared: Prepared, spans: list, steps: int, output_type: str):
        """One pipeline call (one pass) with its own scheduler; progress counts on over the passes."""
        pipe = models.pipeline(prepared.task, prepared.extras)
        ip_inputs = reference.use(pipe, references)
        inputs = prepared.inputs
        if loaded.flow:
            inputs, note = flow.task_inputs(pipe, loaded.info, inputs)
            if note:
                state.status(note)
            pipe.scheduler = make_flow_scheduler(loaded.scheduler_config, sampling.sampler, sampling.schedule,
                                                 sampling.shift)
        else:
            pipe.scheduler = make_scheduler(loaded.scheduler_config, sampling.sampler, sampling.schedule,
                                            sampling.seeds)
        encoded: dict = {}  # "value": the editing.Schedule of the prompt's encodings
        image = prepared.inputs.get("image")
        width, height = (prepared.inputs["width"], prepared.inputs["height"]) if "width" in prepared.inputs else (
            (image.shape[-1] * 8, image.shape[-2] * 8) if isinstance(image, torch.Tensor) else _first(image).size)
        made = flow.working_size(pipe, width, height) if loaded.flow else (width, height)

        def on_step_end(pipe, index: int, timestep, tensors: dict) -> dict:
            last["latents"] = tensors["latents"]
            if state.cancelled():
                raise Cancelled(done["steps"] + index + 1)
            total = getattr(pipe, "num_timesteps", None) or steps
            show = (index + 1) % max(1, preview_every) == 0 or index + 1 == total
            preview = previewer(tensors["latents"], size=made) if show else None
            state.step(done["steps"] + index + 1, done["steps"] + total + done["later"],
                       _shown(preview, prepared.shown))
            return encoded["value"].switch(index, tensors)

        # Large pictures decode in overlapping tiles: the VAE's peak memory stays that of a 512x512 tile.
        if width * height > VAE_TILING_AREA:
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()

        def call():
            with torch.inference_mode():
                if texts is not None:
                    encoded["value"] = _flow_conditioning(pipe, loaded, models, texts, sampling, state)
                else:
                    encoded["value"] = editing.Schedule(
                        list(zip([end for end, _ in spans],
                                 models.span_embeddings(pipe, [c for _, c in spans], guided, embeddings),
                                 strict=True)),
                        guided, sampling.batch_size)
                tensors = ["latents"] if len(spans) == 1 else [
                    name for name in ("latents", "prompt_embeds", "add_text_embeds")
                    if name in pipe._callback_tensor_inputs]
                generators = [torch.Generator("cpu").manual_seed(seed) for seed in sampling.seeds]
                if loaded.flow:  # a stochastic flow sampler (Euler a) draws its noise from the pipeline's generators
                    pipe.scheduler.generators = generators
                with runtimes.serving(pipe, models, loaded, prepared.task, state) as ran_on["params"]:
                    return pipe(
                        **{"guidance_scale": sampling.cfg_scale, "num_images_per_prompt": sampling.batch_size,
                           **encoded["value"].first.kwargs},
                        callback_on_step_end_tensor_inputs=tensors,
                        num_inference_steps=steps,
                        generator=generators,
                        output_type="latent" if output_type == "tiny" else output_type,
                        callback_on_step_end=on_step_end,
                        **(_each_picture(inputs, sampling.batch_size)
                           if loaded.flow or prepared.task == "inpaint" else inputs),
                        **ip_inputs,
                        **({} if loaded.flow else pipeline_inputs(sampling.sampler)),
                    )

        output = None
        try:
            output = call()
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not _is_out_of_memory(error):
                raise
        if output is None:  # out of memory; retried outside the except, so the failed attempt's tensors are freed
            models.release_cache()
            if loaded.flow and models.offload_sequentially():  # a transformer's layers one by one on the GPU
                state.status("Out of memory: trying again with lighter settings (sequential offload, which is "
                             "slower, and a tiled VAE)...")
            else:
                state.status("Out of memory: trying again with lighter settings (sliced attention, tiled VAE)...")
            try:
                with _lighter(pipe, loaded.plan.attention_slicing):
                    output = call()
            except (torch.OutOfMemoryError, RuntimeError) as again:
                if not _is_out_of_memory(again):
                    raise
                raise _out_of_memory(request, models) from again
        done["steps"] += getattr(pipe, "num_timesteps", None) or steps
        done["later"] = 0
        if output_type == "tiny":
            output.images = _tiny_pictures(tiny, output.images, made)
        if made != (width, height) and output_type in ("np", "tiny"):
            output.images = _at_size(output.images, width, height)
        return output, encoded["value"], pipe

    passes = f" (pass 1/2, then the hires fix to {second.target.width}x{second.target.height})" if second else ""
    state.status(f"Generating {sampling.batch_size} image(s), {request.width}x{request.height}{passes}")
    spans = editing.spans(request.conditioning, sampling.steps)
    latent = second is not None and second.latent
    output, schedule, pipe = denoise(prepared, spans, sampling.steps,
                                     "latent" if latent else "np" if second else final)
    generated, finish = output.images, prepared.finish  # float pictures 0..1 on the grid, and their crop
    if second is not None:
        first = generated if latent else [finish(image) for image in _pictures(generated)]
        try:
            generated, pipe, finish = _hires_pass(request, second, loaded.inpaint_model, first, pipe, denoise, state,
                                                  enlarge, guidance, final)
        except OutOfMemory:  # the first pass's pictures are kept, as made without the hires fix
            state.status(f"The {models.device.description} ran out of memory in the hires fix's second pass at "
                         f"{second.target.width}x{second.target.height}, even with lighter settings: the first "
                         f"pass's pictures ({request.width}x{request.height}) are kept. Lower Upscale by or the "
                         "batch size to use the hires fix.")
            request = request.replace(hires=request.hires.replace(enabled=False))
            if latent and tiny is not None:
                generated = _tiny_pictures(tiny, first, None)
            elif latent:
                pipe.vae.enable_tiling()
                generated = hires.decode(pipe, first)
    finite = _check_finite(generated, last.get("latents"), pipe.vae.dtype, state)
    images = _pictures(generated[finite])
    seeds = [seed for seed, kept in zip(sampling.seeds, finite, strict=True) if kept]
    params = extras.params(schedule) + (guidance.params if guidance is not None else ()) + ran_on["params"]
    params += references.params if references is not None else ()
    params += (("Decoder", "TAESD"),) if tiny is not None else ()
    return [Result(finish(image), seed, request, params) for image, seed in zip(images, seeds, strict=True)]


def guidance_embedded(loaded) -> bool:
    """Whether the model's UNet takes the CFG scale as an embedding (time_cond_proj_dim: a full LCM checkpoint)."""
    unet = getattr(next(iter(loaded.pipelines.values())), "unet", None)
    return getattr(getattr(unet, "config", None), "time_cond_proj_dim", None) is not None


def _tiny_decoder(request: GenerationRequest, models: ModelManager, loaded, state: TaskState):
    """The TAESD that decodes the final pictures when the request asks for it (decoder "tiny"); None for the full
    VAE, which also decodes, with a sentence in the status, when the family's TAESD is not on disk."""
    if request.decoder != "tiny":
        return None
    decoder, folder = models.tiny_decoder(loaded.family, loaded.info.path)
    why = models.tiny_unreadable(folder) if decoder is None else ""
    if why:
        state.status(f"The full VAE decoded the picture: the TAESD in {folder} could not be read ({why}); "
                     "download its files again.")
    elif decoder is None:
        label = families.spec(loaded.family).label if families.spec(loaded.family) else loaded.family
        state.status(f"The full VAE decoded the picture: {label} has no TAESD decoder Sfumato can use."
                     if not previews.has_tiny_decoder(loaded.family) else
                     f"The full VAE decoded the picture because the TAESD decoder is not in {folder}: put its "
                     f"diffusers files (config.json and diffusion_pytorch_model.safetensors) there to use it.")
    return decoder


def _tiny_pictures(decoder, latents: torch.Tensor, size: tuple[int, int] | None) -> np.ndarray:
    """The pipeline's final latents -> float pictures (batch, h, w, 3) 0..1 through the TAESD; FLUX.1's packed
    tokens are put back in rows first (`size`: the picture's (width, height) the pipeline made)."""
    if latents.ndim == 3:
        latents = previews.unpack_tokens(latents, previews.token_grid(latents.shape[1], size))
    with torch.inference_mode():
        images = previews.tiny_decode(decoder, latents)
    return (images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def _at_size(images: np.ndarray, width: int, height: int) -> np.ndarray:
    """Float pictures (batch, h, w, 3) a pipeline made smaller than asked, scaled back to width x height."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    scaled = torch.nn.functional.interpolate(tensor, size=(height, width), mode="bicubic", antialias=True)
    return scaled.permute(0, 2, 3, 1).numpy()


def _each_picture(inputs: dict, batch: int) -> dict:
    """A flow model's or an inpaint's inputs with the init picture once per picture of the batch: each is then
    encoded with its own seed's generator, so picture i of a batch is the single run with seed + i (SD's inpaint
    pipelines sample one picture's latents with the first generator only; SD3's img2img encodes one picture per
    generator). Pictures already given one per batch picture (the hires fix's) stay as they are."""
    if batch == 1 or "image" not in inputs or isinstance(inputs["image"], list):
        return inputs
    return {**inputs, "image": [inputs["image"]] * batch}


def _flow_texts(conditioning, loaded, state: TaskState) -> tuple[str, str]:
    """A flow model's prompt and negative prompt as plain text, saying in the status when weights were dropped."""
    prompt, weighted = flow.plain_prompt(conditioning.prompt)
    negative, negative_weighted = flow.plain_prompt(conditioning.negative_prompt)
    if weighted or negative_weighted:
        state.status(f"Emphasis weights such as (word:1.2) are not applied for {flow.label(loaded.info)}: the "
                     "words were used without them.")
    return prompt, negative


def _flow_conditioning(pipe, loaded, models: ModelManager, texts: tuple[str, str], sampling,
                       state: TaskState) -> editing.Schedule:
    """A flow model's prompt and guidance inputs for the batch, the prompt encoded once per conditioning."""
    guide = flow.guidance(pipe, loaded.info, sampling)
    if guide.note:
        state.status(guide.note)
    encoded = models.flow_prompt(pipe, texts[0], texts[1] if guide.guided else None)
    conditioning = flow.conditioning(encoded, guide, sampling.batch_size)
    params = conditioning.first.params
    if sampling.shift:
        params["Shift"] = f"{sampling.shift:g}"
    if loaded.plan.int8:  # its pictures are close to, not the same as, the full-precision model's
        params["Weights"] = "int8"
    return conditioning


def _hires_pass(request: GenerationRequest, second: hires.Plan, inpainting_model: bool, first, pipe, denoise,
                state: TaskState, enlarge=None, guidance=None, output_type: str = "np"):
    """The hires fix's upscale and second pass (desktop/engine/hires.py): (pictures, pipe, finish)."""
    state.status(f"Hires fix, pass 2/2: {request.hires.upscaler} to {second.target.width}x{second.target.height}, "
                 f"{second.steps} steps at denoising strength {request.hires.denoise:g}")
    prepared = hires.second_pass(request, second, inpainting_model, first,
                                 lambda latents: _pictures(hires.decode(pipe, latents)), enlarge)
    if guidance is not None:  # A1111 applies the controls to the second pass too, at its size
        prepared = guidance.attach(prepared, request, second)
    spans = editing.spans(request.conditioning, second.steps, after=request.sampling.steps)
    output, _, pipe = denoise(prepared, spans, second.schedule_steps, output_type)
    return output.images, pipe, prepared.finish


def _enlarger(name: str, models: ModelManager, state: TaskState, addons, checkpoint: str) -> Callable | None:
    """The hires fix's model upscale (None for Lanczos and Nearest): "Demo upscaler" or an upscaler file, found
    before the first pass so that a missing one stops the run at once; loading it never unloads `checkpoint`."""
    if name in hires.PIXEL_MODES:
        return None
    from . import upscale  # spandrel only when a model upscaler is used

    ref = "demo" if name == DEMO_HIRES_UPSCALER else name
    folders = getattr(addons, "folders", ())
    upscale.resolve(ref, folders)
    spare = {(CHECKPOINT, checkpoint)}
    return lambda picture: upscale.enlarge(ref, picture, state, models, folders, spare)


def _pictures(images: np.ndarray) -> np.ndarray:
    """The pipeline's float pictures (0..1) as uint8."""
    return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _first(image):
    return image[0] if isinstance(image, list) else image


@dataclass
class PromptAddons:
    """The LoRAs and embeddings a run's prompts use, for the encoder and the infotext."""

    addons: Addons
    lora_hashes: list[str]  # "name: hash", as "Lora hashes" lists them
    embeddings: dict  # name -> vectors, those the loaded model can use
    embedding_files: dict[str, Path]

    def params(self, schedule: editing.Schedule) -> tuple:
        return _params(schedule, self.lora_hashes, self.addons, self.embedding_files)


def load_for(models: ModelManager, model: str, conditioning, addons: Addons | None, state: TaskState):
    """Load `model` with the LoRAs the prompt names merged in, and find the embeddings it can use, saying in the
    status what is read as words. A missing LoRA stops before any loading. Returns (loaded, PromptAddons)."""
    addons = addons or NoAddons()
    uses, lora_hashes = _loras(conditioning, addons)
    loaded = models.load(model, state)
    if state.cancelled():
        raise Cancelled(0)
    for note in models.use_loras(uses):
        state.status(note)
    embedding_files = addons.files("embedding")
    embeddings, refused = models.usable_embeddings(embedding_files)
    for note in _refused_named(conditioning, refused):
        state.status(note)
    return loaded, PromptAddons(addons, lora_hashes, embeddings, embedding_files)


def _loras(conditioning, addons: Addons) -> tuple[list, list[str]]:
    """The LoRAs the prompt's <lora:...> tags name, as files with weights, and their "name: hash" entries.
    A tag naming no file stops the run with a sentence saying which and where they go. As in A1111, the
    negative prompt's tags are words (_refused_named says so)."""
    from .lora import LoraUse
    uses, hashes, missing, unsupported = [], [], [], []
    try:
        _, networks = prompts.extract_extra_networks(conditioning.prompt)
    except ValueError as error:
        raise SfumatoError(str(error)) from None
    for network in networks:
        if network.kind not in ("lora", "lyco"):
            unsupported.append(network.tag)
            continue
        path = addons.find("lora", network.name)
        if path is None:
            missing.append(network.name)
            continue
        uses.append(LoraUse(path, unet=network.unet_weight, text=network.text_weight))
        short = addons.short_hash("lora", path)
        if short:
            hashes.append(f"{_hash_name(network.name)}: {short}")
    if unsupported:
        raise SfumatoError(f"Sfumato does not use {', '.join(dict.fromkeys(unsupported))}: only "
                                       "<lora:...> and <lyco:...> tags. Take it out of the prompt.")
    if missing:
        names = ", ".join(dict.fromkeys(missing))
        raise SfumatoError(f"No LoRA file is named {names}. Put it in {addons.where('lora')} (or fix "
                                       "the name in the <lora:...> tag): Sfumato finds LoRAs by file name.")
    return uses, list(dict.fromkeys(hashes))


def _hash_name(name: str) -> str:
    """A name as A1111 writes it in "Lora hashes" and "TI hashes": without the ':' and ',' that separate them."""
    return name.replace(":", "").replace(",", "")


def _refused_named(conditioning, refused: dict[str, str]) -> list[str]:
    """Sentences for what the prompts name that is read as words: embeddings this model cannot use, and the
    negative prompt's <lora:...> tags (A1111 takes LoRAs from the prompt only)."""
    text = f"{conditioning.prompt}\n{conditioning.negative_prompt}".lower()
    notes = [f"{reason}: \"{name}\" was read as words." for name, reason in refused.items()
             if re.search(rf"(?<![\w]){re.escape(name.lower())}(?![\w])", text)]
    try:
        tags = [network.tag for network in prompts.extract_extra_networks(conditioning.negative_prompt)[1]]
    except ValueError:  # a weight that is not a number: words all the same
        tags = ["<lora:...>"]
    if tags:
        notes.append(f"LoRAs are taken from the prompt only, as in A1111: {', '.join(dict.fromkeys(tags))} in the "
                     "negative prompt was read as words.")
    return notes


def _params(schedule: editing.Schedule, lora_hashes: list[str], addons: Addons, embedding_files: dict[str, Path]):
    """What the run adds to the infotext, in A1111's keys and quoting of the hash lists."""
    params = schedule.params
    if lora_hashes:
        params["Lora hashes"] = ", ".join(lora_hashes)
    ti = [f"{_hash_name(name)}: {addons.short_hash('embedding', embedding_files[name])}"
          for name in schedule.embeddings_used if name in embedding_files]
    if ti:
        params["TI hashes"] = ", ".join(ti)
    return tuple(params.items())


def _check_finite(images: np.ndarray, latents, vae_dtype: torch.dtype, state: TaskState | None = None) -> np.ndarray:
    """Which pictures of the batch are numbers. A model that computes NaN (damaged weights, or numbers too
    large for half precision) would otherwise give a black picture as if it had worked: the others are kept
    and the status line says why some were dropped; NoPicture when none is left."""
    finite = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    if finite.all():
        return finite
    fix = "set the precision to fp32 (File > Settings, or --precision fp32)"
    batch = latents is not None and len(latents) == len(images)
    dropped = latents[torch.from_numpy(~finite).to(latents.device)] if batch else latents
    if vae_dtype in (torch.float16, torch.bfloat16) and dropped is not None and bool(torch.isfinite(dropped).all()):
        reason = f"its VAE's output was not a number (NaN) in half precision. To decode in full precision, {fix}."
    else:
        reason = ("its output was not a number (NaN). The model file may be damaged; if it works in other "
                  f"programs, {fix}.")
    if not finite.any():
        raise NoPicture(f"The model produced no picture: {reason}")
    if state is not None:
        state.status(f"The model produced no picture for {len(finite) - int(finite.sum())} of {len(finite)} "
                     f"images: {reason}")
    return finite


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


@contextmanager
def _lighter(pipe, sliced: bool):
    """Attention in slices and the VAE in tiles: slower, but far less memory at once. The attention stays as it
    is while IP-Adapters are in the UNet (slicing would replace their layers) and in a flow model's transformer
    (which has no sliced attention)."""
    unet = getattr(pipe, "unet", None)
    keep = unet is None or bool(reference.loaded(unet))
    if not keep:
        pipe.enable_attention_slicing("max")
    pipe.vae.enable_tiling()
    try:
        yield
    finally:  # back to the attention the model was loaded with, for the next run
        if sliced and not keep:
            pipe.enable_attention_slicing()
        elif not keep:
            pipe.disable_attention_slicing()


def _out_of_memory(request: GenerationRequest, models: ModelManager) -> OutOfMemory:
    models.release_cache()
    return OutOfMemory(
        f"The {models.device.description} ran out of memory making {request.sampling.batch_size} image(s) of "
        f"{request.width}x{request.height}, even with lighter settings. Lower the size or the batch size, "
        "or close other programs that use the graphics card."
    )


def prepare(request: GenerationRequest, traits: Traits) -> Prepared:
    """The pipeline task, inputs and finish for a resolved request, on the model's grid (8 or 16 pixels)."""
    return _on_grid(PREPARERS[request.mode](request, traits), traits.grid)


def _txt2img(request: GenerationRequest, traits: Traits) -> Prepared:
    size = {"width": request.width, "height": request.height}
    if not traits.inpaint:
        return Prepared("txt2img", size)
    grey = np.full((request.height, request.width, 3), 127, np.uint8)
    return _full_mask_inpaint(grey, 1.0, size)


def _img2img(request: GenerationRequest, traits: Traits) -> Prepared:
    image = _resize(_rgb(request.images.init), request.extent)
    strength = request.sampling.strength
    if not traits.inpaint and traits.img2img:
        inputs = {"image": Image.fromarray(image), "strength": strength}
        if families.is_flow(traits.family):  # their img2img pipelines otherwise work at the model's own size
            inputs.update(width=request.width, height=request.height)
        return Prepared("img2img", inputs)
    return _full_mask_inpaint(image, strength, {"width": request.width, "height": request.height})


def _outpaint(request: GenerationRequest, traits: Traits) -> Prepared:
    images, blur = request.images, request.inpaint.mask_blur
    filled, _, soft = inpaint.outpaint_canvas(images.init, request.outpaint, blur, images.mask)
    return _masked(filled, filled, soft, request.sampling.strength)


def _inpaint(request: GenerationRequest, traits: Traits) -> Prepared:
    original = _rgb(request.images.init)
    mask, settings, strength = request.images.mask, request.inpaint, request.sampling.strength
    if settings.area is InpaintArea.WHOLE:
        original, mask = _resize(original, request.extent), _resize(mask, request.extent)
        soft = inpaint.blur_mask(mask, settings.mask_blur)
        return _masked(original, _masked_content(settings, request.sampling.seed, original, mask), soft, strength)

    soft_full = inpaint.blur_mask(mask, settings.mask_blur)
    box = only_masked_area(mask, settings.mask_blur + settings.padding, request.extent)
    crop_image = _resize(original[box.slices], request.extent)
    crop_mask = _resize(mask[box.slices], request.extent)
    crop_soft = inpaint.blur_mask(crop_mask, settings.mask_blur)
    content = _masked_content(settings, request.sampling.seed, crop_image, crop_mask)
    prepared = _masked(crop_image, content, crop_soft, strength)
    crop_finish = prepared.finish

    def finish(generated: np.ndarray) -> np.ndarray:
        patch = _resize(crop_finish(generated), box.extent)
        return _paste_region(original, patch, soft_full, box)

    return dataclasses.replace(prepared, finish=finish, crop=box)


Preparer = Callable[[GenerationRequest, Traits], Prepared]
PREPARERS: dict[Mode, Preparer] = {
    Mode.TXT2IMG: _txt2img,
    Mode.IMG2IMG: _img2img,
    Mode.INPAINT: _inpaint,
    Mode.OUTPAINT: _outpaint,
}


def _on_grid(prepared: Prepared, multiple: int = 8) -> Prepared:
    """Pipelines work in 8x8 latent cells (16x16 for flow models): generate a picture of any size at the next
    multiple of it, crop back.

    The inputs grow on the right and bottom (inpaint.pad_to_grid) and the
    output is cut to the asked size before `finish`, so an inpaint changes
    no pixel outside its mask and the last rows and columns can be repainted.
    """
    inputs = dict(prepared.inputs)
    image = inputs.get("image")
    width, height = (inputs["width"], inputs["height"]) if "width" in inputs else image.size
    grid = Extent(width, height).multiple_of(multiple)
    if grid == (width, height):
        return prepared
    for key in ("image", "mask_image"):
        if key in inputs:
            inputs[key] = Image.fromarray(inpaint.pad_to_grid(np.asarray(inputs[key]), multiple))
    if "width" in inputs:
        inputs.update(width=grid.width, height=grid.height)
    finish = prepared.finish
    return dataclasses.replace(prepared, inputs=inputs, finish=lambda generated: finish(generated[:height, :width]),
                               shown=(width / grid.width, height / grid.height))


def _shown(preview: np.ndarray | None, shown: tuple[float, float]) -> np.ndarray | None:
    """The preview of the part that becomes the result (not the padding to the grid), so it fits the frame."""
    if preview is None or shown == (1.0, 1.0):
        return preview
    h, w = preview.shape[:2]
    return preview[:max(1, round(h * shown[1])), :max(1, round(w * shown[0]))]


def _masked(original: np.ndarray, content: np.ndarray, soft: np.ndarray, strength: float) -> Prepared:
    """Inpaint `content` under the soft mask, then paste onto `original` (exact where the mask is 0)."""
    h, w = content.shape[:2]
    inputs = {
        "image": Image.fromarray(content),
        "mask_image": Image.fromarray((soft * 255 + 0.5).astype(np.uint8)),
        "strength": strength,
        "width": w,
        "height": h,
    }
    return Prepared("inpaint", inputs, lambda generated: inpaint.paste_back(original, generated, soft))


def _full_mask_inpaint(image: np.ndarray, strength: float, size: dict) -> Prepared:
    """txt2img / img2img on a 9-channel inpainting model: repaint everything."""
    mask = np.full(image.shape[:2], 255, np.uint8)
    inputs = {"image": Image.fromarray(image), "mask_image": Image.fromarray(mask), "strength": strength, **size}
    return Prepared("inpaint", inputs)


def _masked_content(settings: InpaintSettings, seed: int, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if settings.masked_content is MaskedContent.FILL:
        return inpaint.fill_masked(image, mask)
    if settings.masked_content is MaskedContent.LATENT_NOISE:
        return inpaint.noise_masked(image, mask, seed)
    return image


def _paste_region(original: np.ndarray, patch: np.ndarray, soft: np.ndarray, box: Bounds) -> np.ndarray:
    out = original.copy()
    out[box.slices] = inpaint.paste_back(original[box.slices], patch, soft[box.slices])
    return out


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[..., :3])


def _resize(image: np.ndarray, size: Extent) -> np.ndarray:
    """`image` at `size` (Lanczos), itself when it is that size already; the control pictures' too (controlnet.py)."""
    if image.shape[1] == size.width and image.shape[0] == size.height:
        return image
    return np.asarray(Image.fromarray(image).resize(tuple(size), Image.Resampling.LANCZOS))
