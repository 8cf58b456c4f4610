"""Where models come from: Sfumato's own folders, the folders people add, and
the model folders of other Stable Diffusion apps installed on this computer.

``list_models`` turns a scan (modelfiles.scan) into the rows the Models window
shows: what each thing is, whether Sfumato can use it, and if not, why.
``detect_other_apps`` only checks known relative paths under a few usual
places; it never walks a disk.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from desktop.core.safetensors_header import human_size as _human_size
from desktop.core import families, modelfiles, paths
from desktop.core.modelfiles import Family, ModelInfo

USABLE_FAMILIES = (Family.SD1, Family.SD2, Family.SDXL, *modelfiles.FLOW_FAMILIES)
FAMILY_LABELS = {
    **{family: spec.label for family, spec in families.SPECS.items()},  # "SD 1.x", "FLUX.1", ...
    Family.UNKNOWN: "",
}
POSTPROCESS_KINDS = ("upscaler", "restorer", "face restorer")  # the kinds of the upscaler folders' files
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")

# ---------------------------------------------------------------- other apps


@dataclass(frozen=True)
class Source:
    """A model folder of another app: ``app`` names the app for people."""

    app: str
    path: Path


# (app, install folder glob, models folder inside it). Globs match one level only.
_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("AUTOMATIC1111", "stable-diffusion-webui*", "models/Stable-diffusion"),
    ("Forge", "webui_forge*", "webui/models/Stable-diffusion"),  # the one-click Forge package
    ("SD.Next", "automatic", "models/Stable-diffusion"),
    ("SD.Next", "sdnext", "models/Stable-diffusion"),
    ("ComfyUI", "ComfyUI", "models/checkpoints"),
    ("ComfyUI", "comfyui", "models/checkpoints"),
    ("ComfyUI", "ComfyUI_windows_portable", "ComfyUI/models/checkpoints"),
    ("ComfyUI", "ComfyUI_portable", "ComfyUI/models/checkpoints"),
    ("InvokeAI", "invokeai", "models"),
    ("InvokeAI", "InvokeAI", "models"),
    ("Fooocus", "Fooocus", "models/checkpoints"),
    ("Stability Matrix", "StabilityMatrix", "Data/Models/StableDiffusion"),
    ("Stability Matrix", "StabilityMatrix", "Models/StableDiffusion"),
)
_HOME_SUBFOLDERS = ("", "Documents", "Desktop", "Downloads", "AI", "ai")


def detect_other_apps(home: Path | None = None, *, system_roots: Iterable[Path] | None = None) -> list[Source]:
    """The model folders of other Stable Diffusion apps that exist on this computer.

    Looks in ``home`` (default: the user's home), its Documents, Desktop, Downloads
    and AI folders, and in ``system_roots`` (default: C:\\ and D:\\ on Windows,
    /opt elsewhere); plus InvokeAI's ``INVOKEAI_ROOT``. Each found folder once.
    """
    home = Path.home() if home is None else Path(home)
    roots = _default_system_roots() if system_roots is None else [Path(r) for r in system_roots]
    bases = [home / sub if sub else home for sub in _HOME_SUBFOLDERS] + roots
    found: list[Source] = []
    seen: set[Path] = set()

    def add(app: str, folder: Path) -> None:
        try:
            if not folder.is_dir():
                return
            key = folder.resolve()
        except OSError:
            return
        if key not in seen:
            seen.add(key)
            found.append(Source(app, folder))

    invoke_root = os.environ.get("INVOKEAI_ROOT")
    if invoke_root:
        add("InvokeAI", Path(invoke_root).expanduser() / "models")
    for base in bases:
        for app, pattern, models in _LAYOUTS:
            for install in _matches(base, pattern):
                name = install.name.lower()
                label = "Forge" if app == "AUTOMATIC1111" and "forge" in name else app
                add(label, install / models)
    return found


def _default_system_roots() -> list[Path]:
    if sys.platform == "win32":
        return [Path("C:\\"), Path("D:\\")]
    return [Path("/opt")]


def _matches(base: Path, pattern: str) -> list[Path]:
    """Entries of base matching a one-level glob (a plain name is just checked)."""
    if not any(c in pattern for c in "*?["):
        return [base / pattern]
    try:
        return sorted(base.glob(pattern))
    except OSError:
        return []


# ------------------------------------------------------------- Sfumato's own


def hub_cache_dir() -> Path:
    """Where Hub downloads land. desktop.core.hub downloads here."""
    return paths.data_dir() / "hub"


def own_folders() -> list[Path]:
    """The folders Sfumato owns and always searches: its models folder and its downloads."""
    return [paths.models_dir(), hub_cache_dir()]


def parse_repo_id(text: str) -> str | None:
    """A Hugging Face model id ("owner/name") from what someone typed or pasted, or None.

    A model page address (https://huggingface.co/owner/name/...) gives its id.
    """
    text = text.strip()
    url = re.match(r"(?:https?://)?(?:www\.)?(?:huggingface\.co|hf\.co)/(.*)", text)
    if url:
        text = "/".join(url.group(1).split("/")[:2])
    part = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
    if not re.fullmatch(rf"{part}/{part}", text) or "--" in text or ".." in text:
        return None
    return text


# ------------------------------------------------------------------- listing


@dataclass(frozen=True)
class ModelEntry:
    """One row of the Models window: a scanned model and where it was found."""

    info: ModelInfo
    folder: Path  # the searched folder it was found in
    own: bool  # found in one of Sfumato's own folders
    name: str
    problem: str = ""  # why it can't be used; empty when it can
    label: str = ""  # what an upscaler-folder file is as the engine read it ("ESRGAN x4"; see read_as)

    @property
    def path(self) -> Path:
        return self.info.path

    @property
    def usable(self) -> bool:
        return not self.problem

    @property
    def family_label(self) -> str:
        if self.info.kind in POSTPROCESS_KINDS:
            return self.label or self.info.kind
        label = FAMILY_LABELS[self.info.family]
        spec = families.spec(self.info.family)
        if spec and spec.flow:  # the variant's own name ("FLUX.1 Fill [dev]"), the family's when it is not known
            return spec.variants[self.info.variant].label if self.info.variant in spec.variants.keys() - {""} else label
        if self.info.inpaint:
            label = f"{label} inpainting".strip()
        return label

    @property
    def size_label(self) -> str:
        return human_size(self.info.size_bytes)


def list_models(folders: Iterable[str | os.PathLike], *, upscalers: bool = False) -> list[ModelEntry]:
    """Every model in Sfumato's own folders and ``folders`` (the settings' models_folders),
    usable ones first; with `upscalers`, also the files of the upscaler folders (.pth too, and the
    other apps' ESRGAN / upscale_models folders beside their model folders: postprocess.upscaler_folders).
    Reads headers and configs only; call it off the GUI thread."""
    own = own_folders()
    searched = _unique([*own, *(Path(f).expanduser() for f in folders)])
    demo, hub = paths.demo_model_dir(), hub_cache_dir()
    entries = []
    infos = modelfiles.scan(searched)
    if upscalers:
        from desktop.core import postprocess

        seen = {info.path.resolve() for info in infos}
        searched += [f for f in postprocess.upscaler_folders(folders) if f not in searched]
        infos += [modelfiles.identify_or_explain(path) for path in postprocess.list_upscalers(folders).values()
                  if path.resolve() not in seen]
    for info in infos:
        if info.path == demo or demo in info.path.parents:
            continue
        folder = next((f for f in searched if f == info.path or f in info.path.parents), info.path.parent)
        downloaded = hub in info.path.parents
        name = _hub_name(info.path) if downloaded else info.name
        entries.append(ModelEntry(info, folder, folder in own, name, problem_of(info, downloaded=downloaded)))
    return sorted(entries, key=lambda e: (not e.usable, e.name.lower(), str(e.path)))


def read_as(entry: ModelEntry, kind: str, label: str, licence: str = "") -> ModelEntry:
    """The entry of an upscaler-folder file as the engine (spandrel) read it: its kind ("upscaler", "restorer",
    "face restorer"), label ("ESRGAN x4", "SCUNet x1 restorer") and architecture licence, which are the truth where
    the header's key names leave the kind uncertain. An empty kind (spandrel could not read it) keeps the entry."""
    if not kind:
        return entry
    note = f"{label}; its architecture is under {licence}" if licence else label
    info = replace(entry.info, kind=kind, note=note)
    return replace(entry, info=info, problem=problem_of(info), label=label)


def covering_folder(path: Path, folders: Iterable[Path]) -> Path | None:
    """The folder among ``folders`` whose scan finds ``path`` (within modelfiles.SCAN_DEPTH)."""
    for folder in folders:
        if folder in path.parents and len(path.relative_to(folder).parts) <= modelfiles.SCAN_DEPTH + 1:
            return folder
    return None


def _unique(folders: list[Path]) -> list[Path]:
    seen, unique = set(), []
    for folder in folders:
        if folder not in seen:
            seen.add(folder)
            unique.append(folder)
    return unique


def _hub_name(path: Path) -> str:
    """owner/name for a Hub snapshot (hub/models--owner--name/snapshots/<commit>)."""
    for part in path.parts:
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    return path.name


def problem_of(info: ModelInfo, *, downloaded: bool = False) -> str:
    """Why Sfumato can't use this model (a phrase), or "" when it can."""
    if info.kind == "unknown":
        # Drop the file name that ModelFileError's sentence starts with: the row already shows it.
        return info.note.removeprefix(f"{info.path.name} is ") or "Sfumato can't tell what this is"
    kinds = {
        "lora": "a LoRA, not a full model",
        "vae": "a VAE, not a full model",
        "embedding": "a textual-inversion embedding, not a full model",
        "upscaler": "an upscaler (for Upscale and `sfumato upscale`), not a full model",
        "restorer": "a restorer (for Restore and `sfumato restore`), not a full model",
        "face restorer": "a face restorer (for fixing faces), not a full model",
        "controlnet": "a ControlNet (for control layers and `--control`), not a full model",
        "text encoder": "a text encoder, not a full model",
    }
    if info.kind in kinds:
        return kinds[info.kind]
    if info.family is Family.SDXL_REFINER:
        return "an SDXL refiner, which only works after an SDXL base model"
    if info.family not in USABLE_FAMILIES:
        return info.note or "not a model family Sfumato knows"
    if info.format == "diffusers":
        missing = _missing_weights(info.path)
        if missing:
            what = f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no weights"
            if downloaded:
                return f"the download did not finish ({what}); download it again to finish it"
            return f"incomplete: {what}"
    return ""


def _missing_weights(folder: Path) -> list[str]:
    """Components of a diffusers folder (subfolders with a config.json) without weights."""
    missing = []
    try:
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    for sub in subfolders:
        if not (sub / "config.json").is_file():
            continue
        try:
            has_weights = any(p.suffix in WEIGHT_SUFFIXES for p in sub.iterdir())
        except OSError:
            has_weights = False
        if not has_weights:
            missing.append(sub.name)
    return missing


def human_size(size: int) -> str:
    return _human_size(size) if size > 0 else ""
