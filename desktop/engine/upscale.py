"""Model upscale (super-resolution): load an upscaler with spandrel and run it tile by tile.

Loading. An upscaler is a ``.safetensors`` file, or a pickle (``.pth``/``.pt``/``.ckpt``) read with
``torch.load(weights_only=True)`` and never otherwise: a file with code in it is refused. spandrel's main
registry tells the architecture (ESRGAN/Real-ESRGAN/BSRGAN, Compact, SwinIR, HAT, DAT, OmniSR, SPAN, ...),
its scale and whether it runs in fp16/bf16. When the person installed spandrel-extra-arches its architectures
are detected too, and the status names their licence (most are non-commercial). A loaded upscaler is held in
the ModelManager under the kind "upscaler", beside the checkpoints, under the same memory budget.

Running. The picture is cut into square tiles with `OVERLAP` input pixels of overlap; each tile's output is
weighted by a ramp that falls to zero towards the edges it shares with a neighbour (not at the picture's
borders; the outer quarter of the overlap, where the model saw the tile's border, gets no weight) and the
weights are normalised, so the blend is a partition of unity: away from the seams the result is the
untiled one, and for a model that sees no further than a quarter of the overlap it is the untiled one
everywhere (to rounding). Rows of tiles go into a float strip the height of one tile; rows no later tile
touches are rounded into the uint8 output at once, so the working memory is one strip (tile height x output
width), not the whole output in float. The tile side comes from the free memory and is halved on running out
of memory, down to `MIN_TILE`, before giving up with a sentence. The model runs at its native scale; any
other asked scale or size is reached with Lanczos band by band as the rows are done (LanczosRows), so a 4096x4096
x2 with an x4 model never holds its 16384x16384 output. Cancel is checked before every tile; progress is one step
per tile.
"""

from __future__ import annotations

import contextlib
import math
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from desktop.core import paths
from desktop.core.backend import Result
from desktop.core.errors import Cancelled, OutOfMemory, SfumatoError
from desktop.core.faces import DEMO_FACE_RESTORER, DEMO_FACE_RESTORER_NAME
from desktop.core.postprocess import (DEMO_RESTORER, DEMO_RESTORER_NAME, DEMO_UPSCALER, DEMO_UPSCALER_NAME,
                                      PIXEL_UPSCALERS, UPSCALER_SUFFIXES, UpscaleRequest, UpscalerError, find_upscaler,
                                      own_folder, result_params, with_params)
from desktop.core.progress import TaskState

from . import tiny_upscaler, tuning

KIND = "upscaler"  # the ModelManager kind upscalers are held under
MIN_TILE = 128
MAX_TILE = 1024
OVERLAP = 32  # input pixels shared by neighbouring tiles (at most a quarter of the tile)
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")

# Licences of spandrel-extra-arches' architectures, as its README lists them; any other one from there is
# named as "a restrictive licence".
EXTRA_LICENCES = {
    "AdaCode": "the S-Lab License 1.0 (non-commercial use only)",
    "CodeFormer": "the S-Lab License 1.0 (non-commercial use only)",
    "FeMaSR": "CC BY-NC-SA 4.0 (non-commercial use only)",
    "MAT": "CC BY-NC 4.0 (non-commercial use only)",
    "SRFormer": "a non-commercial licence",
    "Restormer": "the Academic Public License (non-commercial use only)",
    "MPRNet": "the Academic Public License (non-commercial use only)",
    "MIRNet2": "the Academic Public License (non-commercial use only)",
}


@dataclass
class Upscaler:
    name: str  # the file stem, as the metadata names it
    path: Path
    model: object = field(repr=False)  # spandrel's ImageModelDescriptor, on the device in `dtype`
    scale: int = 1
    dtype: torch.dtype = torch.float32
    architecture: str = ""
    licence: str = ""  # "" for spandrel's own (permissive) architectures
    tiled: bool = True  # False: the model tiles by itself (spandrel's ModelTiling.INTERNAL)
    minimum: int = 0  # the smallest input side it takes
    multiple_of: int = 1
    face: bool = False  # a face restorer (spandrel's purpose FaceSR), run by desktop/engine/faces.py

    @property
    def bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.model.parameters())


