"""Faces: what a face fix asks for, and the geometry of the boxes it works in (pure; no torch, no Qt).

A face fix is a postprocess job (an UpscaleRequest at scale 1 with ``restore="face"`` and ``faces`` set):

1. find the faces: a painted mask when one is given (each connected part is one face), else a detector
   (``detector``: "auto" = OpenCV's bundled Haar cascades, which need no download; or a face detector file the
   person adds, such as YuNet's ``face_detection_yunet_*.onnx`` in ``<models folder>/detectors``);
2. for each face, a square crop around it (``padding`` pixels of context; a part too wide or tall for a square
   in the picture is a rectangle padded to a square and cut back after), worked at ``resolution`` (0: the
   restorer's 512, and the detailer's model's own size, 1024 for SDXL):
   - restored by a face restorer (``restorer``: a GFPGAN or RestoreFormer file, or "demo-face"), the result
     resized back and blended over the full-size original by ``visibility`` as A1111's "GFPGAN visibility"
     does (visibility 0 gives the picture back as it was), then, once every face is restored,
   - repainted by the "face detailer" (``detailer``): an inpaint of the face at low strength with a model and
     prompt, as ADetailer does, which needs no restorer;
3. each fixed crop pasted back through a feathered mask (``blur`` pixels), so nothing outside the faces changes.

Metadata: A1111 writes ``Face restoration: GFPGAN``; the detailer writes ADetailer's keys
(``ADetailer model``, ``ADetailer denoising strength``, ``ADetailer mask blur``, ``ADetailer inpaint padding``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from desktop.core.errors import InvalidRequest

if TYPE_CHECKING:  # postprocess imports this module
    from desktop.core.postprocess import DetailSettings

FACE = "face"  # the restore kind
AUTO_DETECTOR = "auto"
DEMO_FACE_RESTORER = "demo-face"
DEMO_FACE_RESTORER_NAME = "Demo face restorer (random weights)"
DETAILER_STRENGTH = 0.4  # ADetailer's default denoising strength
RESOLUTION = 512  # the side a face crop is restored at (GFPGAN's and SD1's native size)
MODEL_RESOLUTION = 0  # FaceSettings.resolution: the restorer's 512 and the detailer's model's own size
PADDING = 32  # ADetailer's "inpaint only masked padding"
BLUR = 4  # ADetailer's mask blur


@dataclass(frozen=True)
class FaceBox:
    """A face found in a picture, in its pixels; `score` is the detector's confidence (1 for a painted one)."""

    x: int
    y: int
    width: int
    height: int
    score: float = 1.0


@dataclass(frozen=True)
class FaceSettings:
    restorer: str = ""  # a face restorer file or name, DEMO_FACE_RESTORER, or "" for none
    visibility: float = 1.0  # how much of the restored face shows over the original (0..1)
    detailer: DetailSettings | None = None  # the face detailer's inpaint pass, None for none
    detector: str = AUTO_DETECTOR  # "auto" or a face detector file
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)  # HxW bool: painted faces
    padding: int = PADDING
    blur: int = BLUR
    resolution: int = MODEL_RESOLUTION  # the side a face crop is worked at

    def replace(self, **changes) -> FaceSettings:
        return replace(self, **changes)

    def validated(self) -> FaceSettings:
        if not self.restorer and self.detailer is None:
            raise InvalidRequest("faces", "choose a face restorer, the face detailer, or both.")
        if not (0.0 <= float(self.visibility) <= 1.0):
            raise InvalidRequest("visibility", f"the visibility must be between 0 and 1, got {self.visibility}.")
        if self.detailer is not None:
            self.detailer.validated()
        if not 0 <= self.padding <= 512 or not 0 <= self.blur <= 64:
            raise InvalidRequest("padding", "the padding must be 0 to 512 pixels and the mask blur 0 to 64.")
        if self.resolution != MODEL_RESOLUTION and (not 64 <= self.resolution <= 2048 or self.resolution % 8):
            raise InvalidRequest("resolution", "the face resolution must be a multiple of 8 from 64 to 2048, or 0 "
                                               "for the model's own.")
        return self

    def restorer_side(self) -> int:
        return self.resolution or RESOLUTION

    def detailer_side(self, family: str, prediction: str | None = None) -> int:
        """The side the detailer repaints a face at: the resolution asked, else the model family's own (as
        ADetailer inpaints at the model's size): 1024 for SDXL, 768 for a v-prediction SD 2, else 512."""
        if self.resolution:
            return self.resolution
        return 1024 if family.startswith("sdxl") else 768 if family == "sd2" and prediction == "v_prediction" \
            else RESOLUTION


def crop_around(box: FaceBox, padding: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, width, height): the square around `box` with `padding` pixels of context each way, moved
    inside the picture where it fits; where the picture is too narrow or too short for it, that side is the
    picture's, so the crop is a rectangle that still covers the whole box (the fix pads it to a square)."""
    need = max(box.width, box.height) + 2 * padding
    across, down = min(need, width), min(need, height)
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    left = int(round(min(max(cx - across / 2, 0), width - across)))
    top = int(round(min(max(cy - down / 2, 0), height - down)))
    return left, top, int(across), int(down)


def feathered(mask: np.ndarray, blur: int) -> np.ndarray:
    """HxW float32 in 0..1: `mask` (bool, one face) with its edge softened over about `blur` pixels inwards, so a
    pasted crop fades into the picture and nothing outside the mask changes. The softening is at most a quarter
    of the mask's smaller side, so a small face still changes (a face under 4 pixels has a hard edge)."""
    weight = mask.astype(np.float32)
    if blur <= 0 or not mask.any():
        return weight
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    blur = min(blur, (min(rows[-1] - rows[0], cols[-1] - cols[0]) + 1) // 4)
    if blur <= 0:
        return weight
    # a box blur twice ≈ a gaussian; shrink first so the fade stays inside the mask
    soft = _erode(mask, blur).astype(np.float32)
    for _ in range(2):
        soft = _box_blur(soft, max(1, blur // 2))
    return np.minimum(soft, weight)


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], constant_values=False)
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=axis)
        out = windows.all(axis=-1)
    return out


def _box_blur(values: np.ndarray, radius: int) -> np.ndarray:
    for axis in (0, 1):
        padded = np.pad(values, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        total = np.cumsum(padded, axis=axis, dtype=np.float64)
        total = np.concatenate([np.zeros_like(np.take(total, [0], axis=axis)), total], axis=axis)
        n = 2 * radius + 1
        hi = np.take(total, np.arange(n, total.shape[axis]), axis=axis)
        lo = np.take(total, np.arange(0, total.shape[axis] - n), axis=axis)
        values = ((hi - lo) / n).astype(np.float32)
    return values


def boxes_from_mask(mask: np.ndarray) -> list[FaceBox]:
    """One FaceBox around each connected part of a painted mask (HxW bool; parts touching at a corner are one),
    left to right then top to bottom; none for an empty mask."""
    return [box for box, _ in mask_parts(mask)]


def mask_parts(mask: np.ndarray) -> list[tuple[FaceBox, np.ndarray]]:
    """(box, HxW bool of that part alone) for each connected part of a painted mask, as boxes_from_mask orders them."""
    from scipy import ndimage

    labels, _ = ndimage.label(np.asarray(mask, dtype=bool), structure=np.ones((3, 3), bool))
    parts = []
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels)):
        box = FaceBox(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        parts.append((box, labels == index + 1))
    return sorted(parts, key=lambda part: (part[0].x, part[0].y))
