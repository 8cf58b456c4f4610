"""GenerationSettings: what the prompt panel edits, as a plain evented model.

Each value is a field declared once below, with its kind and range; the
panel binds one widget to each field (desktop/ui/binding.py) and takes the
widget's range from the field. A setter validates, does nothing when the
value is unchanged, then emits `changed(name, value)` (as the canvas
document does). Adding a control is one field here, one bound widget there,
and its line in `to_request()` / `apply()`.

`to_request()` and `apply(request)` are the only places that build or read
a GenerationRequest from these values: when the request changes shape, they
are what changes.

The rules between fields live here too: a sampler that does not support the
schedule sets the schedule to Automatic; with the aspect ratio locked,
setting the width sets the height to match (and the other way round).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import contextmanager
from enum import Enum

from . import families
from .errors import InvalidRequest
from .events import Event
from .request import (
    DECODERS,
    HIRES_UPSCALERS,
    is_hires_upscaler,
    MAX_BATCH,
    MAX_CFG,
    MAX_CLIP_SKIP,
    MAX_HIRES_SCALE,
    MAX_SEED,
    MAX_SHIFT,
    MAX_SIZE,
    MAX_STEPS,
    MIN_SIZE,
    RANDOM_SEED,
    Conditioning,
    GenerationRequest,
    Hires,
    InpaintArea,
    InpaintSettings,
    MaskedContent,
    Sampling,
)
from .prompts import DEFAULT_EMPHASIS, EMPHASIS_MODES
from .samplers import AUTOMATIC, DEFAULT_SAMPLER, SAMPLERS, SCHEDULES, split_sampler_name

MAX_BATCH_COUNT = 100


class Field:
    """One setting: a default and a check that returns the value to store or raises InvalidRequest."""

    def __init__(self, default: object, check: Callable[[str, object], object], low=None, high=None,
                 decimals: int = 0):
        self.default, self.check, self.low, self.high = default, check, low, high
        self.decimals = decimals  # a number is kept to as many decimals as its box shows
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, settings: GenerationSettings | None, owner: type):
        return self if settings is None else settings._values[self.name]

    def __set__(self, settings: GenerationSettings, value: object) -> None:
        settings.set(self.name, value)

    def clamp(self, value: object) -> object:
        """The nearest value in range (what a spin box does with a number past its ends)."""
        if self.low is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return value
        return type(self.default)(min(self.high, max(self.low, value)))


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(name, f"must be text, got {value!r}")
    return value


def _whole(low: int, high: int) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        if isinstance(value, float) and value.is_integer():  # a double spin box (the seed) gives 42.0
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(name, f"must be a whole number, got {value!r}")
        if not low <= value <= high:
            raise InvalidRequest(name, f"must be between {low} and {high}, got {value}")
        return value

    return check


def _number(low: float, high: float, decimals: int) -> Callable[[str, object], float]:
    def check(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise InvalidRequest(name, f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise InvalidRequest(name, f"must be between {low:g} and {high:g}, got {value:g}")
        return round(float(value), decimals)  # what the box shows is what runs

    return check


def _choice(kind: type[Enum]) -> Callable[[str, object], Enum]:
    def check(name: str, value: object) -> Enum:
        try:
            return kind(value)  # Qt hands str-enums back as str
        except ValueError:
            raise InvalidRequest(name, f"must be one of {', '.join(v.value for v in kind)}, got {value!r}") from None

    return check


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(name, f"must be true or false, got {value!r}")
    return value


def _model(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(name, "no model is selected")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        if value not in choices:
            raise InvalidRequest(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def _hires_upscaler(name: str, value: object) -> str:
    if not is_hires_upscaler(value):
        raise InvalidRequest(name, f"must be one of {', '.join(HIRES_UPSCALERS)} or the name of an upscaler file, "
                                   f"got {value!r}")
    return value


def _sampler(name: str, value: object) -> str:
    if value not in SAMPLERS:
        raise InvalidRequest(name, f"must be one of {', '.join(SAMPLERS)}, got {value!r}")
    return value


def _schedule(name: str, value: object) -> str:
    if value not in SCHEDULES:
        raise InvalidRequest(name, f"must be one of {', '.join(SCHEDULES)}, got {value!r}")
    return value


def _ranged(default, check_for, low, high) -> Field:
    return Field(default, check_for(low, high), low, high)


def has_lora(prompt: str, name: str) -> bool:
    """Whether `prompt` has a <lora:name> or <lora:name:weight> tag for the LoRA `name` (any case, as A1111 reads)."""
    return re.search(rf"<lora:{re.escape(name)}(?::[^>]*)?>", prompt, re.IGNORECASE) is not None


def with_lora(prompt: str, name: str, weight: float) -> str:
    """`prompt` with <lora:name:weight> at its end, after ", "; as it is when it already names that LoRA."""
    if has_lora(prompt, name):
        return prompt
    prompt = prompt.rstrip()
    lead = "" if not prompt else " " if prompt.endswith(",") else ", "
    return f"{prompt}{lead}<lora:{name}:{weight:g}>"


def without_lora(prompt: str, name: str) -> str:
    """`prompt` without its tags of the LoRA `name` (any case, any weight) and the ", " that led to each."""
    return re.sub(rf"(?:,\s*|\s+)?<lora:{re.escape(name)}(?::[^>]*)?>", "", prompt, flags=re.IGNORECASE).strip()


def supported_schedules(sampler: str) -> tuple[str, ...]:
    """The schedules a sampler can run: Automatic and the ones it lists."""
    return (AUTOMATIC, *SAMPLERS.get(sampler, ()))


class GenerationSettings:
    """Events:
    changed(name, value): a field took a new value (once per field that changed).
    size_changed(width, height): the size changed, once per change however many sides moved (the canvas
        frame follows it; a frame that already has that size ignores it, so frame and settings never loop).
    """

    prompt = Field("", _text)
    negative_prompt = Field("", _text)
    model = Field("demo", _model)  # a file, a diffusers folder, a Hub repo id, or "demo"
    sampler = Field(DEFAULT_SAMPLER, _sampler)
    schedule = Field("Karras", _schedule)
    steps = _ranged(20, _whole, 1, MAX_STEPS)
    cfg_scale = Field(7.0, _number(0.0, MAX_CFG, 2), 0.0, MAX_CFG, decimals=2)  # 7.25 shows as 7.25
    # flow-matching families only (desktop/core/families.py): 0 is "Automatic", the model's own schedule
    shift = Field(0.0, _number(0.0, MAX_SHIFT, 2), 0.0, MAX_SHIFT, decimals=2)
    distilled_cfg = Field(3.5, _number(0.0, MAX_CFG, 1), 0.0, MAX_CFG, decimals=1)  # Forge's "Distilled CFG Scale"
    seed = _ranged(RANDOM_SEED, _whole, RANDOM_SEED, MAX_SEED)
    width = _ranged(512, _whole, MIN_SIZE, MAX_SIZE)
    height = _ranged(512, _whole, MIN_SIZE, MAX_SIZE)
    aspect_locked = Field(False, _flag)
    clip_skip = _ranged(1, _whole, 1, MAX_CLIP_SKIP)  # A1111's "Clip skip": 1 uses the text encoder's last layer
    emphasis = Field(DEFAULT_EMPHASIS, _one_of(EMPHASIS_MODES))  # A1111's emphasis mode for (word:1.2)
    batch_size = _ranged(1, _whole, 1, MAX_BATCH)
    batch_count = _ranged(1, _whole, 1, MAX_BATCH_COUNT)  # runs queued one after another; not in the request
    strength = Field(0.75, _number(0.0, 1.0, 3), 0.0, 1.0, decimals=3)
    mask_blur = _ranged(4, _whole, 0, 64)
    masked_content = Field(MaskedContent.ORIGINAL, _choice(MaskedContent))
    inpaint_area = Field(InpaintArea.WHOLE, _choice(InpaintArea))
    inpaint_padding = _ranged(32, _whole, 0, 256)
    hires_enabled = Field(False, _flag)  # A1111's "Hires. fix" (text to image): the Hires part of the request
    hires_upscaler = Field("Latent", _hires_upscaler)
    hires_scale = Field(2.0, _number(1.0, MAX_HIRES_SCALE, 2), 1.0, MAX_HIRES_SCALE, decimals=2)
    hires_steps = _ranged(0, _whole, 0, MAX_STEPS)  # 0: as many as the first pass
    hires_denoise = Field(0.7, _number(0.01, 1.0, 2), 0.01, 1.0, decimals=2)
    hires_resize_width = _ranged(0, _whole, 0, MAX_SIZE)  # 0 and 0: "Upscale by" sets the size
    hires_resize_height = _ranged(0, _whole, 0, MAX_SIZE)
    decoder = Field("full", _one_of(DECODERS))  # "tiny": the picture is decoded by TAESD ("Fast decode")

    #: The values each model family (and variant) has its own of: what switching to another one sets (recommend),
    #: and what the panel keeps of each while another is chosen, in the order they are set back.
    FAMILY_FIELDS = ("steps", "cfg_scale", "sampler", "schedule", "distilled_cfg", "shift", "clip_skip", "emphasis",
                     "hires_enabled")

    def __init__(self) -> None:
        self.changed = Event()
        self.size_changed = Event()
        self._sizing = 0  # nested size changes: size_changed is emitted when the outermost one ends
        self._values = {name: f.default for name, f in self.fields().items()}
        self._aspect = 1.0  # width / height when the lock was set

    @classmethod
    def fields(cls) -> dict[str, Field]:
        return {name: value for name, value in vars(cls).items() if isinstance(value, Field)}

    @classmethod
    def field(cls, name: str) -> Field:
        return cls.fields()[name]

    def get(self, name: str) -> object:
        return self._values[name]

    def set(self, name: str, value: object) -> None:
        """Validate (InvalidRequest names the field), do nothing if unchanged, store, emit, then follow the rules."""
        value = self.field(name).check(name, value)
        if name == "schedule" and value not in supported_schedules(self.sampler):
            raise InvalidRequest(name, f"{self.sampler} supports the schedules "
                                       f"{', '.join(supported_schedules(self.sampler))}, not {value!r}")
        if self._values[name] == value:
            return
        if name in ("width", "height"):
            with self._one_size_change():
                self._store(name, value)
                if self.aspect_locked:
                    other = "height" if name == "width" else "width"
                    target = value / self._aspect if name == "width" else value * self._aspect
                    with self._unlocked():  # no ping-pong between the sides
                        self.set(other, self.field(other).clamp(round(target)))
            return
        self._store(name, value)
        if name == "sampler" and self.schedule not in supported_schedules(value):
            self.set("schedule", AUTOMATIC)
        elif name == "aspect_locked" and value:
            self._aspect = self.width / self.height

    def _store(self, name: str, value: object) -> None:
        self._values[name] = value
        self.changed.emit(name, value)

    def set_size(self, width: int, height: int) -> None:
        """Both sides at once, as given (the frame's size, a preset): a locked aspect ratio becomes the new one."""
        with self._one_size_change(), self._unlocked():
            self.width, self.height = width, height
        if self.aspect_locked:
            self._aspect = self.width / self.height

    @contextmanager
    def _one_size_change(self):
        before = (self.width, self.height)
        self._sizing += 1
        try:
            yield
        finally:
            self._sizing -= 1
            if not self._sizing and (self.width, self.height) != before:
                self.size_changed.emit(self.width, self.height)

    @contextmanager
    def _unlocked(self):
        locked, self._values["aspect_locked"] = self._values["aspect_locked"], False
        try:
            yield
        finally:
            self._values["aspect_locked"] = locked

    # -- the request: the only two places that know its shape ------------------------------------

    def to_request(self) -> GenerationRequest:
        """The request these values describe (a text-to-image one: the canvas frame sets mode and images)."""
        return GenerationRequest(
            model=self.model,
            width=self.width,
            height=self.height,
            sampling=Sampling(sampler=self.sampler, schedule=self.schedule, steps=self.steps, cfg_scale=self.cfg_scale,
                              seed=self.seed, batch_size=self.batch_size, strength=self.strength, shift=self.shift,
                              distilled_cfg=self.distilled_cfg),
            conditioning=Conditioning(prompt=self.prompt, negative_prompt=self.negative_prompt,
                                      clip_skip=self.clip_skip, emphasis=self.emphasis),
            inpaint=InpaintSettings(mask_blur=self.mask_blur, masked_content=self.masked_content,
                                    area=self.inpaint_area, padding=self.inpaint_padding),
            hires=Hires(enabled=self.hires_enabled, upscaler=self.hires_upscaler, scale=self.hires_scale,
                        steps=self.hires_steps, denoise=self.hires_denoise, resize_width=self.hires_resize_width,
                        resize_height=self.hires_resize_height),
            decoder=self.decoder,
        )

    def apply(self, request: GenerationRequest) -> None:
        """Take a request's values ("Use all parameters", the last session), as near as the fields allow.

        The model stays as chosen (a picture's model may not be here); a legacy combined sampler name
        ("DPM++ 2M Karras") is split into sampler and schedule, an unknown sampler becomes the default
        one, a schedule the sampler does not support becomes Automatic, a seed out of range becomes
        Random, and numbers past a field's range are brought to its end. A value of the wrong kind
        (a settings file edited by hand) is skipped: that field keeps its value. The size is taken as
        given, whatever the aspect lock.
        """
        sampling, conditioning, inpaint = request.sampling, request.conditioning, request.inpaint
        try:
            sampler, schedule = split_sampler_name(sampling.sampler, sampling.schedule)
        except (ValueError, AttributeError):
            sampler, schedule = DEFAULT_SAMPLER, sampling.schedule
        self.sampler = sampler
        self._take("schedule", schedule if schedule in supported_schedules(sampler) else AUTOMATIC)
        seed = sampling.seed
        in_range = isinstance(seed, int) and not isinstance(seed, bool) and RANDOM_SEED <= seed <= MAX_SEED
        self._take("seed", seed if in_range or not isinstance(seed, int) else RANDOM_SEED)
        self.set_size(*(self._valid(name, self.field(name).clamp(value))
                        for name, value in (("width", request.width), ("height", request.height))))
        for name, value in (("prompt", conditioning.prompt), ("negative_prompt", conditioning.negative_prompt),
                            ("masked_content", inpaint.masked_content), ("inpaint_area", inpaint.area),
                            ("steps", sampling.steps), ("cfg_scale", sampling.cfg_scale),
                            ("shift", sampling.shift), ("distilled_cfg", sampling.distilled_cfg),
                            ("batch_size", sampling.batch_size), ("strength", sampling.strength),
                            ("clip_skip", conditioning.clip_skip), ("emphasis", conditioning.emphasis),
                            ("mask_blur", inpaint.mask_blur),
                            ("inpaint_padding", inpaint.padding)):
            self._take(name, self.field(name).clamp(value))
        hires = request.hires
        for name in ("upscaler", "scale", "steps", "denoise", "resize_width", "resize_height", "enabled"):
            self._take(f"hires_{name}", self.field(f"hires_{name}").clamp(getattr(hires, name)))
        self._take("decoder", getattr(request, "decoder", "full"))

    # -- few-step generation (desktop/core/fewstep.py) -----------------------------------------

    def use_recipe(self, recipe) -> None:
        """A few-step recipe's (fewstep.Recipe) steps, CFG scale, sampler and schedule: a few-step model's own
        settings, or Fast's. A schedule its sampler does not take becomes Automatic."""
        self._take("steps", recipe.steps)
        self._take("cfg_scale", recipe.cfg_scale)
        self._take("sampler", recipe.sampler)
        self._take("schedule", recipe.schedule if recipe.schedule in supported_schedules(self.sampler) else AUTOMATIC)

    def apply_fast(self, plan) -> None:
        """Fast (fewstep.FastPlan): its recipe, its decoder, and its LoRA's <lora:name:weight> tag at the end of the
        prompt unless the prompt already names that LoRA (at any weight: the person's own stays)."""
        self.use_recipe(plan.recipe)
        self._take("decoder", plan.decoder)
        if plan.lora:
            self.prompt = with_lora(self.prompt, plan.lora, plan.recipe.lora_weight)

    # -- model families (desktop/core/families.py) -------------------------------------------

    def recommend(self, family: str, variant: str = "") -> None:
        """What the makers of the family's variant recommend (families.Variant): steps, CFG scale, sampler and
        schedule, shift and distilled guidance; then `fit` to the family. An unknown family changes nothing."""
        spec = families.spec(family)
        if spec is None:
            return
        chosen = spec.variant(variant)
        self._take("steps", chosen.steps)
        self._take("cfg_scale", chosen.cfg_scale)
        self._take("sampler", chosen.sampler)
        self._take("schedule", chosen.schedule if chosen.schedule in supported_schedules(self.sampler) else AUTOMATIC)
        self._take("shift", chosen.shift or 0.0)
        if chosen.distilled_cfg is not None:
            self._take("distilled_cfg", chosen.distilled_cfg)
        self.fit(family, variant)

    def fit(self, family: str, variant: str = "") -> None:
        """Keep to what models of the family can run: one of its samplers (else its variant's), and the features
        it lacks at their neutral values (hires fix off, Clip skip 1, emphasis Original)."""
        spec = families.spec(family)
        if spec is None:
            return
        if spec.samplers and self.sampler not in spec.samplers:
            self.sampler = spec.variant(variant).sampler
        for feature, name, neutral in ((families.HIRES, "hires_enabled", False), (families.CLIP_SKIP, "clip_skip", 1),
                                       (families.EMPHASIS, "emphasis", DEFAULT_EMPHASIS)):
            if not families.supports(family, feature):
                self.set(name, neutral)

    def family_values(self) -> dict[str, object]:
        """The FAMILY_FIELDS' values now, for `take_values` when the family is chosen again."""
        return {name: self.get(name) for name in self.FAMILY_FIELDS}

    def take_values(self, values: dict[str, object]) -> None:
        """Set each of `values` that passes its field's check (in the order given: the sampler before its schedule)."""
        for name, value in values.items():
            if name == "schedule" and value not in supported_schedules(self.sampler):
                value = AUTOMATIC
            self._take(name, value)

    def _take(self, name: str, value: object) -> None:
        """Set, or keep the field's value when this one fails its check."""
        try:
            self.set(name, value)
        except (InvalidRequest, TypeError):
            pass

    def _valid(self, name: str, value: object) -> object:
        """`value` when it passes the field's check, else the field's value now."""
        try:
            return self.field(name).check(name, value)
        except (InvalidRequest, TypeError):
            return self.get(name)