# ---------------------------------------------------------------------------- loading


def resolve(ref: str, models_folders=()) -> tuple[Path, str]:
    """The file and display name of an upscaler reference: "demo", a path, or a name in the upscaler folders."""
    if ref == DEMO_UPSCALER:
        return tiny_upscaler.build(tiny_upscaler.demo_path(paths.demo_model_dir())), DEMO_UPSCALER_NAME
    if ref == DEMO_RESTORER:
        return tiny_upscaler.build_restorer(tiny_upscaler.restorer_path(paths.demo_model_dir())), DEMO_RESTORER_NAME
    if ref == DEMO_FACE_RESTORER:
        path = tiny_upscaler.build_face_restorer(tiny_upscaler.face_restorer_path(paths.demo_model_dir()))
        return path, DEMO_FACE_RESTORER_NAME
    path = Path(ref).expanduser()
    if path.is_file():
        return path, path.stem
    if path.exists():
        raise UpscalerError(path.name, "it is a folder, not an upscaler file.")
    found = find_upscaler(ref, models_folders)
    if found is None:
        raise UpscalerError(path.name, f"there is no such file, and no upscaler of that name in {own_folder()} or the "
                                 "ESRGAN / upscale_models folders of your other apps. Give its path, or put it there.")
    return found, found.stem


def load(ref: str, manager, state: TaskState, models_folders=(), spare=(), face: bool = False) -> Upscaler:
    """The upscaler `ref`, from the ModelManager when it is still loaded, else from its file. `spare`: the
    ModelManager keys never unloaded to make room for it (the checkpoint of the hires fix it runs in). `face`:
    a face restorer (GFPGAN, RestoreFormer, CodeFormer) is wanted, and nothing else; without it one is refused."""
    path, name = resolve(ref, models_folders)
    key = str(path.resolve())
    held = manager.held(KIND, key)
    if held is not None:
        if held.face != face:
            raise UpscalerError(name, _not_a_face_restorer() if face else _a_face_restorer())
        return held
    state.status(f"Loading the {'face restorer' if face else 'upscaler'} {path.name}...")
    descriptor, architecture, licence = read_face_model(path, name) if face else read_model(path, name)
    device = manager.device
    dtype = torch.float32
    if device.dtype == torch.float16 and descriptor.supports_half:
        dtype = torch.float16
    elif device.dtype == torch.bfloat16 and descriptor.supports_bfloat16:
        dtype = torch.bfloat16
    size = sum(p.numel() for p in descriptor.model.parameters()) * torch.finfo(dtype).bits // 8
    pool = tuning.GPU if device.device.type == "cuda" else tuning.SYSTEM
    manager.make_room(pool, size, name, state, spare)
    try:
        descriptor = descriptor.to(device.device)
        descriptor = descriptor.half() if dtype == torch.float16 else \
            descriptor.bfloat16() if dtype == torch.bfloat16 else descriptor.float()
    except torch.OutOfMemoryError:
        manager.release_cache()
        raise OutOfMemory(f"The upscaler {name} does not fit in the memory of the {device.description}.") from None
    descriptor.eval()
    from spandrel import ModelTiling

    requirements = descriptor.size_requirements
    upscaler = Upscaler(name, path, descriptor, int(descriptor.scale), dtype, architecture, licence,
                        descriptor.tiling is not ModelTiling.INTERNAL, requirements.minimum,
                        requirements.multiple_of, face)
    manager.keep(KIND, key, upscaler, size, pool, name)
    if licence:
        state.status(f"{name} is a {architecture} model; its architecture comes from spandrel-extra-arches under "
                     f"{licence}. Check that the licence allows your use of its pictures.")
    return upscaler


def read_model(path: Path, name: str):
    """(spandrel descriptor on the CPU, architecture name, licence or "") of an upscaler file; UpscalerError
    with one sentence for a file that is not one, is damaged, or holds code."""
    descriptor, architecture, licence = _read_any(path, name)
    if descriptor.purpose not in ("SR", "Restoration"):
        what = {"FaceSR": "a face restorer", "Inpainting": "an inpainting model"}.get(descriptor.purpose, "not an upscaler")
        raise UpscalerError(name, f"it is {what}, not an upscaler.")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise UpscalerError(name, f"it takes {descriptor.input_channels} and gives {descriptor.output_channels} "
                                  "channels; Sfumato runs upscalers of RGB pictures.")
    return descriptor, architecture, licence


