"""Pixel operations that are not a diffusion run: the request of a model upscale, and where upscalers are.

An UpscaleRequest says what to enlarge (a picture), by how much (a scale such as 1.5, 2, 3, 4, or a target
size) and with which upscaler: "demo" (the built-in tiny random-weight one), a file path, or a file stem
looked for in the upscaler folders of the model folders:

- Sfumato's own ``<models folder>/upscalers`` (and ``restorers``);
- beside a model folder of another app: AUTOMATIC1111 / Forge / SD.Next ``X/models/Stable-diffusion`` ->
  ``X/models/ESRGAN``, ``X/models/RealESRGAN``, ``X/models/SwinIR``, ``X/models/DAT``, ``X/models/HAT``;
  ComfyUI ``X/models/checkpoints`` -> ``X/models/upscale_models``; any folder's own ``upscalers``,
  ``upscale_models`` and ``ESRGAN`` subfolders.

The result's metadata is the source picture's parameters (when it had them) with A1111's Extras keys
appended: ``Postprocess upscale by: 2, Postprocess upscaler: 4x-UltraSharp``.

A restore (denoise, de-JPEG, restore) is an upscale at scale 1 with a restorer: a model of scale 1 (SCUNet,
NAFNet, DRUNet, FBCNN, DnCNN, ...) from the same folders or Sfumato's own ``<models folder>/restorers``, or
"demo-restorer" (a tiny random-weight one). It runs through the same tiled engine, is staged and saved like an
upscale, and its metadata gets ``Postprocess restore: <restorer>`` (A1111's Extras has no such key; this
follows its ``Postprocess <what>: <model>`` form).

"Upscale with detail" (``UpscaleRequest.detail``, a DetailSettings): after the upscale, one img2img pass at
low strength over the whole picture with a model and prompt (desktop/engine/detail.py, tiled and blended in
latent space, so a large picture fits); its result's metadata is that pass's as A1111's img2img writes it, with
the Postprocess keys appended. The upscale may be "Lanczos" or "Nearest" (PIXEL_UPSCALERS: no model, as
A1111's Extras offers them), and the diffusion restore is such a request at scale 1: "Lanczos" (nothing to
resize) then the detail pass at RESTORE_STRENGTH, metadata the img2img's alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from desktop.core import paths
from desktop.core.app_folders import app_models_folder
from desktop.core.errors import InvalidRequest, SfumatoError
from desktop.core.filescan import files_in
from desktop.core.faces import FACE, FaceSettings
from desktop.core.geometry import Extent
from desktop.core.imageio import output_path
from desktop.core.infotext import format_infotext, from_request
from desktop.core.request import RANDOM_SEED, Conditioning, GenerationRequest, Mode, Sampling

UPSCALE = "upscale"  # the job kind
DEMO_UPSCALER = "demo"
DEMO_UPSCALER_NAME = "Demo upscaler (random weights)"
UPSCALER_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
OWN_SUBFOLDER = "upscalers"
RESTORER_SUBFOLDER = "restorers"
PIXEL_UPSCALERS = ("Lanczos", "Nearest")  # A1111 Extras' resamplers: no model, only pixels resized
DEMO_RESTORER = "demo-restorer"
DEMO_RESTORER_NAME = "Demo restorer (random weights)"
RESTORE_KINDS = ("denoise", "jpeg", "restore", "face")
RESTORE_LABELS = {"restore": "Restore", "denoise": "Denoise", "jpeg": "Remove JPEG artefacts", "face": "Fix faces"}
RESTORE_STRENGTH = 0.25  # the diffusion restore: an img2img of the whole picture at this strength
MAX_SCALE = 8.0
MAX_SIDE = 32768  # an output side longer than this is refused before any work

# The upscaler folders of the apps whose model folders people add, relative to the app's "models" folder.
_APP_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT", "upscale_models", "upscalers",
                "GFPGAN", "Codeformer", "facerestore_models")  # the last three: face restorers (A1111, ComfyUI)
_OWN_FOLDERS = ("upscalers", "upscale_models", "ESRGAN")


class UpscalerError(SfumatoError):
    """An upscaler file could not be used; the message says why and what to do."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"Could not use the upscaler {name}: {reason}")
        self.name, self.reason = name, reason


