"""GenerationRequest: the one object that describes a generation.

The prompt panel and the canvas build it, the worker queues it, the engine
runs it and the gallery stores it (as infotext). It is frozen and made of
frozen parts, each checking its own fields: `sampling` (Sampling),
`conditioning` (Conditioning: what the prompt encoding depends on, hashable),
`images` (Images: numpy arrays, `init` HxWx3 or HxWx4 uint8 where alpha 0
marks empty area to outpaint, `mask` HxW uint8 where 255 means "paint
here"), `inpaint` (InpaintSettings), `outpaint` (the Margins an outpaint
grows by) and `hires` (Hires: text to image's hires fix), beside `mode`,
`model`, `width` and `height`. Change a field with
`request.replace(sampling=request.sampling.replace(steps=30))`.

`to_dict` writes one nested dict per part (no images); `from_dict` reads it
and the flat dict of version 1 (FLAT_FIELDS), which pictures saved before
carry in their `sfumato` chunk. InvalidRequest names a field by its version 1
name ("init_image", "expand", "inpaint_padding", ...), as people know them.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from .control import MAX_CONTROLS, Control, Reference
from .errors import InvalidRequest
from .geometry import Extent, Margins
from .samplers import AUTOMATIC, SAMPLERS, split_sampler_name
from .prompts import DEFAULT_EMPHASIS, EMPHASIS_MODES

MIN_SIZE, MAX_SIZE = 64, 4096
MAX_STEPS = 150
MAX_CFG = 30.0
MAX_SHIFT = 20.0
MAX_BATCH = 16
MAX_SEED = 2**32 - 1
RANDOM_SEED = -1
MAX_PROMPT_CHARS = 20_000
# How the final latents become pixels: "full" the model's own VAE; "tiny" the TAESD decoder (models/taesd,
# taesdxl, ...), about 10x faster and a little softer: for drafts and live mode (desktop/core/fewstep.py)
DECODERS = ("full", "tiny")


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


MAX_CLIP_SKIP = 12  # A1111's slider: 1 (no layer skipped) to 12


@dataclass(frozen=True)
class Sampling:
    """How the noise is drawn and denoised. `strength` is the denoising strength of img2img and inpaint."""

    sampler: str = "DPM++ 2M"
    schedule: str = "Karras"
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = RANDOM_SEED
    batch_size: int = 1
    strength: float = 0.75
    # flow-matching families only (desktop/core/families.py); SD 1.x/2.x/SDXL ignore them
    shift: float = 0.0  # the noise schedule's shift; 0: the model's own (dynamic shifting where it has it)
    distilled_cfg: float = 3.5  # the guidance a guidance-distilled model takes (FLUX.1 dev: Forge's "Distilled CFG Scale")

    def replace(self, **changes) -> Sampling:
        return dataclasses.replace(self, **changes)

    @property
    def seeds(self) -> list[int]:
        """One seed per image of the batch: seed, seed + 1, ..., wrapping past MAX_SEED to 0 (seeds are 32-bit)."""
        return [(self.seed + i) % (MAX_SEED + 1) for i in range(self.batch_size)]

    def validate(self) -> None:
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
        _check_number("shift", self.shift, 0.0, MAX_SHIFT)
        _check_number("distilled_cfg", self.distilled_cfg, 0.0, MAX_CFG)
        if self.seed != RANDOM_SEED:
            _check_int("seed", self.seed, 0, MAX_SEED)


@dataclass(frozen=True)
class Conditioning:
    """What the picture is asked to be: everything that goes into the prompt encoding (and its cache key).

    `clip_skip` is A1111's "Clip skip": 1 uses the text encoder's last layer, 2 the one before it, ...
    `emphasis` is A1111's emphasis mode (desktop/core/prompts.py EMPHASIS_MODES): how (word:1.2) weights apply.
    The prompts may hold A1111's syntax: emphasis, BREAK, <lora:name:weight> tags, embedding names.
    """

    prompt: str = ""
    negative_prompt: str = ""
    clip_skip: int = 1
    emphasis: str = DEFAULT_EMPHASIS

    def replace(self, **changes) -> Conditioning:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        _check_text("prompt", self.prompt)
        _check_text("negative_prompt", self.negative_prompt)
        _check_int("clip_skip", self.clip_skip, 1, MAX_CLIP_SKIP)
        if self.emphasis not in EMPHASIS_MODES:
            raise InvalidRequest("emphasis", f"must be one of {', '.join(EMPHASIS_MODES)}, got {self.emphasis!r}")


@dataclass(frozen=True)
class Images:
    """The pictures a run starts from: `init` HxWx3 or HxWx4 uint8 (alpha 0: area to outpaint), `mask` HxW
    uint8 (255: paint here). None for txt2img. Never compared, written or hashed."""

    init: np.ndarray | None = field(default=None, compare=False, repr=False)
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)

    def replace(self, **changes) -> Images:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class InpaintSettings:
    """AUTOMATIC1111's inpaint controls: mask blur, masked content, inpaint area and its padding."""

    mask_blur: int = 4
    masked_content: MaskedContent = MaskedContent.ORIGINAL
    area: InpaintArea = InpaintArea.WHOLE
    padding: int = 32

    def replace(self, **changes) -> InpaintSettings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        _check_int("mask_blur", self.mask_blur, 0, 256)
        _check_int("inpaint_padding", self.padding, 0, 1024)


