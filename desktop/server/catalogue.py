"""The server's models by name: what a client may ask for, never a path of its own.

A model is listed under its backend ref when that is a name ("demo", "demo-restorer") and under its name (the
file's stem) when the ref is a path on the server, so the server's folders are never shown. `resolve(name,
kind)` gives the backend's ref for a listed name of that kind (remote_protocol's MODEL, UPSCALER, ...), and
refuses anything else, a path included, in one sentence.
"""

from __future__ import annotations

import threading

from desktop.core import remote_protocol as protocol
from desktop.core.backend import GENERATION, ModelDescriptor
from desktop.core.postprocess import UPSCALE

# resolve's kind -> (the ModelDescriptor kind it looks among, the words for it)
_KINDS = {protocol.MODEL: (GENERATION, "model"), protocol.UPSCALER: (UPSCALE, "upscaler"),
          protocol.HIRES_UPSCALER: (UPSCALE, "hires upscaler"), protocol.CONTROLNET: ("controlnet", "ControlNet"),
          protocol.ADAPTER: ("ipadapter", "IP-Adapter")}
BUILT_IN = {protocol.ADAPTER: ("demo",)}  # made by the engine, not listed by a backend


def public_ref(descriptor: ModelDescriptor) -> str:
    ref = descriptor.ref
    return descriptor.name if any(c in ref for c in "/\\:") or ref.startswith((".", "~")) else ref


class Catalogue:
    def __init__(self):
        self._lock = threading.Lock()
        self._models: list[ModelDescriptor] = []

    @property
    def empty(self) -> bool:
        return not self._models

    def update(self, models: list[ModelDescriptor]) -> None:
        with self._lock:
            self._models = list(models)

    def listed(self) -> list[dict]:
        with self._lock:
            return [protocol.describe_model(m, public_ref(m)) for m in self._models]

    def resolve(self, name: str, kind: str) -> str:
        model_kind, words = _KINDS[kind]
        if name in BUILT_IN.get(kind, ()):
            return name
        with self._lock:
            candidates = [m for m in self._models if model_kind in m.kinds]
        for match in (lambda m: public_ref(m) == name, lambda m: m.name == name):
            for model in candidates:
                if match(model):
                    return model.ref
        raise protocol.UnknownModel(
            f"The server has no {words} named {name!r}: ask for one of its own by name (its list is at GET /models, "
            "and in the model picker when Sfumato is connected to it).")
