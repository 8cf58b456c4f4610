"""IP-Adapter files for reference pictures: where they are, what they need, how they are written (pure).

A reference names its adapter as a file, a file's name, or "demo" (the tiny adapter of the tiny models).
Files are looked for in Sfumato's own ``<models>/ipadapter``, and beside each model folder of another app:
ComfyUI's ``models/ipadapter`` (beside ``models/checkpoints``) and A1111's ``models/ControlNet`` (beside
``models/Stable-diffusion``: the ControlNet extension keeps IP-Adapter files with the ControlNets). Only
``.safetensors`` adapters are used (the ``.bin`` ones are pickles).

An adapter needs the CLIP image encoder it was trained with: a transformers folder (config.json +
model.safetensors, as h94/IP-Adapter's ``image_encoder``), or that model.safetensors alone, as ComfyUI keeps
them (``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors``: its config is read from its tensor shapes, for the
CLIP towers IP-Adapters use). It is found ``image_encoder`` beside the adapter file (h94's layout) or in a
``clip_vision`` folder (Sfumato's own ``<models>/clip_vision``, ComfyUI's ``models/clip_vision`` beside its
``models/ipadapter``). Of several, the first whose output width is the one the adapter's image projection
takes.

The infotext writes one key per reference (our own key family, so A1111's ``ControlNet N`` keys stay the
ControlNets'): ``IP-Adapter 0: "Model: ip-adapter_sd15 [0123abcd], Weight: 0.6, Mode: style"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from desktop.core import paths
from desktop.core.app_folders import COMFYUI, app_models_folder
from desktop.core.errors import SfumatoError
from desktop.core.filescan import files_in
from desktop.core.safetensors_header import ModelFileError, read_safetensors_header

DEMO = "demo"
OWN_SUBFOLDER = "ipadapter"
ENCODER_SUBFOLDER = "clip_vision"
SUFFIX = ".safetensors"
MAX_CONFIG_BYTES = 1 << 20
# The cross-attention width of each family's UNet: which models an adapter is for.
FAMILY_WIDTHS = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
EXAMPLES = {768: "ip-adapter_sd15.safetensors", 2048: "ip-adapter_sdxl_vit-h.safetensors"}  # h94/IP-Adapter's


class ReferenceError(SfumatoError):
    pass


@dataclass(frozen=True)
class AdapterLayout:
    image_width: int  # the width of the image encoder's output the adapter takes
    hidden_states: bool  # True: the encoder's hidden states (Plus, Full face); False: its image embedding
    cross_width: int  # the UNet cross-attention width it was trained for


def own_folder() -> Path:
    return paths.models_dir() / OWN_SUBFOLDER


def own_encoder_folder() -> Path:
    return paths.models_dir() / ENCODER_SUBFOLDER


def adapter_folders(models_folders: Iterable[str | os.PathLike]) -> list[Path]:
    """The existing folders where IP-Adapter files are kept, Sfumato's own first."""
    candidates = [own_folder()]
    for folder in (Path(f).expanduser() for f in models_folders):
        app = app_models_folder(folder)
        if app is not None:
            candidates.append(app[1] / ("ipadapter" if app[0] == COMFYUI else "ControlNet"))
    return _existing(candidates)


def encoder_folders(models_folders: Iterable[str | os.PathLike]) -> list[Path]:
    """The existing ``clip_vision`` folders, Sfumato's own first."""
    candidates = [own_encoder_folder()]
    for folder in (Path(f).expanduser() for f in models_folders):
        app = app_models_folder(folder)
        if app is not None:
            candidates.append(app[1] / "clip_vision")
    return _existing(candidates)


def _existing(candidates: list[Path]) -> list[Path]:
    found: list[Path] = []
    for candidate in candidates:
        if candidate not in found and candidate.is_dir():
            found.append(candidate)
    return found


