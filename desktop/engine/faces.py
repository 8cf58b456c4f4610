"""The face fix: find the faces of a picture and restore and/or repaint each one (desktop/core/faces.py says what
is asked).

Each face (a connected part of the painted mask, else a detected box; desktop/engine/face_detect.py) gets a square
crop with `padding` pixels of context, resized to `resolution` (512 for GFPGAN and CodeFormer, which take no
other size). The face restorer, a spandrel model of purpose FaceSR loaded like an upscaler (desktop/engine/
upscale.py), restores it and the result is blended over the crop by `visibility`; then the face detailer
(desktop/engine/face_detail.py) repaints it when one is asked for. The crop is resized back and pasted through
the face's feathered mask, so every pixel outside it stays the input's, bit for bit. Progress is one step per
face (with the detailer, its steps of each face), cancel is checked before each. No face found leaves the
picture as it was and says so in the status.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from desktop.core.backend import Result
from desktop.core.errors import Cancelled, OutOfMemory, SfumatoError
from desktop.core.faces import FaceBox, FaceSettings, feathered, mask_parts, square_around
from desktop.core.postprocess import UpscaleRequest, with_params
from desktop.core.progress import TaskState
from desktop.core.request import RANDOM_SEED

from . import face_detect, upscale

FIXED_SIZE = {"GFPGAN": 512, "CodeFormer": 512}  # architectures made for one face size; inputs in -1..1
FACE_KEY = "Face restoration"  # A1111's infotext key
NO_FACE = ("No face was found, so the picture is unchanged. Paint a mask over each face and choose "
           "'Only the masked faces' (sfumato restore --mask) to fix them.")


@dataclass(frozen=True)
class Face:
    box: FaceBox
    painted: np.ndarray | None = None  # HxW bool: this face's part of the painted mask, None for a detected face


def run(request: UpscaleRequest, state: TaskState, manager, models_folders=(), addons=None) -> list[Result]:
    """The request's picture with its faces fixed; one Result whose parameters get `Face restoration: <name>`
    (and the detailer's ADetailer keys)."""
    request = request.validated()
    settings: FaceSettings = request.faces
    image = request.image
    rgb = np.ascontiguousarray(image[..., :3])
    restorer = upscale.load(settings.restorer, manager, state, models_folders, face=True) if settings.restorer \
        else None
    faces = find(rgb, settings, models_folders)
    if not faces:
        state.status(NO_FACE)
        return [Result(image.copy(), -1, request, (), note=NO_FACE)]
    seed = _seed(settings)
    out = rgb.copy()
    params: tuple[tuple[str, str], ...] = ()
    for index, face in enumerate(faces):
        if state.cancelled():
            raise Cancelled(index)
        state.status(f"Fixing face {index + 1} of {len(faces)}...")
        params = fix(out, face, settings, restorer, (seed + index) % 2 ** 32, state, manager, addons) or params
        if settings.detailer is None:  # the detailer's own steps move the bar while it repaints
            state.step(index + 1, len(faces), None)
    if settings.detailer is not None:  # ADetailer's keys: what found the faces, the pass's, how it was pasted
        found_by = "painted mask" if settings.mask is not None else \
            face_detect.detector_name(settings.detector, models_folders)
        params = (("ADetailer model", found_by), *params, ("ADetailer mask blur", str(settings.blur)),
                  ("ADetailer inpaint padding", str(settings.padding)))
    if restorer is not None:
        params = ((FACE_KEY, restorer.name), *params)
    if image.shape[2] == 4:
        out = np.dstack([out, image[..., 3]])
    return [Result(out, seed if settings.detailer is not None else -1,
                   request.replace(parameters=with_params(request.parameters, params)), params)]


def find(rgb: np.ndarray, settings: FaceSettings, models_folders=()) -> list[Face]:
    """The painted faces when there is a mask (one per connected part), else the detector's."""
    if settings.mask is not None:
        return [Face(box, part) for box, part in mask_parts(settings.mask)]
    return [Face(box) for box in face_detect.detect(rgb, settings.detector, models_folders)]


def fix(out: np.ndarray, face: Face, settings: FaceSettings, restorer, seed: int, state: TaskState, manager,
        addons) -> tuple[tuple[str, str], ...]:
    """Fix one face of `out` (HxWx3 uint8) in place; returns the detailer's infotext keys (none without it)."""
    height, width = out.shape[:2]
    left, top, side = square_around(face.box, settings.padding, width, height)
    crop = out[top:top + side, left:left + side]
    if face.painted is not None:
        area = face.painted[top:top + side, left:left + side]
    else:
        area = np.zeros((side, side), bool)
        b = face.box
        area[max(0, b.y - top):max(0, b.y + b.height - top), max(0, b.x - left):max(0, b.x + b.width - left)] = True
    size = FIXED_SIZE.get(restorer.architecture, settings.resolution) if restorer is not None else settings.resolution
    work = _resize(crop, size)
    if restorer is not None:
        restored = restore(restorer, work, manager)
        visibility = float(settings.visibility)
        work = np.clip(np.rint(restored * visibility + work.astype(np.float32) * (1 - visibility)), 0, 255) \
            .astype(np.uint8)
    params: tuple[tuple[str, str], ...] = ()
    if settings.detailer is not None:
        repaint = _repaint()
        mask = np.asarray(Image.fromarray(area).resize((size, size), Image.NEAREST))
        work, params = repaint(settings.detailer, work, mask, seed, state, manager, addons)
    fixed = _resize(work, side).astype(np.float32)
    weight = feathered(area, settings.blur)[..., None]
    blended = np.clip(np.rint(fixed * weight + crop.astype(np.float32) * (1 - weight)), 0, 255).astype(np.uint8)
    out[top:top + side, left:left + side] = np.where(weight > 0, blended, crop)  # outside the face: the input's
    return tuple(params)


def restore(restorer: upscale.Upscaler, face: np.ndarray, manager) -> np.ndarray:
    """RxRx3 uint8 through the face restorer -> RxRx3 float32 in 0..255."""
    descriptor = restorer.model
    tensor = torch.from_numpy(np.array(face)).to(descriptor.device).permute(2, 0, 1).unsqueeze(0)
    tensor = tensor.to(restorer.dtype).div_(255.0)
    try:
        with torch.inference_mode():
            if restorer.architecture in FIXED_SIZE:  # their outputs are in -1..1, which spandrel's call clamps
                result = descriptor.model(tensor * 2 - 1)
                result = ((result[0] if isinstance(result, (tuple, list)) else result) + 1) / 2
            else:
                result = descriptor(tensor)
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not upscale._is_out_of_memory(error):
            raise
        manager.release_cache()
        raise OutOfMemory(f"The face restorer {restorer.name} ran out of memory on a {face.shape[1]}-pixel face. "
                          "Close other programs, or choose a smaller face resolution.") from None
    return result[0].clamp(0, 1).permute(1, 2, 0).float().cpu().numpy() * 255.0


def _resize(pixels: np.ndarray, side: int) -> np.ndarray:
    if pixels.shape[0] == side and pixels.shape[1] == side:
        return np.ascontiguousarray(pixels)
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((side, side), Image.LANCZOS))


def _seed(settings: FaceSettings) -> int:
    if settings.detailer is None:
        return -1
    seed = settings.detailer.sampling.seed
    return random.randrange(2 ** 32 - 1024) if seed == RANDOM_SEED else int(seed)


def _repaint():
    try:
        from .face_detail import repaint
    except ImportError:
        raise SfumatoError("The face detailer is not part of this version of Sfumato; fix the faces with a face "
                           "restorer alone.") from None
    return repaint
