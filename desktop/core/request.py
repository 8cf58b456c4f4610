"""GenerationRequest: the one object that describes a generation.

The prompt panel and the canvas build it, the worker queues it, the engine
runs it and the gallery stores it (as infotext). Images travel as numpy
arrays: `init_image` is HxWx3 (or HxWx4, where alpha 0 marks empty area to
outpaint) uint8; `mask` is HxW uint8 where 255 means "paint here".
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .errors import InvalidRequest
from .geometry import Extent, Margins
from .samplers import AUTOMATIC, SAMPLERS, split_sampler_name

MIN_SIZE, MAX_SIZE = 64, 4096
MAX_STEPS = 150
MAX_CFG = 30.0
MAX_BATCH = 16
MAX_SEED = 2**32 - 1
RANDOM_SEED = -1
MAX_PROMPT_CHARS = 20_000


class Mode(str, Enum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    OUTPAINT = "outpaint"


class MaskedContent(str, Enum):
    """What the masked area starts from (AUTOMATIC1111's "Masked content")."""

    ORIGINAL = "original"
    FILL = "fill"  # colours spread in from around the mask
    LATENT_NOISE = "latent noise"  # noise: ignore what was there


class InpaintArea(str, Enum):
    WHOLE = "whole picture"
    ONLY_MASKED = "only masked"


@dataclass(frozen=True)
class GenerationRequest:
    mode: Mode = Mode.TXT2IMG
    prompt: str = ""
    negative_prompt: str = ""
    model: str = "demo"  # a file, a diffusers folder, a Hub repo id, or "demo"
    sampler: str = "DPM++ 2M"
    schedule: str = "Karras"
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = RANDOM_SEED
    width: int = 512
    height: int = 512
    batch_size: int = 1
    strength: float = 0.75
    init_image: np.ndarray | None = field(default=None, compare=False, repr=False)
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    mask_blur: int = 4
    masked_content: MaskedContent = MaskedContent.ORIGINAL
    inpaint_area: InpaintArea = InpaintArea.WHOLE
    inpaint_padding: int = 32
    expand: Margins = Margins()

    def replace(self, **changes) -> GenerationRequest:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able values of every field but the images."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) or value is None:
                continue
            out[f.name] = value.value if isinstance(value, Enum) else list(value) if isinstance(value, Margins) else value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> GenerationRequest:
        """Inverse of to_dict; unknown keys are ignored, missing ones take defaults.

        Raises InvalidRequest for a value of the wrong kind.
        """
        known = {f.name for f in dataclasses.fields(cls)} - {"init_image", "mask"}
        values = {k: v for k, v in data.items() if k in known}
        try:
            for name, enum in (("mode", Mode), ("masked_content", MaskedContent), ("inpaint_area", InpaintArea)):
                if name in values:
                    values[name] = enum(values[name])
            if "expand" in values:
                values["expand"] = Margins(*values["expand"])
        except (ValueError, TypeError) as error:
            raise InvalidRequest(name, str(error)) from None
        return cls(**values)

    @property
    def extent(self) -> Extent:
        return Extent(self.width, self.height)

    @property
    def seeds(self) -> list[int]:
        """One seed per image of the batch: seed, seed + 1, ..., wrapping past MAX_SEED to 0 (seeds are 32-bit)."""
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.batch_size)]

    def output_extent(self) -> Extent:
        """Size of the images the run returns."""
        if self.mode is Mode.OUTPAINT and self.init_image is not None:
            h, w = self.init_image.shape[:2]
            m = self.expand
            return Extent(w + m.left + m.right, h + m.top + m.bottom)
        if self.mode is Mode.INPAINT and self.inpaint_area is InpaintArea.ONLY_MASKED and self.init_image is not None:
            h, w = self.init_image.shape[:2]
            return Extent(w, h)
        return self.extent

    def resolved(self) -> GenerationRequest:
        """Validated, with a concrete seed and normalised sampler name: what runs and is recorded."""
        self.validate()
        sampler, schedule = split_sampler_name(self.sampler, self.schedule)
        seed = self.seed if self.seed != RANDOM_SEED else random.randint(0, MAX_SEED)
        resolved = self.replace(sampler=sampler, schedule=schedule, seed=seed)
        if self.mode is Mode.OUTPAINT:
            # The new area is painted from scratch; the original is protected by the mask.
            size = resolved.output_extent()
            resolved = resolved.replace(width=size.width, height=size.height, strength=1.0)
        return resolved

    def validate(self) -> None:
        """Raise InvalidRequest naming the first bad field."""
        _check_text("prompt", self.prompt)
        _check_text("negative_prompt", self.negative_prompt)
        if not isinstance(self.mode, Mode):
            raise InvalidRequest("mode", f"must be one of {', '.join(m.value for m in Mode)}")
        if not self.model:
            raise InvalidRequest("model", "no model is selected")
        try:
            sampler, schedule = split_sampler_name(self.sampler, self.schedule)
        except ValueError as error:
            raise InvalidRequest("sampler", str(error)) from None
        if schedule != AUTOMATIC and schedule not in SAMPLERS[sampler]:
            supported = ", ".join((AUTOMATIC, *SAMPLERS[sampler]))
            raise InvalidRequest("schedule", f"{sampler} supports the schedules {supported}, not {schedule!r}")
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_number("cfg_scale", self.cfg_scale, 0.0, MAX_CFG)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        _check_number("strength", self.strength, 0.0, 1.0)
        if self.seed != RANDOM_SEED:
            _check_int("seed", self.seed, 0, MAX_SEED)
        for name in ("width", "height"):  # any size: the engine works on the 8-pixel grid and crops back
            _check_int(name, getattr(self, name), MIN_SIZE, MAX_SIZE)
        if self.mode in (Mode.IMG2IMG, Mode.INPAINT) and int(self.steps * self.strength) < 1:
            raise InvalidRequest("strength", f"{self.strength:g} x {self.steps} steps leaves no step to run; raise either")
        _check_int("mask_blur", self.mask_blur, 0, 256)
        _check_int("inpaint_padding", self.inpaint_padding, 0, 1024)
        self._validate_images()

    def _validate_images(self) -> None:
        if self.mode is Mode.TXT2IMG:
            return
        image = self.init_image
        if image is None:
            raise InvalidRequest("init_image", f"{self.mode.value} needs an input image")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise InvalidRequest("init_image", "must be an RGB or RGBA 8-bit image")
        h, w = image.shape[:2]
        if min(h, w) < 1 or max(h, w) > MAX_SIZE:
            raise InvalidRequest("init_image", f"is {w}x{h}; images up to {MAX_SIZE}x{MAX_SIZE} are supported")
        if self.mode is Mode.INPAINT:
            mask = self.mask
            if mask is None or mask.dtype != np.uint8 or mask.shape != (h, w):
                raise InvalidRequest("mask", f"inpaint needs an 8-bit mask the size of the image ({w}x{h})")
            if not mask.any():
                raise InvalidRequest("mask", "the mask is empty: paint where the image should change")
        if self.mode is Mode.OUTPAINT:
            mask = self.mask
            if mask is not None and (mask.dtype != np.uint8 or mask.shape != (h, w)):
                raise InvalidRequest("mask", f"an outpaint mask must be 8-bit and the size of the image ({w}x{h})")
            if any(not isinstance(v, int) or v < 0 for v in self.expand):
                raise InvalidRequest("expand", "margins must be whole numbers of pixels, 0 or more")
            has_empty = image.shape[2] == 4 and (image[..., 3] < 255).any()
            if self.expand.is_zero and not has_empty:
                raise InvalidRequest("expand", "outpaint needs a margin to grow into (or transparent area)")
            size = self.output_extent()
            if max(size) > MAX_SIZE:
                raise InvalidRequest("expand", f"the result would be {size.width}x{size.height}, over {MAX_SIZE}")
            if min(size) < MIN_SIZE:
                raise InvalidRequest("expand", f"the result would be {size.width}x{size.height}, under {MIN_SIZE}x"
                                               f"{MIN_SIZE}; add wider margins or start from a larger picture")


def _check_text(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise InvalidRequest(name, "must be text")
    if len(value) > MAX_PROMPT_CHARS:
        raise InvalidRequest(name, f"is {len(value)} characters long; the limit is {MAX_PROMPT_CHARS}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate: bytes that were not UTF-8, decoded with surrogateescape
        raise InvalidRequest(name, f"character {error.start + 1} is not valid text (it was not UTF-8); "
                                   "retype it or save the text as UTF-8") from None


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidRequest(name, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequest(name, f"must be between {low} and {high}, got {value}")


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or value != value:
        raise InvalidRequest(name, f"must be a number, got {value!r}")
    if not low <= value <= high:
        raise InvalidRequest(name, f"must be between {low:g} and {high:g}, got {value:g}")