def read_face_model(path: Path, name: str):
    """(spandrel descriptor on the CPU, architecture name, licence or "") of a face restorer file (spandrel's
    purpose FaceSR: GFPGAN, RestoreFormer; CodeFormer with spandrel-extra-arches); UpscalerError otherwise."""
    descriptor, architecture, licence = _read_any(path, name)
    if descriptor.purpose != "FaceSR":
        raise UpscalerError(name, _not_a_face_restorer())
    return descriptor, architecture, licence


def _a_face_restorer() -> str:
    return "it is a face restorer, not an upscaler; use it to fix faces (Image > Restore..., Fix faces)."


def _not_a_face_restorer() -> str:
    return "it is not a face restorer; fixing faces takes a GFPGAN, RestoreFormer or CodeFormer file."


def _read_any(path: Path, name: str):
    """(spandrel's image descriptor, architecture name, licence or "") of any model spandrel reads, whatever its
    purpose; UpscalerError for a file it does not."""
    spandrel = import_spandrel()
    state_dict = read_weights(path, name)
    registry = _registry(spandrel)
    state_dict = spandrel.canonicalize_state_dict(state_dict)  # unwraps "params_ema" / "state_dict" ...
    try:
        descriptor = registry.load(state_dict)
    except spandrel.UnsupportedModelError:
        from desktop.core.modelfiles import FACE_RESTORERS

        if FACE_RESTORERS["CodeFormer"] <= set(state_dict):
            raise UpscalerError(name, "it is a CodeFormer face restorer, whose architecture is in spandrel-extra-arches "
                                      "under the S-Lab License 1.0 (non-commercial use only), which Sfumato does not "
                                      "install. Use a GFPGAN or RestoreFormer file, or, if your use is non-commercial, "
                                      "install spandrel-extra-arches yourself.") from None
        raise UpscalerError(name, "its layout is not one of the upscaler architectures Sfumato knows (ESRGAN, "
                                  "Real-ESRGAN, SwinIR, HAT, DAT, OmniSR, SPAN, ...). Is it an upscaler?") from None
    except Exception:  # noqa: BLE001 - a detected layout with the wrong shapes or missing weights
        raise UpscalerError(name, "its weights do not fit the architecture they look like; the file is damaged "
                                  "or not an upscaler. Download it again.") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UpscalerError(name, "it is not an upscaler.")
    architecture = descriptor.architecture
    licence = ""
    if type(architecture).__module__.startswith("spandrel_extra_arches"):
        licence = EXTRA_LICENCES.get(str(architecture.id), "a restrictive licence (often non-commercial)")
    return descriptor, architecture.name, licence


@dataclass(frozen=True)
class Reading:
    """What spandrel reads an upscaler-folder file as: its kind ("upscaler", "restorer" for scale 1, "face
    restorer"; "" for a file that is none of them: unreadable, damaged, grey, inpainting, ...), architecture and
    scale, and the licence of a spandrel-extra-arches architecture."""

    kind: str = ""
    architecture: str = ""
    scale: int = 0
    licence: str = ""

    @property
    def label(self) -> str:
        """"ESRGAN x4", "SCUNet x1 restorer", "GFPGAN face restorer"; "" when it is none of them."""
        if self.kind == "face restorer":
            return f"{self.architecture} face restorer"
        if self.kind:
            return f"{self.architecture} x{self.scale}" + (" restorer" if self.kind == "restorer" else "")
        return ""


_READINGS: dict[tuple[str, int, int], Reading] = {}  # (path, size, mtime) -> read_kind's answer


