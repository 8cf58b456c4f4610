"""What the window's add-on lists offer: the upscalers, restorers and face restorers (Upscale and Restore dialogs,
the hires fix), the ControlNets and IP-Adapters (control layers).

On this computer they are the files of its folders (`from_files`: a name shown, the file's path sent); with a
Sfumato server they are the models its catalogue lists (`from_server`, from the same GET /models answer as the
model picker: a name shown, the name the server lists it under sent), since a server refuses paths of the client.
The built-in demo models are left out of these lists: the window always offers them, by their built-in names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from desktop.core.backend import ModelDescriptor
from desktop.core.control import DEMO_CONTROLNET
from desktop.core.postprocess import DEMO_RESTORER, DEMO_UPSCALER, UPSCALE, PostprocessFiles

CONTROLNET, ADAPTER = "controlnet", "ipadapter"  # the ModelDescriptor kinds of a server's catalogue
_UPSCALE_FAMILIES = {"restorer": "restorers", "face restorer": "faces"}  # else an upscaler


@dataclass(frozen=True)
class ModelLists:
    """name shown -> reference sent. `controlnets` / `adapters`: names, or None where the control layers list this
    computer's folders themselves. `server`: the server's address the lists are of ("" for this computer)."""

    upscalers: dict[str, str] = field(default_factory=dict)
    restorers: dict[str, str] = field(default_factory=dict)
    faces: dict[str, str] = field(default_factory=dict)
    controlnets: tuple[str, ...] | None = None
    adapters: tuple[str, ...] | None = None
    server: str = ""


def from_files(files: PostprocessFiles) -> ModelLists:
    """This computer's upscaler folders' files by their names, each sent as its path."""
    return ModelLists(*({name: str(path) for name, path in found.items()}
                        for found in (files.enlargers, files.restorers, files.faces)))


def from_server(models: list[ModelDescriptor], server: str) -> ModelLists:
    """A server's catalogue (RemoteBackend.models()): its upscalers, restorers and face restorers (kind "upscale",
    told apart by their family), ControlNets and IP-Adapters, each by the name the server lists it under."""
    lists: dict[str, dict[str, str]] = {"upscalers": {}, "restorers": {}, "faces": {}}
    controlnets, adapters = [], []
    for model in models:
        if UPSCALE in model.kinds and model.ref not in (DEMO_UPSCALER, DEMO_RESTORER):
            lists[_UPSCALE_FAMILIES.get(model.family, "upscalers")].setdefault(model.name or model.ref, model.ref)
        if CONTROLNET in model.kinds and model.ref != DEMO_CONTROLNET:
            controlnets.append(model.ref)
        if ADAPTER in model.kinds and model.ref != DEMO_CONTROLNET:
            adapters.append(model.ref)
    return ModelLists(**lists, controlnets=tuple(sorted(set(controlnets))), adapters=tuple(sorted(set(adapters))),
                      server=server)


def nothing_yet(server: str) -> ModelLists:
    """Before the first scan of this computer's folders or of the server at `server`: nothing but the built-in
    models is offered, and control layers never list this computer's folders for a server."""
    return ModelLists(controlnets=() if server else None, adapters=() if server else None, server=server)
