"""ControlNet preprocessors: turn a picture into the control picture a ControlNet of its type expects.

``run(type, image)`` takes an HxWx3 or HxWx4 uint8 picture (transparent pixels are composited over white paper
first) and returns an HxWx3 uint8 picture of the same size with white lines on black, as A1111's ControlNet
annotators make them:

- "none": the picture as it is (a painted depth map or line drawing used directly).
- "canny": OpenCV's Canny edges of the picture as it is (no blur first), thresholds 100 and 200 (A1111's defaults).
- "lineart": the darkness of each pixel against its surroundings (the picture blurred with sigma 6), scaled so
  that a typical line is half bright, as A1111's "lineart_standard (from white bg & black line)" computes it.
- "scribble": a difference of Gaussians (sigmas 0.5 and 5) of the dark side, thresholded to white, which gives
  the thick lines of A1111's "scribble_xdog".
- "depth": Depth Anything V2 Small through transformers, when its weights are on disk (see `depth_folder`):
  the relative depth normalised to 0..255, near white, as A1111's depth_anything_v2 makes it. Its model is held
  by the backend's ModelManager (kind "depth", on its device and precision, under its memory budget).

A drawing (at least half of the picture is white paper: a line drawing, or strokes painted on a white or
transparent layer) is not edge-detected for "lineart" and "scribble": its ink (how far each pixel is from white)
becomes the white lines, so a thick painted stroke stays a filled stroke instead of becoming its outline.

The weight-free ones are numpy + OpenCV and take tens of milliseconds for a 2048x2048 picture. Nothing here
downloads: depth loads its folder with ``local_files_only=True`` and otherwise says where to put it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from desktop.core import paths
from desktop.core.app_folders import app_models_folder
from desktop.core.errors import InvalidRequest, SfumatoError
from desktop.core.preprocessors import PREPROCESSORS, needs_weights  # noqa: F401 - the tables, one definition
from desktop.core.preprocessors import check_type as _check_type
from desktop.core.progress import TaskState

CANNY_LOW, CANNY_HIGH = 100, 200  # A1111's defaults
LINEART_SIGMA = 6.0
LINEART_FLOOR = 8.0  # darkness below this is not a line when the typical line strength is measured
SCRIBBLE_SIGMAS = (0.5, 5.0)
SCRIBBLE_THRESHOLD = 16.0  # A1111's threshold 32 on twice the difference
PAPER = 235  # a pixel whose channels are all at least this is white paper
DRAWING_PAPER_SHARE = 0.5  # a picture with at least this share of paper is a drawing
INK_FLOOR = 8  # a drawing's ink below this is paper grain
SCRIBBLE_INK = 32  # a drawing's ink above this is a scribble stroke

DEPTH_FOLDER = "depth-anything-v2-small"
DEPTH_SUBFOLDER = "preprocessors"
DEPTH_SIZE = 518  # Depth Anything's input: the shorter side, in multiples of its 14-pixel patches
DEPTH_LONGEST = 2048  # ... unless that makes the longer side longer than this (a long strip of a picture)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# the backbone's width -> the size's name; Depth Anything V2's Base, Large and Giant weights are non-commercial
DEPTH_SIZES = {384: "Small", 768: "Base", 1024: "Large", 1536: "Giant"}
NON_COMMERCIAL = ("Base", "Large", "Giant")
_A1111_DEPTH = ("extensions", "sd-webui-controlnet", "annotator", "downloads", "depth_anything_v2")
_COMFY_DEPTH = ("custom_nodes", "comfyui_controlnet_aux", "ckpts")
_SEARCH_DEPTH = 3
KIND = "depth"  # the ModelManager kind the depth model is held under


def run(type: str, image: np.ndarray, models_folders=(), state=None, manager=None) -> np.ndarray:
    """The control picture of `type` for `image` (HxWx3 or HxWx4 uint8): HxWx3 uint8, white on black. `manager`:
    the backend's ModelManager, which holds the depth model (see `_load`)."""
    _check_type(type)
    rgb = on_white(image)
    if type == "none":
        return rgb
    if type == "depth":
        return depth(rgb, models_folders, state, manager)
    gray = {"canny": canny, "lineart": lineart, "scribble": scribble}[type](rgb)
    return np.repeat(gray[..., None], 3, axis=2)