def read_kind(path: Path) -> Reading:
    """spandrel's reading of an upscaler-folder file (the truth where its header leaves the kind uncertain);
    read once per file version."""
    try:
        stat = path.stat()
    except OSError:
        return Reading()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _READINGS:
        try:
            descriptor, architecture, licence = _read_any(path, path.stem)
        except SfumatoError:
            _READINGS[key] = Reading()
        else:
            scale = int(descriptor.scale)
            if descriptor.purpose == "FaceSR":
                kind = "face restorer"
            elif descriptor.purpose in ("SR", "Restoration") and descriptor.input_channels == 3 == \
                    descriptor.output_channels:
                kind = "restorer" if scale == 1 else "upscaler"
            else:
                kind = ""
            _READINGS[key] = Reading(kind, architecture, scale, licence) if kind else Reading()
    return _READINGS[key]


def kind_of(path: Path) -> str:
    """"restorer" for a model of scale 1 (denoise, de-JPEG, restore), "upscaler" for a larger scale, "face
    restorer" for a face restoration model (GFPGAN, RestoreFormer, ...), "" for a file that is none of them."""
    return read_kind(path).kind


def read_weights(path: Path, name: str) -> dict:
    """The tensors of an upscaler file: safetensors, or a pickle through weights_only=True (never without)."""
    suffix = path.suffix.lower()
    if suffix not in UPSCALER_SUFFIXES:
        raise UpscalerError(name, "Sfumato opens upscalers saved as .safetensors, .pth, .pt or .ckpt files.")
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(path), device="cpu")
        else:
            weights = torch.load(str(path), map_location="cpu", weights_only=True)
    except OSError as error:
        raise UpscalerError(name, f"the file could not be read ({error.strerror or error}).") from None
    except Exception as error:  # noqa: BLE001 - every way a file is damaged or hostile becomes one sentence
        text = str(error).lower()
        if "unsupported global" in text or "global" in text and "weights only load failed" in text:
            raise UpscalerError(name, "the file contains code, not only weights, so it was not opened. Use a "
                                      ".safetensors version of it.") from None
        raise UpscalerError(name, "the file is damaged or incomplete, or not a PyTorch weights file. Download it "
                                  "again, or use a .safetensors version of it.") from None
    if isinstance(weights, dict) and not any(isinstance(v, torch.Tensor) for v in weights.values()):
        for wrapper in ("params_ema", "params", "state_dict", "model"):  # checkpoints that wrap their weights
            if isinstance(weights.get(wrapper), dict):
                weights = weights[wrapper]
                break
    if not isinstance(weights, dict) or not weights or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise UpscalerError(name, "it holds no weights Sfumato can read; it is not an upscaler.")
    return weights


def import_spandrel():
    """spandrel, also where torchvision cannot be imported (a CPU-only torch beside a CUDA torchvision: 'operator
    torchvision::nms does not exist'). spandrel's registry imports torchvision only for LaMa (inpainting) and
    RestoreFormer (faces), never to upscale, so the registry is imported with a stand-in that is removed again;
    its `normalize` works (RestoreFormer calls it), its `rotate` (LaMa's) says to install torchvision."""
    try:
        import spandrel

        return spandrel
    except ModuleNotFoundError as error:
        if error.name == "spandrel":
            raise SfumatoError("Upscaling needs the spandrel package: pip install spandrel") from None
        if not (error.name or "").startswith("torchvision"):
            raise
    except RuntimeError as error:
        if "torchvision" not in str(error):
            raise
    with _torchvision_stand_in():
        import spandrel
    return spandrel


@contextlib.contextmanager
def _torchvision_stand_in():
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if n == "torchvision" or n.startswith("torchvision.")}

    def unavailable(*args, **kwargs):
        raise SfumatoError("This model needs torchvision, which does not work with the installed torch: install "
                           "the torchvision that matches it.")

    def normalize(tensor, mean, std, inplace=False):  # RestoreFormer's only use of it: (x - 0.5) / 0.5 per channel
        mean = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return tensor.sub_(mean).div_(std) if inplace else (tensor - mean) / std

    modules = {n: types.ModuleType(n) for n in names}
    functional = modules["torchvision.transforms.functional"]
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest", BICUBIC="bicubic")
    functional.rotate = unavailable
    functional.normalize = normalize
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    modules["torchvision.transforms"].functional = functional
    sys.modules.update(modules)
    try:
        yield
    finally:
        for n in names:
            if sys.modules.get(n) is modules[n]:
                del sys.modules[n]
        sys.modules.update(saved)


