"""The face fix: find the faces of a picture and restore and/or repaint each one (desktop/core/faces.py says what
is asked).

Each face (a connected part of the painted mask, else a detected box; desktop/engine/face_detect.py) gets a square
crop with `padding` pixels of context (a face too wide or tall for a square in the picture gets a rectangle,
padded to a square with its edge pixels and cut back after), resized to the working size: 512 for the face
restorers (GFPGAN and CodeFormer take no other), the detailer's model's own size for the detailer. The faces are
found first and nothing is loaded when there is none. The face restorer, a spandrel model of purpose FaceSR
loaded like an upscaler (desktop/engine/upscale.py), restores every face; each result is resized back and shown
by `visibility` over the full-size crop, as A1111 does (visibility 0: the picture as it was). Then the face
detailer (desktop/engine/face_detail.py), when asked, repaints each face; its result replaces the face. Each
result is pasted through the face's feathered mask, so every pixel outside it stays the input's, bit for bit.
Progress is one step per face (with the detailer, its steps of each face), cancel is checked before each. No
face found leaves the picture as it was and says so in the status.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from desktop.core.backend import Result
from desktop.core.errors import Cancelled, OutOfMemory, SfumatoError
from desktop.core.faces import FaceBox, FaceSettings, crop_around, feathered, mask_parts
from desktop.core.postprocess import UpscaleRequest, with_params
from desktop.core.progress import TaskState
from desktop.core.request import RANDOM_SEED

from . import face_detect, upscale

FIXED_SIZE = {"GFPGAN": 512, "CodeFormer": 512}  # architectures made for one face size; inputs in -1..1
FACE_KEY = "Face restoration"  # A1111's infotext key
NO_FACE = ("No face was found, so the picture is unchanged; to fix its faces, open it on the canvas, paint a mask "
           "over each face and choose Image > Restore... > Fix faces with 'Only the masked faces' "
           "(sfumato restore --mask PNG).")
EMPTY_MASK = "The mask has no painted part, so the picture is unchanged; paint a mask over each face to fix them."


@dataclass(frozen=True)
class Face:
    box: FaceBox
    painted: np.ndarray | None = None  # HxW bool: this face's part of the painted mask, None for a detected face


def run(request: UpscaleRequest, state: TaskState, manager, models_folders=(), addons=None) -> list[Result]:
    """The request's picture with its faces fixed; one Result whose parameters get `Face restoration: <name>`
    (and the detailer's ADetailer keys). The faces are found before anything is loaded; every face is restored
    first, then the face restorer is let go (the detailer's checkpoint may unload it) and each face repainted."""
    request = request.validated()
    settings: FaceSettings = request.faces
    image = request.image
    rgb = np.ascontiguousarray(image[..., :3])
    faces = find(rgb, settings, models_folders)
    if not faces:
        note = EMPTY_MASK if settings.mask is not None else NO_FACE
        state.status(note)
        return [Result(image.copy(), -1, request, (), note=note)]
    seed = _seed(settings)
    out = rgb.copy()
    params: tuple[tuple[str, str], ...] = ()
    if settings.restorer:
        restorer = upscale.load(settings.restorer, manager, state, models_folders, face=True)
        for index, face in enumerate(faces):
            if state.cancelled():
                raise Cancelled(index)
            state.status(f"Restoring face {index + 1} of {len(faces)}...")
            restore_face(out, face, settings, restorer, manager)
            if settings.detailer is None:  # the detailer's own steps move the bar while it repaints
                state.step(index + 1, len(faces), None)
        params = ((FACE_KEY, restorer.name),)
        del restorer  # not held past its pass: the detailer's checkpoint may unload it
    if settings.detailer is not None:
        keys: tuple[tuple[str, str], ...] = ()
        side = _detailer_side(settings, manager, state)
        for index, face in enumerate(faces):
            if state.cancelled():
                raise Cancelled(index)
            state.status(f"Repainting face {index + 1} of {len(faces)}...")
            keys = detail_face(out, face, settings, side, (seed + index) % 2 ** 32, state, manager, addons) or keys
        # ADetailer's keys: what found the faces, the pass's, how it was pasted
        found_by = "painted mask" if settings.mask is not None else \
            face_detect.detector_name(settings.detector, models_folders)
        params += (("ADetailer model", found_by), *keys, ("ADetailer mask blur", str(settings.blur)),
                   ("ADetailer inpaint padding", str(settings.padding)))
    if image.shape[2] == 4:
        out = np.dstack([out, image[..., 3]])
    return [Result(out, seed if settings.detailer is not None else -1,
                   request.replace(parameters=with_params(request.parameters, params)), params)]


def find(rgb: np.ndarray, settings: FaceSettings, models_folders=()) -> list[Face]:
    """The painted faces when there is a mask (one per connected part), else the detector's."""
    if settings.mask is not None:
        return [Face(box, part) for box, part in mask_parts(settings.mask)]
    return [Face(box) for box in face_detect.detect(rgb, settings.detector, models_folders)]


def restore_face(out: np.ndarray, face: Face, settings: FaceSettings, restorer, manager) -> None:
    """Restore one face of `out` (HxWx3 uint8) in place: the crop worked at the restorer's size, resized back,
    shown at the visibility over the full-size crop (visibility 0: the crop as it was, bit for bit)."""
    left, top, crop, area = _region(out, face, settings)
    size = FIXED_SIZE.get(restorer.architecture, settings.restorer_side())
    restored = np.clip(np.rint(restore(restorer, _resize(_square(crop), size), manager)), 0, 255).astype(np.uint8)
    restored = _unsquare(_resize(restored, max(crop.shape[:2])), crop.shape[:2]).astype(np.float32)
    visibility = float(settings.visibility)
    shown = np.clip(np.rint(restored * visibility + crop.astype(np.float32) * (1 - visibility)), 0, 255)
    _paste(out, left, top, crop, shown, area, settings.blur)


def detail_face(out: np.ndarray, face: Face, settings: FaceSettings, size: int, seed: int, state: TaskState,
                manager, addons) -> tuple[tuple[str, str], ...]:
    """Repaint one face of `out` in place with the face detailer at `size`; its infotext keys (none when
    nothing was repainted, and then the picture is left as it is)."""
    left, top, crop, area = _region(out, face, settings)
    mask = np.asarray(Image.fromarray(_square(area)).resize((size, size), Image.NEAREST))
    repainted, params = _repaint()(settings.detailer, _resize(_square(crop), size), mask, seed, state, manager,
                                   addons)
    if params:  # the repainted face replaces the crop's (no visibility), through the feather
        fixed = _unsquare(_resize(repainted, max(crop.shape[:2])), crop.shape[:2])
        _paste(out, left, top, crop, fixed.astype(np.float32), area, settings.blur)
    return tuple(params)


def _region(out: np.ndarray, face: Face, settings: FaceSettings):
    """(left, top, the crop around the face (a view of `out`, a copy), its face area: HxW bool)."""
    height, width = out.shape[:2]
    left, top, across, down = crop_around(face.box, settings.padding, width, height)
    crop = out[top:top + down, left:left + across].copy()
    if face.painted is not None:
        area = face.painted[top:top + down, left:left + across]
    else:
        area = np.zeros((down, across), bool)
        b = face.box
        area[max(0, b.y - top):max(0, b.y + b.height - top), max(0, b.x - left):max(0, b.x + b.width - left)] = True
    return left, top, crop, area


def _paste(out: np.ndarray, left: int, top: int, crop: np.ndarray, fixed: np.ndarray, area: np.ndarray,
           blur: int) -> None:
    """`fixed` (the crop's size, float32) over `crop` in `out` through the face's feathered area; outside the
    area, the crop's pixels as they were."""
    weight = feathered(area, blur)[..., None]
    blended = np.clip(np.rint(fixed * weight + crop.astype(np.float32) * (1 - weight)), 0, 255).astype(np.uint8)
    out[top:top + crop.shape[0], left:left + crop.shape[1]] = np.where(weight > 0, blended, crop)


def _square(pixels: np.ndarray) -> np.ndarray:
    """A crop padded to a square, evenly each side (its edge pixels repeated; a mask with False)."""
    down, across = pixels.shape[:2]
    side = max(down, across)
    if down == across:
        return pixels
    pad = [((side - down) // 2, side - down - (side - down) // 2),
           ((side - across) // 2, side - across - (side - across) // 2)] + [(0, 0)] * (pixels.ndim - 2)
    return np.pad(pixels, pad, mode="constant" if pixels.dtype == bool else "edge")


def _unsquare(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The crop of `shape` back out of its _square."""
    down, across = shape
    top, left = (pixels.shape[0] - down) // 2, (pixels.shape[1] - across) // 2
    return pixels[top:top + down, left:left + across]


def _detailer_side(settings: FaceSettings, manager, state: TaskState) -> int:
    """The side the detailer works at: the resolution asked, else its model's own, read from the checkpoint it
    loads now for its pass (the pass finds it loaded)."""
    if settings.resolution:
        return settings.resolution
    info = manager.load(settings.detailer.model, state).info
    return settings.detailer_side(info.family.value, info.prediction)


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
