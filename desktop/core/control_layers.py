"""Control layers: ordinary image layers that carry a ControlSpec, so they guide a generation instead of being
part of the picture (pure; no Qt, no torch).

A layer with `control` set is left out of the composite (what is generated from, exported and flattened) and
shown on the canvas as a tint of its kind's colour. When generating, each visible one becomes a Control (its
pixels in the frame) or a Reference (its whole picture); hidden ones are skipped.

How the pixels are read, so that a person can paint on a control layer with the brush in any colour:
- the line kinds (canny, line art, scribble) keep the lines in the alpha channel: painted strokes are lines,
  the eraser removes them, and the control picture is the alpha as white lines on black (ControlNet's
  convention); "From picture" stores the preprocessor's white-on-black lines as alpha the same way;
- depth and "none" (a picture used as it is) are the layer's colours over black;
- a reference or style layer is its picture, trimmed to what is painted, over white paper.
A control layer with nothing in the frame is not sent (an empty layer just added guides nothing).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .control import CONTROL_TYPES, DEMO_CONTROLNET, Control, Reference, UsedControl
from .geometry import Bounds

LINE_KINDS = ("canny", "lineart", "scribble")
REFERENCE_KINDS = ("reference", "style")
KINDS = (*CONTROL_TYPES, *REFERENCE_KINDS)
#: What the menus call each kind, in menu order (pose needs weights to preprocess: left out).
LABELS = {"canny": "Canny edges", "lineart": "Line art", "scribble": "Scribble", "depth": "Depth",
          "none": "Picture as is", "reference": "Reference", "style": "Style"}
#: The tint each kind is shown in on the canvas (RGB).
COLOURS = {"canny": (40, 220, 255), "lineart": (80, 255, 120), "scribble": (255, 200, 40), "depth": (170, 110, 255),
           "none": (255, 120, 60), "reference": (255, 255, 255), "style": (255, 255, 255)}
LINE_OPACITY = 1.0  # lines are thin: at a zoom under 100% they fade, so they show at full strength
OVERLAY_OPACITY = 0.6  # a depth map or plain picture covers everything: the picture must show through
REFERENCE_OPACITY = 0.5


@dataclass(frozen=True)
class ControlSpec:
    """What makes an image layer a control layer: its kind, its model (a ControlNet, or for a reference the
    IP-Adapter; "demo" for the tiny ones), its weight and the fractions of the steps it acts on."""

    kind: str
    model: str = DEMO_CONTROLNET
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"A control layer's kind must be one of {', '.join(KINDS)}, not {self.kind!r}.")
        model = " ".join(str(self.model).split()) or DEMO_CONTROLNET
        object.__setattr__(self, "model", model[:1000])
        object.__setattr__(self, "weight", _clamp(self.weight, 0.0, 2.0, 1.0))
        start, end = _clamp(self.start, 0.0, 1.0, 0.0), _clamp(self.end, 0.0, 1.0, 1.0)
        object.__setattr__(self, "start", min(start, end))
        object.__setattr__(self, "end", end)

    @classmethod
    def default(cls, kind: str) -> ControlSpec:
        return cls(kind, weight=0.6 if kind in REFERENCE_KINDS else 1.0)

    @property
    def is_reference(self) -> bool:
        return self.kind in REFERENCE_KINDS

    @property
    def label(self) -> str:
        return LABELS[self.kind]

    def replace(self, **changes) -> ControlSpec:
        return dataclasses.replace(self, **changes)

    def to_attributes(self) -> dict[str, str]:
        """The .ora attributes (names without the namespace) that store this spec."""
        return {"control": self.kind, "control-model": self.model, "control-weight": f"{self.weight:.4g}",
                "control-start": f"{self.start:.4g}", "control-end": f"{self.end:.4g}"}

    @classmethod
    def from_attributes(cls, get) -> ControlSpec | None:
        """The spec stored by to_attributes (`get(name)` reads one; None when absent); None when there is none
        or its kind is unknown (the layer is then an ordinary picture layer). Numbers out of range are clamped."""
        kind = get("control")
        if kind not in KINDS:
            return None
        weight = get("control-weight")
        return cls(kind, get("control-model") or DEMO_CONTROLNET,
                   (0.6 if kind in REFERENCE_KINDS else 1.0) if weight is None else weight,
                   get("control-start") or 0.0, get("control-end") or 1.0)


def _clamp(value, low: float, high: float, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return default if number != number else min(high, max(low, number))


def spec_of(layer) -> ControlSpec | None:
    return getattr(layer, "control", None)


def control_layers(layers) -> list:
    """The layers (bottom first) that carry a control spec."""
    return [layer for layer in layers if spec_of(layer) is not None]


# -- the pixels -------------------------------------------------------------------------------


def crop(layer, box: Bounds) -> np.ndarray:
    """The layer's RGBA pixels in `box` (document coordinates), transparent where it has none."""
    out = np.zeros((box.height, box.width, 4), np.uint8)
    part = layer.bounds.intersect(box)
    if not part.is_empty:
        out[part.translated(-box.x, -box.y).slices] = layer.pixels[part.translated(-layer.offset.x,
                                                                                   -layer.offset.y).slices]
    return out