DETAIL_STRENGTH = 0.35  # "Add detail"'s default denoising strength


@dataclass(frozen=True)
class DetailSettings:
    """The img2img pass of "Upscale with detail": the model, the prompt and how to sample (its `strength`)."""

    model: str = "demo"
    conditioning: Conditioning = Conditioning()
    sampling: Sampling = Sampling(sampler="Euler a", schedule="Automatic", strength=DETAIL_STRENGTH)

    def replace(self, **changes) -> DetailSettings:
        return replace(self, **changes)

    def validated(self) -> DetailSettings:
        if not isinstance(self.model, str) or not self.model.strip():
            raise InvalidRequest("model", "name the model of the detail pass: 'demo', a file or a folder.")
        self.conditioning.validate()
        self.sampling.replace(batch_size=1).validate()
        return self

    def as_img2img(self, size: Extent, seed: int) -> GenerationRequest:
        """The img2img request this pass is (for its infotext): one picture of `size` with `seed`."""
        return GenerationRequest(mode=Mode.IMG2IMG, model=self.model, width=size.width, height=size.height,
                                 sampling=self.sampling.replace(seed=seed, batch_size=1),
                                 conditioning=self.conditioning)


@dataclass(frozen=True)
class UpscaleRequest:
    """Enlarge `image` (HxWx3 or HxWx4 uint8) by `scale`, or to `size` when it is given."""

    image: np.ndarray = field(repr=False)
    scale: float = 2.0
    size: Extent | None = None  # the exact output size; overrides scale
    upscaler: str = DEMO_UPSCALER  # "demo", a path, or a file stem in the upscaler folders
    parameters: str = ""  # the source picture's A1111 parameters text, "" when it had none
    beside: str = ""  # the source picture's file, when the result is to be saved beside it (the gallery's)
    detail: DetailSettings | None = None  # "Upscale with detail": an img2img pass after the upscale
    restore: str = ""  # a restore at scale 1 (one of RESTORE_KINDS) with a restorer; "" for an upscale
    faces: FaceSettings | None = None  # restore "face": how faces are found and fixed (desktop/core/faces.py)

    def replace(self, **changes) -> UpscaleRequest:
        return replace(self, **changes)

    @property
    def source(self) -> Extent:
        return Extent(int(self.image.shape[1]), int(self.image.shape[0]))

    def target(self) -> Extent:
        """The output size: `size`, or the source times `scale` rounded to whole pixels."""
        if self.size is not None:
            return Extent(int(self.size.width), int(self.size.height))
        src = self.source
        return Extent(max(1, round(src.width * self.scale)), max(1, round(src.height * self.scale)))

    def factor(self) -> float:
        """The scale written into the metadata: the asked scale, or the size's over the source's (the larger)."""
        if self.size is None:
            return float(self.scale)
        src, out = self.source, self.target()
        return max(out.width / src.width, out.height / src.height)

    def validated(self) -> UpscaleRequest:
        image = self.image
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
                or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
            raise InvalidRequest("image", "the picture must be an RGB or RGBA image of at least 1x1 pixels.")
        if self.size is None:
            if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and 0 < self.scale <= MAX_SCALE):
                raise InvalidRequest("scale", f"the scale must be more than 0 and at most {MAX_SCALE:g}, got {self.scale}.")
        elif min(self.size) < 1:
            raise InvalidRequest("size", f"the size must be at least 1x1, got {self.size.width}x{self.size.height}.")
        out = self.target()
        if max(out) > MAX_SIDE:
            raise InvalidRequest("scale" if self.size is None else "size",
                                 f"the result would be {out.width}x{out.height}; Sfumato makes pictures of at most "
                                 f"{MAX_SIDE} pixels a side. Ask for a smaller scale.")
        if self.restore and (self.restore not in RESTORE_KINDS or self.size is not None or self.scale != 1):
            raise InvalidRequest("restore", f"a restore keeps the picture's size and is one of {', '.join(RESTORE_KINDS)}"
                                            f", got {self.restore!r} at x{self.factor():g}.")
        if not isinstance(self.upscaler, str) or not self.upscaler.strip():
            raise InvalidRequest("upscaler", "name an upscaler: 'demo', a file, or the name of one in your upscaler folders.")
        if self.detail is not None:
            self.detail.validated()
        if (self.restore == FACE) != (self.faces is not None):
            raise InvalidRequest("faces", "a face fix is a restore of kind 'face' with its face settings.")
        if self.faces is not None:
            self.faces.validated()
            mask = self.faces.mask
            if mask is not None and (mask.shape != image.shape[:2] or mask.dtype != np.bool_):
                raise InvalidRequest("mask", "the face mask must be a yes/no mask of the picture's size.")
        return self


