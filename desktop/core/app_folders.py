"""Which other app a model folder belongs to (pure): the one rule every "beside the other app's models" search uses.

A model folder ``X/models/Stable-diffusion`` (AUTOMATIC1111, Forge, SD.Next; ``stablediffusion`` too) is an A1111-
style install whose models folder is ``X/models``; ``X/models/checkpoints`` is ComfyUI's. The names are compared
without regard to case. ControlNets, IP-Adapters, upscalers and preprocessor weights are then looked for in that
models folder's own subfolders (and, for preprocessors, in the install ``X``).
"""

from __future__ import annotations

import os
from pathlib import Path

A1111, COMFYUI = "a1111", "comfyui"
_CHECKPOINT_FOLDERS = {"stable-diffusion": A1111, "stablediffusion": A1111, "checkpoints": COMFYUI}


def app_models_folder(folder: str | os.PathLike) -> tuple[str, Path] | None:
    """("a1111" | "comfyui", the app's models folder) for a checkpoint folder of such an app, else None."""
    folder = Path(folder).expanduser()
    app = _CHECKPOINT_FOLDERS.get(folder.name.lower())
    if app is None or folder.parent.name.lower() != "models":
        return None
    return app, folder.parent