#: AUTOMATIC1111's hires-fix upscalers: "Latent ..." resize the first pass's latents (torch interpolation modes),
#: the others its decoded picture (Pillow). Model upscalers join them: "Demo upscaler" (the built-in x4 one) and
#: any upscaler file named by its name (its stem, as the upscaler folders list it) or path: the model at its
#: native scale, then Lanczos to the hires size, as A1111 does.
LATENT_UPSCALERS = ("Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
                    "Latent (nearest)", "Latent (nearest-exact)")
DEMO_HIRES_UPSCALER = "Demo upscaler"
HIRES_UPSCALERS = (*LATENT_UPSCALERS, "Lanczos", "Nearest", DEMO_HIRES_UPSCALER)


def is_hires_upscaler(name: object) -> bool:
    """One of HIRES_UPSCALERS, or what can name an upscaler file: one line with no commas (infotext-safe)."""
    if name in HIRES_UPSCALERS:
        return True
    return isinstance(name, str) and 0 < len(name) <= 1024 and name.strip() == name \
        and not any(c in name for c in ",\n\r")
MAX_HIRES_SCALE = 4.0


@dataclass(frozen=True)
class Hires:
    """AUTOMATIC1111's "Hires. fix" for text to image, with its defaults: a first pass at the request's size,
    the upscale, then an img2img pass at the upscaled size with `denoise` as its denoising strength.

    The size is `scale` x the first pass's, or `resize_width` x `resize_height` when either is set (0 follows
    the other side's aspect ratio; both set: the upscale covers that size and is cut to it at the centre).
    `steps` 0 runs the second pass with the first pass's step count.
    """

    enabled: bool = False
    upscaler: str = "Latent"
    scale: float = 2.0
    steps: int = 0
    denoise: float = 0.7
    resize_width: int = 0
    resize_height: int = 0

    def replace(self, **changes) -> Hires:
        return dataclasses.replace(self, **changes)

    @property
    def by_size(self) -> bool:
        return bool(self.resize_width or self.resize_height)

    def upscaled(self, width: int, height: int) -> Extent:
        """The size the first pass's picture is upscaled to, before any cut to the resize size (A1111's rule)."""
        rw, rh = self.resize_width, self.resize_height
        if not self.by_size:
            return Extent(int(width * self.scale), int(height * self.scale))
        if not rh:
            return Extent(rw, rw * height // width)
        if not rw:
            return Extent(rh * width // height, rh)
        if width / height < rw / rh:
            return Extent(rw, rw * height // width)
        return Extent(rh * width // height, rh)

    def target(self, width: int, height: int) -> Extent:
        """The size of the final picture."""
        upscaled = self.upscaled(width, height)
        return Extent(self.resize_width or upscaled.width, self.resize_height or upscaled.height)

    def validate(self, width: int, height: int) -> None:
        if not is_hires_upscaler(self.upscaler):
            raise InvalidRequest("hires_upscaler", f"must be one of {', '.join(HIRES_UPSCALERS)} or the name of an "
                                                   f"upscaler file, got {self.upscaler!r}")
        _check_number("hires_scale", self.scale, 1.0, MAX_HIRES_SCALE)
        _check_int("hires_steps", self.steps, 0, MAX_STEPS)
        _check_number("hires_denoise", self.denoise, 0.0, 1.0)
        if self.denoise == 0:
            raise InvalidRequest("hires_denoise", "0 would leave the upscaled picture as it is; "
                                                  "raise it (0.7 is typical, under 0.5 latent upscales blur)")
        for name in ("resize_width", "resize_height"):
            _check_int(f"hires_{name}", getattr(self, name), 0, MAX_SIZE)
        size = self.upscaled(width, height)
        name = "hires_resize" if self.by_size else "hires_scale"
        if min(size) < MIN_SIZE or max(size) > MAX_SIZE:
            raise InvalidRequest(name, f"the hires fix would make {size.width}x{size.height} pictures; "
                                       f"sizes from {MIN_SIZE} to {MAX_SIZE} pixels work")


_PARTS = {"sampling": Sampling, "conditioning": Conditioning, "inpaint": InpaintSettings, "hires": Hires}
_ENUMS = {("top", "mode"): Mode, ("inpaint", "masked_content"): MaskedContent, ("inpaint", "area"): InpaintArea}

#: The flat fields of a version 1 request dict (pictures saved before the request had parts) -> (part, field).
FLAT_FIELDS = {
    **{name: ("sampling", name) for name in ("sampler", "schedule", "steps", "cfg_scale", "seed", "batch_size",
                                             "strength")},
    **{name: ("conditioning", name) for name in ("prompt", "negative_prompt", "clip_skip", "emphasis")},
    "init_image": ("images", "init"), "mask": ("images", "mask"),
    "mask_blur": ("inpaint", "mask_blur"), "masked_content": ("inpaint", "masked_content"),
    "inpaint_area": ("inpaint", "area"), "inpaint_padding": ("inpaint", "padding"),
    "expand": ("outpaint", None),
}


@dataclass(frozen=True)
class GenerationRequest:
    mode: Mode = Mode.TXT2IMG
    model: str = "demo"  # a file, a diffusers folder, a Hub repo id, or "demo"
    width: int = 512
    height: int = 512
    sampling: Sampling = Sampling()
    conditioning: Conditioning = Conditioning()
    images: Images = Images()
    inpaint: InpaintSettings = InpaintSettings()
    outpaint: Margins = Margins()  # the margins an outpaint grows by
    hires: Hires = Hires()  # text to image only: resolved() turns it off for the other modes
    controls: tuple[Control, ...] = ()  # ControlNet guidance (desktop/core/control.py); pictures never written
    references: tuple[Reference, ...] = ()  # IP-Adapter reference pictures
    decoder: str = "full"  # DECODERS: "tiny" decodes the picture with TAESD (infotext "Decoder: TAESD")

    def replace(self, **changes) -> GenerationRequest:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able values of every field but the images: one nested dict per part."""
        out: dict = {"mode": self.mode.value, "model": self.model, "width": self.width, "height": self.height,
                     "decoder": self.decoder}
        for name in _PARTS:
            part = getattr(self, name)
            out[name] = {f.name: _plain(getattr(part, f.name)) for f in dataclasses.fields(part)}
        out["outpaint"] = list(self.outpaint)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> GenerationRequest:
        """Inverse of to_dict; also reads the flat dict of version 1 (FLAT_FIELDS). Unknown keys are ignored,
        missing ones take defaults. Raises InvalidRequest for a value of the wrong kind."""
        if not isinstance(data, dict):
            raise InvalidRequest("request", f"must be a dict of fields, got {type(data).__name__}")
        data = nested(data)
        top = {k: data[k] for k in ("mode", "model", "width", "height", "decoder") if k in data}
        name = "mode"
        try:
            if "mode" in top:
                top["mode"] = Mode(top["mode"])
            for part_name, part_cls in _PARTS.items():
                values = data.get(part_name, {})
                if not isinstance(values, dict):
                    raise InvalidRequest(part_name, f"must be a dict of fields, got {type(values).__name__}")
                known = {f.name for f in dataclasses.fields(part_cls)}
                values = {k: v for k, v in values.items() if k in known}
                for (owner, field_name), enum in _ENUMS.items():
                    if owner == part_name and field_name in values:
                        name = {"area": "inpaint_area"}.get(field_name, field_name)
                        values[field_name] = enum(values[field_name])
                top[part_name] = part_cls(**values)
            if "outpaint" in data:
                name = "expand"
                top["outpaint"] = Margins(*data["outpaint"])
        except (ValueError, TypeError) as error:
            if isinstance(error, InvalidRequest):
                raise
            raise InvalidRequest(name, str(error)) from None
        return cls(**top)

    @property
    def extent(self) -> Extent:
        return Extent(self.width, self.height)

    def output_extent(self) -> Extent:
        """Size of the images the run returns."""
        init = self.images.init
        if self.mode is Mode.OUTPAINT and init is not None:
            h, w = init.shape[:2]
            m = self.outpaint
            return Extent(w + m.left + m.right, h + m.top + m.bottom)
        if self.mode is Mode.INPAINT and self.inpaint.area is InpaintArea.ONLY_MASKED and init is not None:
            h, w = init.shape[:2]
            return Extent(w, h)
        if self.mode is Mode.TXT2IMG and self.hires.enabled:
            return self.hires.target(self.width, self.height)
        return self.extent

    def resolved(self) -> GenerationRequest:
        """Validated, with a concrete seed and normalised sampler name: what runs and is recorded."""
        self.validate()
        sampling = self.sampling
        sampler, schedule = split_sampler_name(sampling.sampler, sampling.schedule)
        seed = sampling.seed if sampling.seed != RANDOM_SEED else random.randint(0, MAX_SEED)
        resolved = self.replace(sampling=sampling.replace(sampler=sampler, schedule=schedule, seed=seed))
        if self.hires.enabled and self.mode is not Mode.TXT2IMG:  # hires fix is text to image's second pass
            resolved = resolved.replace(hires=self.hires.replace(enabled=False))
        if self.mode is Mode.OUTPAINT:
            # The new area is painted from scratch; the original is protected by the mask.
            size = resolved.output_extent()
            resolved = resolved.replace(width=size.width, height=size.height,
                                        sampling=resolved.sampling.replace(strength=1.0))
        return resolved

    def validate(self) -> None:
        """Raise InvalidRequest naming the first bad field."""
        for name, kind in (("conditioning", Conditioning), ("sampling", Sampling), ("images", Images),
                           ("inpaint", InpaintSettings), ("outpaint", Margins), ("hires", Hires)):
            if not isinstance(getattr(self, name), kind):
                raise InvalidRequest(name, f"must be a {kind.__name__}, got {type(getattr(self, name)).__name__}")
        self.conditioning.validate()
        if not isinstance(self.mode, Mode):
            raise InvalidRequest("mode", f"must be one of {', '.join(m.value for m in Mode)}")
        if not self.model:
            raise InvalidRequest("model", "no model is selected")
        if self.decoder not in DECODERS:
            raise InvalidRequest("decoder", f"must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        self.sampling.validate()
        for name in ("width", "height"):  # any size: the engine works on the 8-pixel grid and crops back
            _check_int(name, getattr(self, name), MIN_SIZE, MAX_SIZE)
        steps, strength = self.sampling.steps, self.sampling.strength
        if self.mode in (Mode.IMG2IMG, Mode.INPAINT) and int(steps * strength) < 1:
            raise InvalidRequest("strength", f"{strength:g} x {steps} steps leaves no step to run; raise either")
        self.inpaint.validate()
        if not isinstance(self.hires.enabled, bool):
            raise InvalidRequest("hires", f"enabled must be true or false, got {self.hires.enabled!r}")
        if self.hires.enabled and self.mode is Mode.TXT2IMG:
            self.hires.validate(self.width, self.height)
        self._validate_images()
        for what, items, kind in (("control", self.controls, Control), ("reference", self.references, Reference)):
            if not isinstance(items, tuple) or not all(isinstance(item, kind) for item in items):
                raise InvalidRequest(what, f"the {what}s must be a tuple of {kind.__name__}")
            if len(items) > MAX_CONTROLS:
                words = "control layers" if what == "control" else "reference pictures"
                raise InvalidRequest(what, f"at most {MAX_CONTROLS} {words} work at once, and {len(items)} are in "
                                           f"use: hide or remove {len(items) - MAX_CONTROLS} of them.")
            for index, item in enumerate(items):
                item.validate(index)

    def _validate_images(self) -> None:
        if self.mode is Mode.TXT2IMG:
            return
        image = self.images.init
        if image is None:
            raise InvalidRequest("init_image", f"{self.mode.value} needs an input image")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] > 4 \
                or image.shape[2] < 3:
            raise InvalidRequest("init_image", "must be an RGB or RGBA 8-bit image")
        h, w = image.shape[:2]
        if min(h, w) < 1 or max(h, w) > MAX_SIZE:
            raise InvalidRequest("init_image", f"is {w}x{h}; images up to {MAX_SIZE}x{MAX_SIZE} are supported")
        mask = self.images.mask
        if mask is not None and not isinstance(mask, np.ndarray):
            raise InvalidRequest("mask", f"must be an 8-bit mask the size of the image ({w}x{h})")
        if self.mode is Mode.INPAINT:
            if mask is None or mask.dtype != np.uint8 or mask.shape != (h, w):
                raise InvalidRequest("mask", f"inpaint needs an 8-bit mask the size of the image ({w}x{h})")
            if not mask.any():
                raise InvalidRequest("mask", "the mask is empty: paint where the image should change")
        if self.mode is Mode.OUTPAINT:
            if mask is not None and (mask.dtype != np.uint8 or mask.shape != (h, w)):
                raise InvalidRequest("mask", f"an outpaint mask must be 8-bit and the size of the image ({w}x{h})")
            if any(not isinstance(v, int) or v < 0 for v in self.outpaint):
                raise InvalidRequest("expand", "margins must be whole numbers of pixels, 0 or more")
            has_empty = image.shape[2] == 4 and (image[..., 3] < 255).any()
            if self.outpaint.is_zero and not has_empty:
                raise InvalidRequest("expand", "outpaint needs a margin to grow into (or transparent area)")
            size = self.output_extent()
            if max(size) > MAX_SIZE:
                raise InvalidRequest("expand", f"the result would be {size.width}x{size.height}, over {MAX_SIZE}")
            if min(size) < MIN_SIZE:
                raise InvalidRequest("expand", f"the result would be {size.width}x{size.height}, under {MIN_SIZE}x"
                                               f"{MIN_SIZE}; add wider margins or start from a larger picture")


def nested(data: dict) -> dict:
    """A request dict in the nested form of to_dict, from either form. Never raises; values are not checked.

    Version 1 (flat, FLAT_FIELDS) keys fill in what the parts do not hold; images are dropped.
    """
    out = {key: value for key, value in data.items() if key not in FLAT_FIELDS}
    for key, (part, name) in FLAT_FIELDS.items():
        if key not in data or part == "images":
            continue
        if part == "outpaint":
            out.setdefault("outpaint", data[key])
            continue
        values = out.get(part)
        if values is None:
            values = out[part] = {}
        if isinstance(values, dict):
            out[part] = values = dict(values)
            values.setdefault(name, data[key])
    return out


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


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
