"""Which tokenizer folder reads a model's prompts, for the prompt panel's token counter.

- a diffusers folder: its ``tokenizer/`` (an SDXL refiner has only ``tokenizer_2/``);
- a single file: the sidecar ``<name>.config/tokenizer`` when there is one;
- the demo model: the tiny model's own tokenizer, once the demo is built
  (``<demo_model_dir>/tiny-sd1/tokenizer``, the layout desktop/engine/tiny.py writes);
- anything else (a file without a sidecar, a Hub id, a folder without a
  tokenizer): the bundled CLIP vocabulary, the one SD 1.x, 2.x and SDXL use.

Pure Python: only file checks, no Qt, no engine import.
"""

from __future__ import annotations

from pathlib import Path

from desktop.core import clip_tokenizer, modelfiles, paths
from desktop.core.model_choice import DEMO

FILES = ("vocab.json", "merges.txt")
# Where desktop/engine/tiny.py builds the demo model under paths.demo_model_dir().
DEMO_TOKENIZER = Path("tiny-sd1") / "tokenizer"


def bundled_folder() -> Path:
    return paths.resources_dir() / "configs" / "clip-tokenizer"


def tokenizer_folder(model: str) -> Path:
    """The folder whose vocab.json and merges.txt tokenize `model`'s prompts (a settings model reference)."""
    if model == DEMO:
        candidates = [paths.demo_model_dir() / DEMO_TOKENIZER]
    else:
        path: Path | None = Path(model).expanduser()
        if path.is_file():
            path = modelfiles.sidecar_config(path)
        candidates = [path / "tokenizer", path / "tokenizer_2"] if path is not None else []
    for folder in candidates:
        if all((folder / name).is_file() for name in FILES):
            return folder
    return bundled_folder()


def tokenizer_for(model: str) -> clip_tokenizer.ClipTokenizer:
    """The (cached) tokenizer of `model`; a tokenizer folder that cannot be read gives way to the bundled one."""
    folder = tokenizer_folder(model)
    try:
        return clip_tokenizer.load(folder)
    except clip_tokenizer.TokenizerFilesError:
        return clip_tokenizer.load(bundled_folder())