def on_white(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB: an RGBA picture composited over white paper, an RGB one copied."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4) or 0 in image.shape[:2]:
        raise InvalidRequest("control", f"the picture must be HxWx3 or HxWx4 uint8, got shape {image.shape} of "
                                        f"{image.dtype}.")
    if image.shape[2] == 3:
        return np.ascontiguousarray(image).copy()
    alpha = image[..., 3:4].astype(np.uint16)
    rgb = image[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha)
    return ((rgb + 127) // 255).astype(np.uint8)


def is_drawing(rgb: np.ndarray) -> bool:
    """True for strokes on white paper: at least half of the pixels are (nearly) white."""
    paper = _darkest(rgb) >= PAPER
    return float(paper.mean()) >= DRAWING_PAPER_SHARE


def ink(rgb: np.ndarray) -> np.ndarray:
    """HxW uint8: how far each pixel is from white paper (a coloured stroke counts by its darkest channel)."""
    return 255 - _darkest(rgb)


def _darkest(pixels: np.ndarray) -> np.ndarray:
    """HxW: the smallest of the three channels (numpy's min over a last axis of 3 is ten times slower)."""
    return np.minimum(np.minimum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])


# ---------------------------------------------------------------------------- weight-free


def _cv2():
    """OpenCV, or one sentence saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise SfumatoError("Control pictures need OpenCV, which is missing: pip install "
                           "\"opencv-python-headless>=4.8,<5\"") from None
    return cv2


def canny(rgb: np.ndarray) -> np.ndarray:
    """HxW uint8 edges (255) of the picture as it is; OpenCV takes the strongest gradient of the three channels."""
    return _cv2().Canny(np.ascontiguousarray(rgb), CANNY_LOW, CANNY_HIGH)


def lineart(rgb: np.ndarray) -> np.ndarray:
    """HxW uint8 lines: a drawing's ink as it is (stretched so the darkest strokes are white), else each pixel's
    darkness against its blurred surroundings, a typical line at half brightness."""
    if is_drawing(rgb):
        dark = ink(rgb).astype(np.float32)
        dark[dark < INK_FLOOR] = 0
        strokes = dark[dark > 0]
        peak = float(np.percentile(strokes, 99)) if strokes.size else 255.0
        return np.clip(dark * (255.0 / max(peak, 64.0)), 0, 255).astype(np.uint8)
    x = rgb.astype(np.float32)
    blurred = _cv2().GaussianBlur(x, (0, 0), LINEART_SIGMA)
    darkness = np.clip(_darkest(blurred - x), 0, 255)
    lines = darkness[darkness > LINEART_FLOOR]
    typical = max(16.0, float(np.median(lines))) if lines.size else 16.0
    return np.clip(darkness * (127.0 / typical), 0, 255).astype(np.uint8)


def scribble(rgb: np.ndarray) -> np.ndarray:
    """HxW uint8 thick white scribbles: a drawing's strokes, else the thresholded dark side of a difference of
    Gaussians."""
    if is_drawing(rgb):
        return np.where(ink(rgb) > SCRIBBLE_INK, 255, 0).astype(np.uint8)
    cv2 = _cv2()
    x = rgb.astype(np.float32)
    fine, coarse = (cv2.GaussianBlur(x, (0, 0), sigma) for sigma in SCRIBBLE_SIGMAS)
    darkness = _darkest(coarse - fine)
    return np.where(darkness > SCRIBBLE_THRESHOLD, 255, 0).astype(np.uint8)


# ---------------------------------------------------------------------------- depth


def own_depth_folder() -> Path:
    return paths.models_dir() / DEPTH_SUBFOLDER / DEPTH_FOLDER


def depth_search_folders(models_folders: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Where a Depth Anything folder is looked for: Sfumato's own preprocessors folder, the added model folders'
    ``preprocessors``, and beside an A1111 or ComfyUI model folder the ControlNet extension's download folders."""
    folders = [paths.models_dir() / DEPTH_SUBFOLDER]
    for folder in (Path(f).expanduser() for f in models_folders):
        folders.append(folder / DEPTH_SUBFOLDER)
        app_models = app_models_folder(folder)  # X/models/Stable-diffusion or X/models/checkpoints: an install X
        if app_models is not None:
            app = app_models[1].parent
            folders += [app.joinpath(*_A1111_DEPTH), app.joinpath(*_COMFY_DEPTH)]
    return folders


def _is_depth_folder(folder: Path) -> bool:
    try:
        if not (folder / "model.safetensors").is_file():
            return False
        return _read_config(folder).get("model_type") == "depth_anything"
    except (OSError, ValueError):
        return False


def _read_config(folder: Path) -> dict:
    with open(folder / "config.json", encoding="utf-8") as file:
        config = json.loads(file.read(1_000_000))
    return config if isinstance(config, dict) else {}


def _walk(folder: Path, depth: int):
    """`folder` and its subfolders down to `depth` levels, in name order."""
    yield folder
    if depth <= 0:
        return
    try:
        children = sorted(child for child in folder.iterdir() if child.is_dir())
    except OSError:
        return
    for child in children:
        yield from _walk(child, depth - 1)


def depth_folder(models_folders: Iterable[str | os.PathLike] = ()) -> Path | None:
    """The Depth Anything folder to use (config.json + model.safetensors in transformers' layout): Sfumato's own
    ``<models>/preprocessors/depth-anything-v2-small`` first, then any such folder in the search folders, a
    Small one before the others; None when there is none."""
    if _is_depth_folder(own_depth_folder()):
        return own_depth_folder()
    found = [folder for root in depth_search_folders(models_folders) if root.is_dir()
             for folder in _walk(root, _SEARCH_DEPTH) if _is_depth_folder(folder)]
    found.sort(key=lambda folder: _size_name(_read_config(folder)) != "Small")
    return found[0] if found else None


def _original_checkpoints(models_folders) -> list[Path]:
    """Depth Anything files in the original (not transformers) format, as A1111 and ComfyUI download them."""
    found = []
    for root in depth_search_folders(models_folders):
        if root.is_dir():
            for folder in _walk(root, _SEARCH_DEPTH):
                found += sorted(folder.glob("depth_anything_v2_vit*.pth"))
    return found


def missing_depth_message(models_folders=()) -> str:
    message = (f"Depth needs the Depth Anything V2 Small weights, which are not on this computer: put the folder "
               f"of depth-anything/Depth-Anything-V2-Small-hf (config.json, model.safetensors, "
               f"preprocessor_config.json) at {own_depth_folder()}, or paint a depth layer and use it as is "
               f"(type 'none').")
    originals = _original_checkpoints(models_folders)
    if originals:
        message = (message[:-1] + f"; {originals[0].name} in {originals[0].parent} is in the original format, "
                                  "which Sfumato does not read.")
    return message


def _size_name(config: dict) -> str:
    backbone = config.get("backbone_config") or {}
    width = backbone.get("hidden_size") if isinstance(backbone, dict) else None
    return DEPTH_SIZES.get(width, "") if isinstance(width, int) else ""


class _DepthModel:
    def __init__(self, folder: Path, key, model, device, dtype, size: int, mean, std, metric: bool):
        self.folder, self.key, self.model = folder, key, model
        self.device, self.dtype = device, dtype
        self.size, self.mean, self.std, self.metric = size, mean, std, metric


def _load(folder: Path, state, manager) -> _DepthModel:
    """The depth model of `folder`. With the backend's ModelManager: held by it under KIND, on its device and in
    its precision, counted in its memory budget and unloaded with its other models (to make room, or by close).
    Without one (a caller that has none): loaded on the best device for this call only."""
    weights = folder / "model.safetensors"
    key = str((str(folder), weights.stat().st_mtime_ns, weights.stat().st_size))
    if manager is not None:
        held = manager.held(KIND, key)
        if held is not None:
            return held
    config = _read_config(folder)
    size_name = _size_name(config)
    if size_name in NON_COMMERCIAL and state is not None:
        state.status(f"The depth model in {folder.name} is Depth Anything V2 {size_name}, whose weights are "
                     "licensed CC-BY-NC-4.0: non-commercial use only (the Small one is Apache-2.0).")
    import torch
    from transformers import DepthAnythingForDepthEstimation
    from transformers.utils import logging as hf_logging

    from desktop.engine import devices

    hf_logging.set_verbosity_error()  # as desktop/engine/models.py: no stderr warnings or bars in a windowed app
    hf_logging.disable_progress_bar()

    if manager is not None:
        choice, dtype = manager.device, manager.device.dtype
    else:
        choice = devices.choose("auto")
        dtype = torch.float16 if choice.device.type in ("cuda", "mps") else torch.float32
    damaged = (f"The depth model in {folder} is damaged or not Depth Anything's: download the "
               "Depth-Anything-V2-Small-hf folder again.")
    try:
        model, info = DepthAnythingForDepthEstimation.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, output_loading_info=True)
    except Exception:  # noqa: BLE001 - a damaged file raises anything from safetensors' or transformers' insides
        raise SfumatoError(damaged) from None
    if info.get("missing_keys") or info.get("mismatched_keys"):  # else transformers fills them with noise
        raise SfumatoError(damaged)
    size = sum(p.numel() for p in model.parameters()) * torch.finfo(dtype).bits // 8
    if manager is not None:
        from . import tuning
        from .models import CHECKPOINT

        pool = tuning.GPU if choice.device.type == "cuda" else tuning.SYSTEM
        spare = {(CHECKPOINT, manager.current.ref)} if manager.current is not None else set()
        manager.make_room(pool, size, folder.name, state or TaskState(), spare)
    model = model.to(choice.device, dtype).eval()
    processor = {}
    try:
        with open(folder / "preprocessor_config.json", encoding="utf-8") as file:
            processor = json.loads(file.read(100_000))
    except (OSError, ValueError):
        pass
    side = processor.get("size", {}) if isinstance(processor, dict) else {}
    side_size = side.get("height", DEPTH_SIZE) if isinstance(side, dict) else DEPTH_SIZE
    mean = processor.get("image_mean", IMAGENET_MEAN) if isinstance(processor, dict) else IMAGENET_MEAN
    std = processor.get("image_std", IMAGENET_STD) if isinstance(processor, dict) else IMAGENET_STD
    loaded = _DepthModel(folder, key, model, choice.device, dtype, int(side_size), mean, std,
                         config.get("depth_estimation_type") == "metric")
    if manager is not None:
        manager.keep(KIND, key, loaded, size, pool, f"the depth model {folder.name}")
    return loaded



