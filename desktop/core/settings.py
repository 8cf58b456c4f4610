"""Typed settings with defaults and validation, stored as JSON in the config folder.

A missing file gives the defaults; a corrupt one gives the defaults too, and
`load()` reports why in `Settings.notice` so the app can say so. Unknown keys
are ignored, bad values fall back to their default one by one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, paths

DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
PREVIEW_METHODS = ("approximate", "taesd", "off")
THEMES = ("system", "light", "dark")
# A flow model's transformer weights: "auto" in int8 where a CUDA GPU would otherwise need sequential offload,
# "full" always in the working dtype, "int8" always in int8 (desktop/engine/tuning.py)
WEIGHT_STORAGES = ("auto", "full", "int8")
# How the CPU runs a model (desktop/core/cpu_runtime.py): "auto" the faster of the two on this CPU, as measured
# once (never guessed); "pytorch"; "openvino" (converts each model once, then runs faster on most Intel/AMD CPUs)
CPU_RUNTIMES = ("auto", "pytorch", "openvino")
MAX_CPU_THREADS = 256

_CHOICES = {"device": DEVICES, "precision": PRECISIONS, "preview_method": PREVIEW_METHODS, "theme": THEMES,
            "weight_storage": WEIGHT_STORAGES, "cpu_runtime": CPU_RUNTIMES}


@dataclass
class Settings:
    device: str = "auto"
    precision: str = "auto"
    weight_storage: str = "auto"
    cpu_runtime: str = "auto"  # CPU_RUNTIMES
    cpu_threads: int = 0  # threads a CPU run uses; 0: one per physical core (desktop/engine/devices.py)
    # model or LoRA file name (ModelInfo.name) -> the few-step kind its owner says it is (desktop/core/fewstep.py
    # KINDS), for files whose name and metadata do not tell
    few_step_marks: dict = field(default_factory=dict)
    models_folders: list[str] = field(default_factory=list)
    output_folder: str = ""  # empty: paths.output_dir()
    preview_method: str = "approximate"
    preview_every: int = 1
    theme: str = "system"
    model: str = "demo"
    last_request: dict = field(default_factory=dict)  # the prompt panel's values (GenerationRequest.to_dict())
    batch_count: int = 1
    aspect_locked: bool = False  # the prompt panel's size lock
    last_export_folder: str = ""
    welcome_done: bool = False  # the first-start welcome was answered
    mark_ai: bool = True  # saved pictures say in XMP that they are generated (IPTC digital source type)
    # saved pictures carry a signed C2PA manifest (desktop/core/credentials.py): with Sfumato's own key, or with
    # the person's certificate chain and private key (PEM files) when both are named
    content_credentials: bool = True
    credentials_certificate: str = ""
    credentials_key: str = ""
    # Where pictures are made: "" is this computer; else a Sfumato server's address (`sfumato serve`), with the
    # bearer token its reverse proxy or --token wants. The token is kept here in plain text, as A1111 and Krita
    # keep theirs.
    server_url: str = ""
    server_token: str = ""
    notice: str = field(default="", compare=False, metadata={"stored": False})

    def output_path(self) -> Path:
        return Path(self.output_folder).expanduser() if self.output_folder else paths.output_dir()

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("stored", True)}

    @classmethod
    def from_json(cls, data: dict) -> Settings:
        settings = cls()
        for f in dataclasses.fields(cls):
            if f.name in data and f.metadata.get("stored", True):
                value = data[f.name]
                if _valid(f.name, value, getattr(settings, f.name)):
                    setattr(settings, f.name, value)
        return settings


def _valid(name: str, value: object, default: object) -> bool:
    if name in _CHOICES:
        return value in _CHOICES[name]
    if name in ("preview_every", "batch_count"):
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100
    if name == "cpu_threads":
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_CPU_THREADS
    if name == "few_step_marks":
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if isinstance(default, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, type(default))


def load(path: Path | None = None, *, set_aside: bool = True) -> Settings:
    """The settings in `path`; defaults with a `notice` when it cannot be read, and then (with `set_aside`, as
    the window does) the file is renamed to .bad so that it is not written over."""
    path = path or paths.settings_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as error:
        settings = Settings()
        kept = path.with_name(path.name + ".bad")
        where = ""
        try:
            if set_aside:
                os.replace(path, kept)
                where = f" It was kept as {kept.name}."
        except OSError:
            pass
        settings.notice = f"The settings file {path} could not be read ({error}); the defaults are used.{where}"
        return settings
    return Settings.from_json(data)


def save(settings: Settings, path: Path | None = None) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    atomic.write_text(path or paths.settings_file(), json.dumps(settings.to_json(), indent=2))
