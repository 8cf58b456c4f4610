"""Control inputs of a generation: ControlNet guidance and reference pictures (pure; no torch, no Qt).

A Control steers the picture's layout with a ControlNet: `image` is the control picture (HxWx3 uint8) and
`type` says what it shows ("canny", "lineart", "scribble", "depth", or "none" for a picture used as it is). When
`preprocess` is true the engine first runs the type's preprocessor on `image` (the CLI's ``image=photo.png,
type=canny``); a control layer made on the canvas with "from picture" already holds the preprocessed picture and
sends ``preprocess=False``. `weight` scales the ControlNet's residuals (A1111's "Weight"); `start` and `end` are
the fractions of the steps it acts on (A1111's "Guidance Start" / "Guidance End").

A Reference steers content or style with an IP-Adapter: `image` is any picture; `mode` "content" uses all of
the adapter's layers, "style" only its style layers (where the adapter allows layer-wise scales); `weight` is the
adapter's scale.

The infotext writes A1111's ControlNet keys, one per control, numbered from 0:
``ControlNet 0: "Module: canny, Model: control_canny [a1b2c3d4], Weight: 1, Guidance Start: 0, Guidance End: 1"``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np

from desktop.core.errors import InvalidRequest, SfumatoError

CONTROL_TYPES = ("canny", "lineart", "scribble", "depth", "none")
REFERENCE_MODES = ("content", "style")
DEMO_CONTROLNET = "demo"
MAX_CONTROLS = 4


@dataclass(frozen=True)
class Control:
    model: str  # a ControlNet file or diffusers folder, its name in the ControlNet folders, or "demo"
    image: np.ndarray = field(compare=False, repr=False)
    type: str = "none"
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: bool = False  # run the type's preprocessor on `image` before use

    def replace(self, **changes) -> Control:
        return dataclasses.replace(self, **changes)

    def validate(self, index: int = 0) -> None:
        name = f"control {index + 1}"
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidRequest("control", f"{name}: name its ControlNet model (a file, a folder or 'demo').")
        _check_picture(self.image, "control", name)
        if self.type not in CONTROL_TYPES:
            raise InvalidRequest("control", f"{name}: the type must be one of {', '.join(CONTROL_TYPES)}, "
                                            f"got {self.type!r}.")
        if not 0.0 <= float(self.weight) <= 2.0:
            raise InvalidRequest("control", f"{name}: the weight must be between 0 and 2, got {self.weight}.")
        if not 0.0 <= float(self.start) <= float(self.end) <= 1.0:
            raise InvalidRequest("control", f"{name}: start and end must be fractions with 0 <= start <= end <= 1, "
                                            f"got {self.start} and {self.end}.")


@dataclass(frozen=True)
class Reference:
    image: np.ndarray = field(compare=False, repr=False)
    weight: float = 0.6
    mode: str = "content"
    adapter: str = "demo"  # an IP-Adapter file, its name in the IP-Adapter folders, or "demo"

    def replace(self, **changes) -> Reference:
        return dataclasses.replace(self, **changes)

    def validate(self, index: int = 0) -> None:
        name = f"reference {index + 1}"
        _check_picture(self.image, "reference", name)
        if self.mode not in REFERENCE_MODES:
            raise InvalidRequest("reference", f"{name}: the mode must be content or style, got {self.mode!r}.")
        if not 0.0 <= float(self.weight) <= 2.0:
            raise InvalidRequest("reference", f"{name}: the weight must be between 0 and 2, got {self.weight}.")
        if not isinstance(self.adapter, str) or not self.adapter.strip():
            raise InvalidRequest("reference", f"{name}: name its IP-Adapter (a file or 'demo').")


def _check_picture(image, what: str, name: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise InvalidRequest(what, f"{name}: its picture must be an RGB or RGBA image.")


@dataclass(frozen=True)
class UsedControl:
    """One control a picture's parameters name: A1111's ``ControlNet N`` key or our ``IP-Adapter N``."""

    key: str  # "ControlNet 0", "IP-Adapter 1"
    module: str  # the preprocessor A1111 names ("canny", "depth_midas", ...); "" for a reference
    model: str  # the model's name without its hash
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    mode: str = ""  # a reference's "content" or "style"

    @property
    def is_reference(self) -> bool:
        return self.key.startswith("IP-Adapter") or self.module.startswith("ip-adapter")


def used_controls(params: dict[str, str]) -> list[UsedControl]:
    """The controls `params` (parsed infotext) name, ControlNets first, in their numbers' order."""
    found = []
    for key in sorted((k for k in params if _CONTROL_KEY.fullmatch(k)), key=lambda k: (k[0], int(k.split()[-1]))):
        fields = _fields(params[key])
        found.append(UsedControl(
            key, fields.get("module", "" if key.startswith("IP-Adapter") else "none"),
            re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", fields.get("model", "")).strip(),
            _number(fields.get("weight"), 1.0), _number(fields.get("guidance start"), 0.0),
            _number(fields.get("guidance end"), 1.0), fields.get("mode", "content" if key.startswith("IP") else "")))
    return found


def used_controls_note(params: dict[str, str], models_folders=()) -> str:
    """What "Use all parameters" cannot put back: the pictures of the picture's ControlNets and references, which
    are not in its metadata. A sentence naming each, whether its model file is here, and how to use it again;
    "" when the picture used none."""
    from desktop.core import controlnets, references  # folder look-ups; imported here, as control.py is a leaf

    said = []
    for used in used_controls(params):
        if used.is_reference:
            try:
                found = bool(used.model) and references.find_adapter(used.model, models_folders) is not None
            except SfumatoError:  # not in the adapter folders
                found = False
            what = f"{used.key} ({used.mode or 'content'}, {used.model or 'no model named'})"
        else:
            found = bool(used.model) and controlnets.find_controlnet(used.model, models_folders) is not None
            what = f"{used.key} ({used.module}, {used.model or 'no model named'})"
        said.append(what + ("" if found else ", whose file is not in your folders"))
    if not said:
        return ""
    return (f"This picture was also steered by {', '.join(said)}. Its control pictures are not in its metadata: "
            "empty control layers with their settings were added to the canvas; paint them or fill them From "
            "picture to use them again.")


_CONTROL_KEY = re.compile(r"(ControlNet|IP-Adapter) \d+")


def _number(text: str | None, default: float) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


def _fields(value: str) -> dict[str, str]:
    """'Module: canny, Model: x [ab12], Weight: 1' -> {"module": "canny", "model": "x [ab12]", "weight": "1"}."""
    found = {}
    for part in value.strip().strip('"').split(", "):
        name, _, text = part.partition(":")
        if text:
            found[name.strip().lower()] = text.strip()
    return found
