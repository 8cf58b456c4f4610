"""What the generation frame holds decides the mode, and the request sent to the engine.

- nothing visible in the frame: txt2img into it;
- part of the frame empty (past the canvas edge, or transparent): outpaint,
  the empty part masked and filled (plus any painted mask);
- a mask painted inside the frame: inpaint;
- otherwise: img2img of what the frame shows.

Partly transparent pixels count as content, flattened over white as they
look on paper. Control layers are not content: each visible one adds a
Control (its pixels in the frame) or a Reference (desktop/core/control_layers.py).
"""

from __future__ import annotations

import numpy as np

from .control_layers import request_parts
from .document import CanvasDocument
from .geometry import Bounds, Margins
from .postprocess import DetailSettings, UpscaleRequest, diffusion_restore
from .request import GenerationRequest, Images, Mode

PAPER = 255


def frame_mode(doc: CanvasDocument, frame: Bounds | None = None) -> Mode:
    frame = frame or doc.frame
    alpha = doc.composite(frame)[..., 3]
    if not alpha.any():
        return Mode.TXT2IMG
    if not alpha.all():
        return Mode.OUTPAINT
    return Mode.INPAINT if doc.mask(frame).any() else Mode.IMG2IMG


def frame_request(doc: CanvasDocument, base: GenerationRequest, frame: Bounds | None = None) -> GenerationRequest:
    """`base` (the prompt panel's values) turned into a request for what the frame holds."""
    frame = frame or doc.frame
    pixels = doc.composite(frame)
    alpha = pixels[..., 3]
    controls, references = request_parts(doc.layers, frame)
    common = {"width": frame.width, "height": frame.height, "outpaint": Margins(), "controls": controls,
              "references": references}
    if not alpha.any():
        return base.replace(mode=Mode.TXT2IMG, images=Images(), **common)
    rgb = _flatten(pixels)
    mask = doc.mask(frame)
    if not alpha.all():
        image = np.dstack([rgb, np.where(alpha > 0, 255, 0).astype(np.uint8)])
        return base.replace(mode=Mode.OUTPAINT, images=Images(image, mask if mask.any() else None), **common)
    if mask.any():
        return base.replace(mode=Mode.INPAINT, images=Images(rgb, mask), **common)
    return base.replace(mode=Mode.IMG2IMG, images=Images(rgb), **common)


def _flatten(rgba: np.ndarray) -> np.ndarray:
    """RGB of straight-alpha pixels over white paper; opaque pixels come out unchanged."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + PAPER * (1.0 - alpha)
    out = (rgb + 0.5).astype(np.uint8)
    opaque = rgba[..., 3] == 255
    out[opaque] = rgba[..., :3][opaque]
    return out


def restore_area(doc: CanvasDocument) -> Bounds:
    """What Image > Restore works on: the generation frame's area when the frame lies inside the picture and is
    smaller than it (a damaged corner, one face), else the whole picture (a restore never grows the canvas)."""
    frame, bounds = doc.frame, doc.bounds
    inside = bounds.union(frame) == bounds
    return frame if inside and frame != bounds else bounds


def restore_request(doc: CanvasDocument, base: GenerationRequest, kind: str = "restore",
                    area: Bounds | None = None) -> UpscaleRequest | None:
    """The diffusion restore of the picture, or of its `area` (default: all of it), when no restorer model is
    used: the visible pixels flattened over white paper, any mask ignored, repainted lightly by `base`'s model,
    prompt and sampler at RESTORE_STRENGTH: a restore at scale 1 whose only work is the tiled detail pass
    (desktop/core/postprocess.py diffusion_restore), so a large picture fits in memory. None when there is
    nothing there."""
    pixels = doc.composite(area or doc.bounds)
    if not pixels[..., 3].any():
        return None
    return diffusion_restore(_flatten(pixels), DetailSettings(base.model, base.conditioning, base.sampling), kind)