def _registry(spandrel):
    """spandrel's main registry, plus spandrel-extra-arches' when the person installed it (never installed by us)."""
    try:
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        return spandrel.MAIN_REGISTRY
    registry = spandrel.MAIN_REGISTRY.copy()
    registry.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    return registry


# ---------------------------------------------------------------------------- running


def run(request: UpscaleRequest, state: TaskState, manager, models_folders=()) -> list[Result]:
    """Upscale the request's picture; one Result with A1111's Extras keys in `params`."""
    request = request.validated()
    if request.upscaler in PIXEL_UPSCALERS:
        return [_resampled(request)]
    upscaler = load(request.upscaler, manager, state, models_folders)
    if request.restore and upscaler.scale != 1:
        raise UpscalerError(upscaler.name, f"it is an x{upscaler.scale} upscaler, not a restorer. Choose a restorer "
                                           "(a model of scale 1, such as SCUNet, NAFNet, DRUNet or FBCNN).")
    image = request.image
    rgb, alpha = image[..., :3], (image[..., 3] if image.shape[2] == 4 else None)
    target = request.target()
    native = (rgb.shape[1] * upscaler.scale, rgb.shape[0] * upscaler.scale)
    if native != tuple(target):
        state.status(f"Upscaling to {native[0]}x{native[1]}, resampled to {target.width}x{target.height} (Lanczos) "
                     "as the rows are done...")
    out = upscale_image(upscaler, rgb, state, tile_side(upscaler, manager, rgb.shape[:2]),
                        release=manager.release_cache, size=tuple(target))
    if alpha is not None:  # upscalers see RGB; the transparency follows with Lanczos
        out = np.dstack([out, np.asarray(Image.fromarray(alpha).resize(tuple(target), Image.LANCZOS))])
    params = result_params(request, upscaler.name)
    return [Result(out, -1, request.replace(parameters=with_params(request.parameters, params)), params)]


def _resampled(request: UpscaleRequest) -> Result:
    """A Lanczos or Nearest resize of the whole picture (transparency too): no model, no tiles."""
    target = request.target()
    image = request.image
    if (image.shape[1], image.shape[0]) != tuple(target):
        method = Image.Resampling.LANCZOS if request.upscaler == "Lanczos" else Image.Resampling.NEAREST
        image = np.asarray(Image.fromarray(image).resize(tuple(target), method))
    params = result_params(request, request.upscaler)
    return Result(image, -1, request.replace(parameters=with_params(request.parameters, params)), params)


def enlarge(ref: str, image: np.ndarray, state: TaskState, manager, models_folders=(), spare=()) -> np.ndarray:
    """HxWx3 uint8 through the upscaler `ref` at its native scale, tiled: the hires fix's model upscale. Its tiles
    do not move the generation's progress bar; cancel still stops it within a tile."""
    upscaler = load(ref, manager, state, models_folders, spare)
    quiet = types.SimpleNamespace(cancelled=state.cancelled, status=state.status, step=lambda *args: None)
    return upscale_image(upscaler, np.ascontiguousarray(image[..., :3]), quiet,
                         tile_side(upscaler, manager, image.shape[:2]), release=manager.release_cache)