def _depth_input(rgb: np.ndarray, loaded: _DepthModel, patch: int):
    """The picture resized so its shorter side is `loaded.size` (its longer side at most DEPTH_LONGEST; both sides
    multiples of the patch), bicubic, normalised: 1x3xhxw."""
    import torch
    from PIL import Image

    height, width = rgb.shape[:2]
    scale = min(loaded.size / min(height, width), DEPTH_LONGEST / max(height, width))
    h, w = (max(patch, int(round(side * scale / patch)) * patch) for side in (height, width))
    resized = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0
    normal = (resized - np.asarray(loaded.mean, np.float32)) / np.asarray(loaded.std, np.float32)
    return torch.from_numpy(normal.transpose(2, 0, 1).copy())[None]


def depth(rgb: np.ndarray, models_folders=(), state=None, manager=None) -> np.ndarray:
    """HxWx3 uint8 depth, near white: Depth Anything's relative depth at the picture's size, normalised."""
    folder = depth_folder(models_folders)
    if folder is None:
        raise SfumatoError(missing_depth_message(models_folders))
    loaded = _load(folder, state, manager)
    if state is not None:
        state.status("Estimating depth...")
    import torch

    patch = int(getattr(loaded.model.config, "patch_size", 14) or 14)
    pixels = _depth_input(rgb, loaded, patch).to(loaded.device, loaded.dtype)
    with torch.inference_mode():
        predicted = loaded.model(pixel_values=pixels).predicted_depth
        predicted = torch.nn.functional.interpolate(predicted[:, None].float(), size=rgb.shape[:2],
                                                    mode="bicubic", align_corners=False)[0, 0]
    values = predicted.cpu().numpy().astype(np.float64)
    if loaded.metric:  # a metric model gives distance (far is large); relative ones give disparity (near is large)
        values = -values
    low, high = float(values.min()), float(values.max())
    if not np.isfinite(low) or not np.isfinite(high) or high - low < 1e-12:
        gray = np.zeros(rgb.shape[:2], np.uint8)
    else:
        gray = np.clip((values - low) * (255.0 / (high - low)), 0, 255).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)