def diffusion_restore(image: np.ndarray, base: DetailSettings, kind: str = "restore") -> UpscaleRequest:
    """The restore with no restorer model: `image` at its size (nothing to resize), then the detail pass of
    `base`'s model, prompt and sampler at RESTORE_STRENGTH, one picture."""
    detail = base.replace(sampling=base.sampling.replace(strength=RESTORE_STRENGTH, batch_size=1))
    return UpscaleRequest(image, 1.0, upscaler=PIXEL_UPSCALERS[0], restore=kind, detail=detail)


def scale_text(factor: float) -> str:
    """2.0 -> "2", 1.5 -> "1.5", as A1111 writes "Postprocess upscale by"."""
    return f"{factor:.4g}"


def describe(request: UpscaleRequest) -> str:
    """What the queue and the canvas call the job: "Upscale x2", "Upscale to 2048x1536", "Denoise, 640x480"."""
    if request.restore:
        return f"{RESTORE_LABELS.get(request.restore, 'Restore')}, {request.source.width}x{request.source.height}"
    text = f"Upscale to {request.size.width}x{request.size.height}" if request.size is not None \
        else f"Upscale x{scale_text(request.scale)}"
    return f"{text} with detail" if request.detail is not None else text


def result_path(folder: Path, request: UpscaleRequest) -> Path:
    """Where an upscaled picture made in the window goes: beside its source as <name>-x2.png when it came from
    a file (the gallery), else <folder>/<date>/<NNNNN>-x2.png, numbered with the generated pictures of that
    day; -<W>x<H> for a size. An existing file is never replaced (save_png numbers the name)."""
    tag = f"{request.size.width}x{request.size.height}" if request.size is not None else f"x{scale_text(request.scale)}"
    tag = request.restore or tag
    if request.beside:
        source = Path(request.beside)
        return source.with_name(f"{source.stem}-{tag}.png")
    numbered = output_path(folder, 0)
    return numbered.with_name(f"{numbered.name[:5]}-{tag}.png")


def upscale_params(factor: float, upscaler_name: str) -> tuple[tuple[str, str], ...]:
    return (("Postprocess upscale by", scale_text(factor)), ("Postprocess upscaler", upscaler_name))


def result_params(request: UpscaleRequest, model_name: str) -> tuple[tuple[str, str], ...]:
    """The keys a result adds to its parameters: a restore's `Postprocess restore`, an upscale's A1111 Extras keys."""
    if request.restore:
        return () if request.upscaler in PIXEL_UPSCALERS else (("Postprocess restore", model_name),)
    return upscale_params(request.factor(), model_name)


def with_params(parameters: str, params: Iterable[tuple[str, str]]) -> str:
    """The source picture's parameters with `params` appended to its last line, as A1111's Extras does;
    just the params when the picture had none."""
    added = ", ".join(f"{key}: {value}" for key, value in params)
    parameters = parameters.rstrip()
    if not parameters or not added:
        return added or parameters
    return f"{parameters}, {added}"


def detail_parameters(detail: DetailSettings, size: Extent, seed: int, model_name: str, model_hash: str,
                      extra: Iterable[tuple[str, str]], postprocess: Iterable[tuple[str, str]]) -> str:
    """The infotext of an upscale with detail: its img2img pass's, as A1111 writes it, then `postprocess`."""
    info = from_request(detail.as_img2img(size, seed), seed, model_name, model_hash, tuple(extra))
    return with_params(format_infotext(info), postprocess)


# ------------------------------------------------------------------ finding upscalers


def own_folder() -> Path:
    return paths.models_dir() / OWN_SUBFOLDER