def tile_side(upscaler: Upscaler, manager, shape: tuple[int, int]) -> int:
    """The tile side for this picture: what a quarter of the free memory holds (an estimate: OOM halves it)."""
    if not upscaler.tiled:
        return max(shape)
    gpu, system = tuning.measure(manager.device)
    free = gpu if manager.device.device.type == "cuda" else _available_system_memory(system)
    bits = torch.finfo(upscaler.dtype).bits
    per_pixel = bits // 8 * 512 * upscaler.scale * upscaler.scale  # activations per input pixel, generously
    side = MAX_TILE if free is None else int(math.sqrt(free / 4 / per_pixel))
    side = max(MIN_TILE, min(MAX_TILE, side // 32 * 32))
    return min(side, max(MIN_TILE, max(shape)))


def _available_system_memory(total: int | None) -> int | None:
    try:
        import psutil

        return psutil.virtual_memory().available
    except (ImportError, OSError):
        return total


def upscale_image(upscaler: Upscaler, image: np.ndarray, state: TaskState, tile: int, overlap: int = OVERLAP,
                  release=None, size: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 -> (H*scale)x(W*scale)x3 uint8, tiled; halves the tile on out-of-memory down to MIN_TILE.
    `size` (width, height): the output's size when it is not the model's scale, made with Lanczos band by band
    as the model's rows are done (LanczosRows), so the model's larger output is never held whole."""
    height, width = image.shape[0] * upscaler.scale, image.shape[1] * upscaler.scale
    resampled = size is not None and tuple(size) != (width, height)
    while True:
        try:
            sink = LanczosRows((width, height), tuple(size)) if resampled else _Whole((width, height))
            _tiled(upscaler, image, state, tile, overlap, sink)
            return sink.out
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not _is_out_of_memory(error):
                raise
        if release is not None:  # frees what the failed try held (the manager's release_cache)
            release()
        if tile <= MIN_TILE:
            raise OutOfMemory(f"The upscaler {upscaler.name} ran out of memory even with {MIN_TILE}-pixel tiles. "
                              "Close other programs or use a smaller upscaler.")
        tile = max(MIN_TILE, tile // 2)
        state.status(f"Out of memory: trying again with {tile}-pixel tiles")


def _is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of `tile` pixels start to cover `length` with at least `overlap` shared between neighbours."""
    if length <= tile:
        return [0]
    step = tile - overlap
    found = list(range(0, length - tile, step))
    return found + [length - tile]


def ramps(length: int, tile: int, overlap: int, scale: int) -> tuple[list[int], list[np.ndarray], np.ndarray]:
    """Tile starts (input pixels), each tile's weight along this axis (output pixels), and their sum.

    Along an edge shared with a neighbour the weight is 0 over the outer quarter of the overlap (where the
    model sees the tile's border), rises linearly over its middle half and is 1 over its inner quarter; the
    neighbour's is the mirror image, so the two add up to 1 across the overlap.
    """
    first = starts(length, tile, overlap)
    size = min(tile, length) * scale
    fade = overlap * scale
    margin = fade // 4
    ramp = np.zeros(fade, np.float32)
    middle = fade - 2 * margin
    if middle > 0:
        ramp[margin:margin + middle] = (np.arange(middle, dtype=np.float32) + 0.5) / middle
    ramp[margin + middle:] = 1.0
    total = np.zeros(length * scale, np.float32)
    weights = []
    for start in first:
        weight = np.ones(size, np.float32)
        if start > 0:  # shares its leading edge with a neighbour
            weight[:fade] = ramp
        if start + min(tile, length) < length:
            weight[size - fade:] = np.minimum(weight[size - fade:], ramp[::-1])
        weights.append(weight)
        total[start * scale:start * scale + size] += weight
    return first, weights, np.maximum(total, 1e-12)


class _Whole:
    """Rows of the model's output kept as they are done, in the whole output."""

    def __init__(self, size: tuple[int, int]):
        self.out = np.empty((size[1], size[0], 3), np.uint8)

    def add(self, rows: np.ndarray, top: int) -> None:
        self.out[top:top + len(rows)] = rows


class LanczosRows:
    """Lanczos (PIL's) from `source` (width, height) to `size`, fed the source's rows in order and making the output
    band by band as the rows each band's filter reaches arrive; rows no later band reaches are dropped.

    The two passes go in a fixed order, each a one-axis PIL resize: the rows of a band (the band's exact source box
    inside a slice with `MARGIN` rows beyond the filter's reach on either side, so no tap is cut), then its width.
    PIL picks the order of its own two passes by size, and the 8-bit picture between them rounds and clips
    differently in the two orders, so the reference is `two_pass` (tests/engine/test_upscale_resample.py): the same
    to within one level, whatever the slices."""

    BAND = 64  # output rows made at once
    MARGIN = 2  # rows beyond the filter's support, for the rounding of its ends

    def __init__(self, source: tuple[int, int], size: tuple[int, int]):
        self.source, self.size = source, size
        self.out = np.empty((size[1], size[0], 3), np.uint8)
        self._per_row = source[1] / size[1]  # source rows per output row
        self._reach = 3.0 * max(self._per_row, 1.0) + self.MARGIN  # Lanczos-3's support, widened when shrinking
        self._rows = np.zeros((0, source[0], 3), np.uint8)  # source rows [self._top, self._top + len)
        self._top = 0
        self._done = 0  # output rows made

    def add(self, rows: np.ndarray, top: int) -> None:
        if top != self._top + len(self._rows):
            raise ValueError("LanczosRows takes the source's rows in order")
        self._rows = np.concatenate([self._rows, rows]) if len(self._rows) else np.array(rows)
        arrived = top + len(rows)
        width = self.source[0]
        while self._done < self.size[1]:
            end = min(self._done + self.BAND, self.size[1])
            low = max(0, math.floor(self._done * self._per_row - self._reach))
            high = min(self.source[1], math.ceil(end * self._per_row + self._reach))
            if high > arrived:
                return
            piece = Image.fromarray(self._rows[low - self._top:high - self._top])
            box = (0, self._done * self._per_row - low, width, end * self._per_row - low)
            band = piece.resize((width, end - self._done), Image.LANCZOS, box)  # the rows' pass only
            if width != self.size[0]:
                band = band.resize((self.size[0], end - self._done), Image.LANCZOS)  # then the width's
            self.out[self._done:end] = np.asarray(band)
            self._done = end
            keep = max(0, math.floor(self._done * self._per_row - self._reach)) - self._top  # the next band's low
            if keep > 0:
                self._rows, self._top = self._rows[keep:], self._top + keep


def two_pass(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The whole picture's Lanczos to `size` in LanczosRows' order of passes: its rows, then its width."""
    rows = Image.fromarray(image).resize((image.shape[1], size[1]), Image.LANCZOS)
    return np.asarray(rows.resize(size, Image.LANCZOS) if image.shape[1] != size[0] else rows)


def _tiled(upscaler: Upscaler, image: np.ndarray, state: TaskState, tile: int, overlap: int, sink) -> None:
    height, width = image.shape[:2]
    scale = upscaler.scale
    tile = max(tile, upscaler.minimum, 1)
    overlap = min(overlap, tile // 4) if max(height, width) > tile else 0
    ys, wys, ty = ramps(height, tile, overlap, scale)
    xs, wxs, tx = ramps(width, tile, overlap, scale)
    strip = np.zeros((0, width * scale, 3), np.float32)  # output rows [strip_top, strip_top + len(strip))
    strip_top = 0
    total, done = len(ys) * len(xs), 0
    th, tw = min(tile, height), min(tile, width)
    for y, wy in zip(ys, wys):
        top = y * scale
        _flush(sink, strip[:top - strip_top], strip_top)  # rows above this tile row are final
        strip = strip[top - strip_top:]
        grow = top + th * scale - (top + len(strip))
        if grow > 0:
            strip = np.concatenate([strip, np.zeros((grow, width * scale, 3), np.float32)])
        strip_top = top
        wy = (wy / ty[top:top + th * scale])[:, None, None]
        for x, wx in zip(xs, wxs):
            if state.cancelled():
                raise Cancelled(done)
            tile_out = _infer(upscaler, image[y:y + th, x:x + tw])
            left = x * scale
            tile_out *= wy
            tile_out *= (wx / tx[left:left + tw * scale])[None, :, None]
            strip[:th * scale, left:left + tw * scale] += tile_out
            done += 1
            state.step(done, total, None)
    _flush(sink, strip, strip_top)


def _flush(sink, rows: np.ndarray, top: int) -> None:
    if len(rows):
        sink.add(np.clip(np.rint(rows * 255.0), 0, 255).astype(np.uint8), top)


def _infer(upscaler: Upscaler, pixels: np.ndarray) -> np.ndarray:
    """One tile through the model: HxWx3 uint8 -> (H*s)x(W*s)x3 float32 in 0..1 (spandrel pads odd sizes)."""
    model = upscaler.model
    tensor = torch.from_numpy(np.array(pixels)).to(model.device)  # a copy: torch wants writable memory
    tensor = tensor.permute(2, 0, 1).unsqueeze(0).to(upscaler.dtype).div_(255.0)
    with torch.inference_mode():
        result = model(tensor)
    return result[0].permute(1, 2, 0).float().cpu().numpy()