def control_picture(rgba: np.ndarray, kind: str) -> np.ndarray:
    """The ControlNet picture (HxWx3 uint8) of a control layer's RGBA pixels (see the module's docstring)."""
    if kind in LINE_KINDS:
        return np.repeat(rgba[..., 3:4], 3, axis=2)
    return _over(rgba, 0)


def reference_picture(layer) -> np.ndarray | None:
    """A reference layer's picture trimmed to what is painted on it, over white; None when it is empty."""
    alpha = layer.pixels[..., 3]
    if not alpha.any():
        return None
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    return _over(layer.pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 255)


def layer_pixels(kind: str, picture: np.ndarray) -> np.ndarray:
    """What "From picture" puts in a layer of `kind`: the preprocessor's HxWx3 output (or, for a reference, the
    picture itself, RGB or RGBA) as RGBA layer pixels that control_picture reads back unchanged."""
    picture = np.ascontiguousarray(picture, dtype=np.uint8)
    if kind in LINE_KINDS:
        out = np.full(picture.shape[:2] + (4,), 255, np.uint8)
        out[..., 3] = _luminance(picture[..., :3])
        return out
    if picture.shape[2] == 4:
        return picture.copy()
    return np.dstack([picture, np.full(picture.shape[:2], 255, np.uint8)])


def request_parts(layers, box: Bounds) -> tuple[tuple[Control, ...], tuple[Reference, ...]]:
    """The Controls (each visible control layer's pixels in `box`, already preprocessed) and References (each
    visible reference or style layer's picture) of a generation in `box`, bottom layer first."""
    controls, references = [], []
    for layer in control_layers(layers):
        spec = spec_of(layer)
        if not layer.visible:
            continue
        if spec.is_reference:
            picture = reference_picture(layer)
            if picture is not None:
                mode = "style" if spec.kind == "style" else "content"
                references.append(Reference(picture, spec.weight, mode, spec.model))
            continue
        pixels = crop(layer, box)
        if not pixels[..., 3].any():
            continue
        controls.append(Control(spec.model, control_picture(pixels, spec.kind), spec.kind, spec.weight, spec.start,
                                spec.end, preprocess=False))
    return tuple(controls), tuple(references)


def overlay(layers, box: Bounds) -> np.ndarray:
    """How the visible control layers show on the canvas in `box`: box.height x box.width x 4 straight RGBA.

    Each is a tint of its kind's colour whose strength is its signal (the lines' alpha, the brightness of a
    depth or plain picture) times the layer's opacity; a reference shows its own picture at half strength.
    """
    from PIL import Image

    out = Image.new("RGBA", (max(box.width, 0), max(box.height, 0)))
    for layer in control_layers(layers):
        if not layer.visible or layer.opacity <= 0 or layer.bounds.intersect(box).is_empty:
            continue
        spec = spec_of(layer)
        pixels = crop(layer, box)
        if spec.is_reference:
            tint = pixels.copy()
            strength = REFERENCE_OPACITY
            signal = pixels[..., 3]
        else:
            tint = np.empty_like(pixels)
            tint[..., :3] = COLOURS[spec.kind]
            strength = LINE_OPACITY if spec.kind in LINE_KINDS else OVERLAY_OPACITY
            signal = pixels[..., 3] if spec.kind in LINE_KINDS else _luminance(_over(pixels, 0))
        tint[..., 3] = (signal.astype(np.float32) * (strength * layer.opacity) + 0.5).astype(np.uint8)
        out.alpha_composite(Image.fromarray(tint))
    return np.asarray(out)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return (rgb[..., :3].astype(np.float32) @ weights + 0.5).clip(0, 255).astype(np.uint8)


def _over(rgba: np.ndarray, paper: int) -> np.ndarray:
    """RGB of straight-alpha pixels over a grey level; opaque pixels come out unchanged."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = (rgba[..., :3].astype(np.float32) * alpha + paper * (1.0 - alpha) + 0.5).astype(np.uint8)
    opaque = rgba[..., 3] == 255
    out[opaque] = rgba[..., :3][opaque]
    return out


#: A1111's preprocessor names (its ControlNet extension's "Module"), by the start of the name, -> our kind.
_MODULE_KINDS = (("canny", "canny"), ("lineart", "lineart"), ("scribble", "scribble"), ("depth", "depth"),
                 ("invert", "lineart"), ("softedge", "scribble"), ("hed", "scribble"), ("pidi", "scribble"))


def spec_of_used(used: UsedControl) -> ControlSpec:
    """The control layer settings a picture's parameters give for one of its controls (its picture is not in
    them): the kind its preprocessor makes ("none" for one Sfumato has no kind for), the model by name, the
    weight and the steps it acts on."""
    if used.is_reference:
        return ControlSpec("style" if used.mode == "style" else "reference", used.model or DEMO_CONTROLNET,
                           used.weight)
    module = used.module.lower()
    kind = next((kind for start, kind in _MODULE_KINDS if module.startswith(start)), "none")
    return ControlSpec(kind, used.model or DEMO_CONTROLNET, used.weight, used.start, used.end)
