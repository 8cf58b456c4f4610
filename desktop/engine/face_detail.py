"""The face detailer (ADetailer's behaviour): repaint one face crop by inpainting its face area at a low
denoising strength with a model and prompt, so a small, mushy face comes back with detail.

The crop (desktop/engine/faces.py cuts it around a face and works it at the face resolution) is already what
A1111's "inpaint only masked" would cut, so the pass is an inpaint of the whole crop through generate.run:
masked content "original" at the detailer's strength, with no mask blur of its own, so every pixel outside the
face mask is exactly the crop's and the one feather is that of the paste back (FaceSettings.blur). The
inpaint path works with an ordinary checkpoint (its latents outside the mask are kept at every step) and with
a 9-channel inpainting one alike. Progress, previews and cancel are the generation's: one bar of the pass's
steps, stopped within one step.
"""

from __future__ import annotations

import numpy as np

from desktop.core.postprocess import DetailSettings
from desktop.core.progress import TaskState
from desktop.core.request import (MAX_SEED, GenerationRequest, Images, InpaintArea, InpaintSettings, MaskedContent,
                                  Mode)

from . import generate
from .models import ModelManager

_ENGINE_KEYS = ("Lora hashes", "TI hashes")  # what of the run's params the face pass records


def repaint(settings: DetailSettings, crop: np.ndarray, mask: np.ndarray, seed: int, state: TaskState,
            models: ModelManager, addons) -> tuple[np.ndarray, tuple[tuple[str, str], ...]]:
    """`crop` (RxRx3 uint8, R a multiple of 8) with its `mask` area (RxR bool) repainted at the detailer's
    strength with `seed`, and the ADetailer keys the pass adds to the infotext. Nothing to repaint (an empty
    mask, or a strength that leaves no step) returns the crop as it is and no keys. A seed past the last one
    wraps to 0, as a batch's seeds do (a picture's faces take seed, seed + 1, ...); -1 is a random one."""
    settings = settings.validated()
    sampling = settings.sampling.replace(seed=seed % (MAX_SEED + 1) if seed >= 0 else seed, batch_size=1)
    if not mask.any() or int(sampling.steps * sampling.strength) < 1:
        return crop.copy(), ()
    side = crop.shape[0]
    request = GenerationRequest(
        mode=Mode.INPAINT, model=settings.model, width=side, height=side, sampling=sampling,
        conditioning=settings.conditioning,
        images=Images(init=np.ascontiguousarray(crop[..., :3]), mask=np.where(mask, 255, 0).astype(np.uint8)),
        inpaint=InpaintSettings(mask_blur=0, masked_content=MaskedContent.ORIGINAL, area=InpaintArea.WHOLE))
    result, = generate.run(request, state, models, addons=addons)
    return result.image, _params(settings, dict(result.params))


def _params(settings: DetailSettings, engine: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """ADetailer's keys for the pass (its model's key is the detector's, written by the caller), then the
    hashes of the LoRAs and embeddings its prompt used."""
    conditioning = settings.conditioning
    params = [("ADetailer denoising strength", f"{settings.sampling.strength:g}")]
    if conditioning.prompt:
        params.append(("ADetailer prompt", conditioning.prompt))
    if conditioning.negative_prompt:
        params.append(("ADetailer negative prompt", conditioning.negative_prompt))
    params += [(key, engine[key]) for key in _ENGINE_KEYS if key in engine]
    return tuple(params)
