"""Live mode: a quick draft of the canvas frame, made again as the person paints (Krita AI Diffusion's "live").

The canvas (desktop/ui/canvas/live.py) asks for a draft after each stroke, prompt change or frame move. A draft is
the panel's request for the frame (desktop/core/frame.py decides the mode: txt2img on an empty frame, img2img of
its pixels, inpaint where a mask is painted, outpaint where part of it is empty) made fast:

- the Fast plan's sampler, schedule, steps and CFG (desktop/core/fewstep.py), with its LoRA tag added when the
  model is not a few-step one itself, and the TAESD decoder ("tiny");
- at a draft size: the frame scaled so its long side is `size` (256 on a CPU, 512 with a GPU or by choice), on the
  8-pixel grid; the picture is scaled back up to the frame when shown;
- one picture, a seed fixed for the whole live session (so drafts do not flicker between strokes), no hires fix;
- img2img at LIVE_STRENGTH, with the steps scaled up so the run makes the plan's step count (diffusers runs
  steps x strength of them); inpaint at the panel's strength, the same way.

Pure: numpy and Pillow, no Qt, no torch. The GUI thread only takes the document's snapshot (copy-on-write);
frame_draft() composites the frame and scales it, and model_plan() reads file headers: call them off the GUI thread.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import numpy as np
from PIL import Image

from . import addons, fewstep, modelfiles
from .document import DocumentSnapshot
from .fewstep import FastPlan, NoFastPath
from .generation_settings import with_lora
from .frame import frame_request
from .geometry import Bounds, Extent
from .layers import composite, mask_union
from .request import MAX_STEPS, MIN_SIZE, GenerationRequest, Images, Mode

DRAFT_SIZES = (256, 512)  # the long side of a draft: 256 keeps a CPU near a few seconds a draft
LIVE_STRENGTH = 0.5  # img2img of what is painted: keeps its shapes and colours, redraws its detail
GRID = 8

__all__ = ["DRAFT_SIZES", "LIVE_STRENGTH", "NoFastPath", "default_draft_size", "draft_extent", "draft_request",
           "frame_draft", "model_plan"]


def default_draft_size(on_gpu: bool) -> int:
    """256 on a CPU (about 4x fewer pixels than 512: a draft in a few seconds), 512 with a GPU."""
    return DRAFT_SIZES[1] if on_gpu else DRAFT_SIZES[0]


def draft_extent(frame: Extent, size: int) -> Extent:
    """The frame scaled so its long side is `size` (never larger than the frame), on the 8-pixel grid and at
    least MIN_SIZE a side."""
    scale = min(1.0, size / max(frame.width, frame.height))
    return Extent(*(max(MIN_SIZE, round(side * scale / GRID) * GRID) for side in frame))


def draft_request(full: GenerationRequest, plan: FastPlan, size: int, seed: int,
                  strength: float = LIVE_STRENGTH) -> GenerationRequest:
    """The draft of `full` (the panel's request for the frame, frame_request()) with `plan`, at draft `size`."""
    recipe = plan.recipe
    extent = draft_extent(Extent(full.width, full.height), size)
    mode = full.mode
    images = _scaled(full.images, extent)
    if mode is Mode.INPAINT and not images.mask.any():  # a thin stroke of mask scaled away: nothing to inpaint
        mode, images = Mode.IMG2IMG, Images(images.init)
    sampling = full.sampling.replace(sampler=recipe.sampler, schedule=recipe.schedule, cfg_scale=recipe.cfg_scale,
                                     seed=seed, batch_size=1, steps=recipe.steps)
    if mode is Mode.IMG2IMG:
        sampling = sampling.replace(strength=strength)
    if mode in (Mode.IMG2IMG, Mode.INPAINT):  # diffusers runs steps x strength: run the plan's count
        sampling = sampling.replace(steps=min(MAX_STEPS, math.ceil(recipe.steps / max(sampling.strength, 0.01))))
    conditioning = full.conditioning
    if plan.lora:  # the panel's Fast may have added it already, in any case or without a weight
        conditioning = conditioning.replace(prompt=with_lora(conditioning.prompt, plan.lora, recipe.lora_weight))
    return full.replace(mode=mode, width=extent.width, height=extent.height, images=images, sampling=sampling,
                        conditioning=conditioning, hires=full.hires.replace(enabled=False), decoder=plan.decoder)


def frame_draft(snapshot: DocumentSnapshot, base: GenerationRequest, plan: FastPlan, size: int, seed: int,
                strength: float = LIVE_STRENGTH) -> GenerationRequest:
    """The draft of what the snapshot's frame holds, with the panel's values `base` (see draft_request)."""
    return draft_request(frame_request(_Still(snapshot), base, snapshot.frame), plan, size, seed, strength)


class _Still:
    """What frame_request reads of a CanvasDocument, from its snapshot: only the frame's area is composited."""

    def __init__(self, snapshot: DocumentSnapshot):
        self.layers, self.extent = snapshot.layers, snapshot.extent

    def composite(self, box: Bounds) -> np.ndarray:
        out = np.zeros((box.height, box.width, 4), np.uint8)  # transparent outside the canvas, as the document's
        inside = box.clamp(self.extent)
        if not inside.is_empty:
            out[inside.translated(-box.x, -box.y).slices] = composite(self.layers, inside)
        return out

    def mask(self, box: Bounds) -> np.ndarray:
        return mask_union(self.layers, box)


def model_plan(model: str, family: str, variant: str, folders: Iterable[str | os.PathLike],
               marks: Mapping[str, str] | None = None, guidance_embedded: bool = False) -> FastPlan:
    """The Fast plan of the chosen model (its reference, family and variant; `guidance_embedded`: a full LCM
    checkpoint, CFG 8) with the few-step LoRAs of `folders`; raises NoFastPath with a sentence saying what to add. Reads the model's and the LoRAs' headers."""
    name = os.path.basename(str(model).rstrip("/\\")) if model else ""
    kind = fewstep.demo_kind(model) or _model_kind(model, name)
    loras = {}
    if family in fewstep.UNET_FAMILIES and kind not in fewstep.KINDS:  # only then may a LoRA be wanted
        for found in addons.list_addons(addons.LORA, folders):
            recognised = getattr(found, "few_step", "") or fewstep.recognise(found.name)
            loras[found.name] = fewstep.LoraInfo(recognised, str(getattr(found.family, "value", found.family)))
    return fewstep.fast_plan(family, kind, loras, model_name=name, variant=variant, marks=marks,
                             guidance_embedded=guidance_embedded)


def _model_kind(model: str, name: str) -> str:
    """What the model's file says it is (its metadata and name); from its name alone when it is not a file."""
    if model and os.path.exists(model):
        try:
            return modelfiles.identify(model).few_step or fewstep.recognise(name)
        except Exception:  # noqa: BLE001 - an unreadable file: its name may still say it
            pass
    return fewstep.recognise(name)


def _scaled(images: Images, extent: Extent) -> Images:
    """The frame's pictures at the draft's size (a mask stays 8-bit; an RGBA init keeps its see-through area)."""
    if images.init is None:
        return images
    return Images(_resize(images.init, extent), None if images.mask is None else _resize(images.mask, extent))


def _resize(image: np.ndarray, extent: Extent) -> np.ndarray:
    if image.shape[1] == extent.width and image.shape[0] == extent.height:
        return image
    return np.asarray(Image.fromarray(image).resize(tuple(extent), Image.Resampling.BILINEAR, reducing_gap=2.0))
