"""Where ControlNet files are, and the name and hash A1111 writes for one (pure; no torch).

A ControlNet is a single file (.safetensors, or a .pth / .pt / .ckpt read with weights_only) or a diffusers folder
(config.json and diffusion_pytorch_model.safetensors). They are looked for in:

- Sfumato's own ``<models folder>/controlnet``;
- beside a model folder of another app: AUTOMATIC1111 / Forge ``X/models/Stable-diffusion`` -> ``X/models/ControlNet``,
  ComfyUI ``X/models/checkpoints`` -> ``X/models/controlnet``; any model folder's own ``ControlNet`` / ``controlnet``
  subfolder.

A1111's ControlNet extension names a model by its file stem and the old-style hash of its file in brackets
(``control_v11p_sd15_canny [d14c016b]``: the first 8 hex digits of the sha256 of the 64 KiB at offset 1 MiB);
`infotext_name` writes that.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from desktop.core import paths
from desktop.core.app_folders import app_models_folder
from desktop.core.filescan import files_in

SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
OWN_SUBFOLDER = "controlnet"
_APP_FOLDERS = ("ControlNet", "controlnet")
_IP_ADAPTER = re.compile(r"ip[-_ ]?adapter", re.IGNORECASE)
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def own_folder() -> Path:
    return paths.models_dir() / OWN_SUBFOLDER


def controlnet_folders(models_folders: Iterable[str | os.PathLike]) -> list[Path]:
    """The existing folders where ControlNets are kept, Sfumato's own first."""
    candidates: list[Path] = [own_folder()]
    for folder in (Path(f).expanduser() for f in models_folders):
        app = app_models_folder(folder)
        if app is not None:
            candidates += [app[1] / name for name in _APP_FOLDERS]
        candidates += [folder / name for name in _APP_FOLDERS]
    found: list[Path] = []
    for candidate in candidates:
        try:
            key = candidate.resolve()
        except OSError:
            continue
        if candidate.is_dir() and key not in (f.resolve() for f in found):  # one folder on a case-blind disk
            found.append(candidate)
    return found


def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and any((path / n).is_file() for n in DIFFUSERS_WEIGHTS)


def list_controlnets(models_folders: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """name -> file or diffusers folder, for the ControlNets of the ControlNet folders (one level of subfolders).
    The IP-Adapters A1111 keeps in the same folder are left out by their names."""
    found: dict[str, Path] = {}
    for folder in controlnet_folders(models_folders):
        for path in files_in(folder, SUFFIXES, depth=1, is_item=is_diffusers_folder):
            name = path.stem if path.is_file() else path.name
            if not _IP_ADAPTER.search(name):
                found.setdefault(name, path)
    return found


def find_controlnet(name: str, models_folders: Iterable[str | os.PathLike]) -> Path | None:
    """The ControlNet called `name` (its stem, file name or folder name; exact case first, then any case)."""
    files = list_controlnets(models_folders)
    stem = Path(name).stem if Path(name).suffix.lower() in SUFFIXES else name
    if stem in files:
        return files[stem]
    folded = {key.casefold(): value for key, value in reversed(list(files.items()))}
    return folded.get(stem.casefold())


def weights_file(path: Path) -> Path:
    """The file holding a ControlNet's weights: the file itself, or a diffusers folder's weights file."""
    if path.is_dir():
        return next((path / n for n in DIFFUSERS_WEIGHTS if (path / n).is_file()), path / DIFFUSERS_WEIGHTS[0])
    return path


def short_hash(path: str | os.PathLike) -> str:
    """A1111's old-style model hash (8 hex digits) of a ControlNet's weights, as its ControlNet extension writes it."""
    digest = hashlib.sha256()
    with open(weights_file(Path(path)), "rb") as file:
        file.seek(0x100000)
        digest.update(file.read(0x10000))
    return digest.hexdigest()[:8]


def display_name(path: str | os.PathLike) -> str:
    path = Path(path)
    return path.name if path.is_dir() else path.stem


def infotext_name(path: str | os.PathLike, name: str | None = None) -> str:
    """``control_canny [a1b2c3d4]``: the name (default: the file's stem) and hash A1111 writes in
    "ControlNet N: ... Model: ..."."""
    name = name or display_name(path)
    try:
        return f"{name} [{short_hash(path)}]"
    except OSError:
        return name