def upscaler_folders(models_folders: Iterable[str | os.PathLike]) -> list[Path]:
    """The existing folders where upscalers are kept, Sfumato's own first (see the module's notes)."""
    candidates: list[Path] = [own_folder(), own_folder().with_name(RESTORER_SUBFOLDER)]
    for folder in (Path(f).expanduser() for f in models_folders):
        app = app_models_folder(folder)
        if app is not None:
            candidates += [app[1] / name for name in _APP_FOLDERS]
        candidates += [folder / name for name in _OWN_FOLDERS]
    found: list[Path] = []
    for candidate in candidates:
        if candidate not in found and candidate.is_dir():
            found.append(candidate)
    return found


def list_upscalers(models_folders: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """name (file stem) -> file, for the upscaler files of the upscaler folders (one level of subfolders)."""
    found: dict[str, Path] = {}
    for folder in upscaler_folders(models_folders):
        for path in files_in(folder, UPSCALER_SUFFIXES, depth=1):
            found.setdefault(path.stem, path)
    return found


@dataclass(frozen=True)
class PostprocessFiles:
    """The files of the upscaler folders, name -> file, sorted into those that enlarge, the restorers and the face
    restorers (GFPGAN, RestoreFormer, CodeFormer)."""

    enlargers: dict[str, Path] = field(default_factory=dict)
    restorers: dict[str, Path] = field(default_factory=dict)
    faces: dict[str, Path] = field(default_factory=dict)


def scan_postprocess_files(models_folders: Iterable[str | os.PathLike]) -> PostprocessFiles:
    """The upscaler folders' files, a restorer told by the key names in its header (nothing loaded; see
    modelfiles). Reads the folders and headers: call it off the GUI thread."""
    from desktop.core import modelfiles

    enlargers, restorers, faces = {}, {}, {}
    for name, path in list_upscalers(models_folders).items():
        try:
            kind = modelfiles.identify(path).kind
        except (OSError, SfumatoError, ValueError):
            kind = ""  # listed, and refused with a sentence when used
        {"restorer": restorers, "face restorer": faces}.get(kind, enlargers)[name] = path
    return PostprocessFiles(enlargers, restorers, faces)


def list_restorers(models_folders: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """name -> file, for the files of the upscaler folders whose layout is a scale-1 restorer's."""
    return scan_postprocess_files(models_folders).restorers


def find_upscaler(name: str, models_folders: Iterable[str | os.PathLike]) -> Path | None:
    """The upscaler file called `name` (its stem, or its file name), exact case first, then any case."""
    files = list_upscalers(models_folders)
    found = match_upscaler(name, files)
    return None if found is None else files[found]


# AUTOMATIC1111's names for the upscalers it downloads itself, as its infotext writes them (`Hires upscaler:
# R-ESRGAN 4x+`), and the stems of the files it saves them as (in models/RealESRGAN, ESRGAN, SwinIR, ScuNET, DAT).
A1111_UPSCALER_FILES = {
    "R-ESRGAN 4x+": "RealESRGAN_x4plus", "R-ESRGAN 4x+ Anime6B": "RealESRGAN_x4plus_anime_6B",
    "R-ESRGAN 2x+": "RealESRGAN_x2plus", "R-ESRGAN General 4xV3": "realesr-general-x4v3",
    "R-ESRGAN General WDN 4xV3": "realesr-general-wdn-x4v3", "R-ESRGAN AnimeVideo": "realesr-animevideov3",
    "ESRGAN_4x": "ESRGAN_4x", "SwinIR 4x": "SwinIR_4x", "ScuNET GAN": "ScuNET", "ScuNET PSNR": "ScuNET_PSNR",
    "DAT x2": "DAT_x2", "DAT x3": "DAT_x3", "DAT x4": "DAT_x4",
}


def match_upscaler(name: str, files: Mapping[str, Path]) -> str | None:
    """The key of `files` (name -> upscaler file) that `name` (a stem, a file name, or A1111's name of an
    upscaler it downloads, such as "R-ESRGAN 4x+") names: exact case first, then any case; None when none does."""
    stem = Path(name).stem if Path(name).suffix.lower() in UPSCALER_SUFFIXES else name
    folded = {key.casefold(): key for key in reversed(list(files))}
    for candidate in (stem, A1111_UPSCALER_FILES.get(name.strip())):
        if candidate is None:
            continue
        if candidate in files:
            return candidate
        if candidate.casefold() in folded:
            return folded[candidate.casefold()]
    return None