def list_adapters(models_folders: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """name (file stem) -> file, for the .safetensors files of the adapter folders, the first of a name kept.
    A1111's models/ControlNet holds ControlNets too: only files whose name says ip-adapter are listed from it."""
    found: dict[str, Path] = {}
    for folder in adapter_folders(models_folders):
        mixed = folder.name == "ControlNet"
        for path in files_in(folder, (SUFFIX,), depth=0):
            if not mixed or "ip-adapter" in path.stem.lower().replace("_", "-"):
                found.setdefault(path.stem, path)
    return found


def find_adapter(name: str, models_folders: Iterable[str | os.PathLike]) -> Path:
    """The adapter file `name` means: a path to a file, or a file's name (with or without .safetensors) in the
    adapter folders, exact case first. Raises ReferenceError with where they go when there is none."""
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() in (".bin", ".pt", ".pth", ".ckpt"):
        raise ReferenceError(f"{path.name} is a pickle file; Sfumato uses .safetensors IP-Adapters. Download the "
                             ".safetensors version.")
    if path.is_file():
        return path
    stem = path.stem if path.suffix.lower() == SUFFIX else name
    folders = adapter_folders(models_folders)
    files = [f for folder in folders for f in files_in(folder, (SUFFIX,), depth=0)]
    for match in ([f for f in files if f.stem == stem], [f for f in files if f.stem.casefold() == stem.casefold()]):
        if match:
            return match[0]
    where = " or ".join(str(f) for f in [own_folder(), *folders[1:]])
    raise ReferenceError(f"No IP-Adapter file is named {name}. Put it (a .safetensors file) in {where}, or give "
                         "its path.")


def read_adapter(path: Path) -> AdapterLayout:
    """What the IP-Adapter file needs, from its header (no tensor is read)."""
    try:
        shapes = {key: tuple(info.shape) for key, info in read_safetensors_header(path).tensors.items()}
    except (ModelFileError, OSError) as error:
        raise ReferenceError(f"Could not read the IP-Adapter {path.name}: {_reason(error)}") from None
    if not any(key.startswith("ip_adapter.") for key in shapes):
        raise ReferenceError(f"{path.name} is not an IP-Adapter file (it has no image_proj and ip_adapter "
                             "weights). Choose an IP-Adapter, such as ip-adapter_sd15.safetensors.")
    proj = lambda name: shapes.get(f"image_proj.{name}")  # noqa: E731
    if proj("proj.weight") is not None and len(proj("proj.weight")) == 2 and proj("norm.weight") is not None:
        width = proj("proj.weight")[1]
        return AdapterLayout(width, False, proj("norm.weight")[0])
    if proj("latents") is not None and proj("proj_in.weight") is not None and proj("proj_out.weight") is not None:
        return AdapterLayout(proj("proj_in.weight")[1], True, proj("proj_out.weight")[0])
    if proj("proj.0.weight") is not None and proj("proj.3.weight") is not None:
        return AdapterLayout(proj("proj.0.weight")[1], True, proj("proj.3.weight")[0])
    raise ReferenceError(f"{path.name} is an IP-Adapter Sfumato does not use (FaceID adapters need InsightFace). "
                         "Use an IP-Adapter, IP-Adapter Plus or Full face file.")


# The CLIP vision towers IP-Adapters are trained with, by width: (attention heads, activation). A single
# encoder file has no config, and its shapes do not tell these two.
VISION_TOWERS = {768: (12, "quick_gelu"), 1024: (16, "quick_gelu"), 1280: (16, "gelu"), 1664: (16, "gelu")}
_VISION = "vision_model."


def encoder_config(shapes: dict[str, tuple[int, ...]]) -> dict | None:
    """The transformers CLIPVisionConfig values of a single-file image encoder in transformers' key layout
    (ComfyUI's clip_vision files), from its tensor shapes; None when it is not one, or not a known tower."""
    patch = shapes.get(_VISION + "embeddings.patch_embedding.weight")
    positions = shapes.get(_VISION + "embeddings.position_embedding.weight")
    projection = shapes.get("visual_projection.weight")
    fc1 = shapes.get(_VISION + "encoder.layers.0.mlp.fc1.weight")
    if None in (patch, positions, projection, fc1) or len(patch) != 4 or patch[0] not in VISION_TOWERS:
        return None
    side = int((positions[0] - 1) ** 0.5)
    if side * side != positions[0] - 1:
        return None
    prefix = _VISION + "encoder.layers."
    layers = {key[len(prefix):].split(".", 1)[0] for key in shapes if key.startswith(prefix)}
    heads, act = VISION_TOWERS[patch[0]]
    return {"hidden_size": patch[0], "intermediate_size": fc1[0], "projection_dim": projection[0],
            "num_hidden_layers": len(layers), "num_attention_heads": heads, "hidden_act": act,
            "image_size": side * patch[2], "patch_size": patch[2], "num_channels": patch[1]}


def encoder_file_config(path: Path) -> dict | None:
    try:
        tensors = read_safetensors_header(path).tensors
    except (ModelFileError, OSError):
        return None
    return encoder_config({key: tuple(info.shape) for key, info in tensors.items()})


def read_encoder(folder: Path) -> tuple[int, int] | None:
    """(image embedding width, hidden state width) of an image encoder folder or file; None when it is not one."""
    if folder.suffix.lower() == SUFFIX and folder.is_file():
        config = encoder_file_config(folder)
        return None if config is None else (config["projection_dim"], config["hidden_size"])
    try:
        config_file = folder / "config.json"
        if not (folder / "model.safetensors").is_file() or config_file.stat().st_size > MAX_CONFIG_BYTES:
            return None
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config = config.get("vision_config", config)
        return int(config["projection_dim"]), int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def find_encoder(adapter: Path, layout: AdapterLayout, models_folders: Iterable[str | os.PathLike]) -> Path:
    """The image encoder (folder or file) for `adapter`: ``image_encoder`` beside it, then the clip_vision
    folders, the first whose output is as wide as the adapter takes. Raises ReferenceError saying where to put
    one."""
    candidates = [adapter.parent / "image_encoder", adapter.parent.parent / ENCODER_SUBFOLDER]
    for folder in [*candidates[1:], *encoder_folders(models_folders)]:
        try:
            candidates += sorted(p for p in folder.iterdir() if p.is_dir() or p.suffix.lower() == SUFFIX)
        except OSError:
            pass
    for candidate in dict.fromkeys(candidates):
        widths = read_encoder(candidate)
        if widths is not None and widths[1 if layout.hidden_states else 0] == layout.image_width:
            return candidate
    raise ReferenceError(
        f"No image encoder for the IP-Adapter {adapter.name} was found. Put the CLIP vision encoder it was "
        f"trained with (a folder with config.json and model.safetensors, such as h94/IP-Adapter's image_encoder, "
        f"or that model.safetensors alone) in {own_encoder_folder()}, or beside the adapter file in a folder named "
        "image_encoder.")


def models_of_width(width: int) -> str:
    """The models whose UNet has this cross-attention width, in words: "SDXL models"."""
    return f"{FAMILY_WIDTHS[width]} models" if width in FAMILY_WIDTHS else f"models of cross-attention width {width}"


def style_scale(family: str, up_attentions: list[int], weight: float) -> dict:
    """InstantStyle's style-only scales for set_ip_adapter_scale: the first up block with attention layers
    (SDXL: its second attention layer only; SD 1.x: the whole block, as InstantStyle's SD 1.5 example).
    `up_attentions`: the number of attention layers of each up block (0 for one without)."""
    index = next((i for i, count in enumerate(up_attentions) if count), None)
    if index is None:
        raise ReferenceError("This model's UNet has no attention layers in its up blocks, so a reference cannot "
                             "be used for style only. Use the mode content.")
    count = up_attentions[index]
    if family == "sdxl" and count > 1:
        return {"up": {f"block_{index}": [weight if i == 1 else 0.0 for i in range(count)]}}
    return {"up": {f"block_{index}": weight}}


def params(entries: Iterable[tuple[str, str, float, str]]) -> tuple[tuple[str, str], ...]:
    """The infotext entries of the references: (adapter name, short hash, weight, mode) each."""
    out = []
    for index, (name, short, weight, mode) in enumerate(entries):
        model = f"{name} [{short}]" if short else name
        out.append((f"IP-Adapter {index}", f"Model: {model}, Weight: {weight:g}, Mode: {mode}"))
    return tuple(out)


def _reason(error: Exception) -> str:
    text = getattr(error, "reason", None) or str(error)
    text = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return text if text.endswith((".", "!", "?")) else text + "."
