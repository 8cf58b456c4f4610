"""Textual-inversion embeddings: read the files A1111, kohya and diffusers write.

Layouts (A1111's textual_inversion reads the same):
- ``string_to_param: {"*": [n, d]}`` (.pt from A1111's training; also in .safetensors as a flat key);
- ``emb_params: [n, d]`` (.safetensors), or any one tensor (diffusers' ``{"<token>": [d]}``);
- ``clip_l: [n, 768]`` and ``clip_g: [n, 1280]`` (SDXL).
An embedding is used by its file stem, with the model whose text encoders have
its widths; others are reported, not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from desktop.core.errors import SfumatoError
from desktop.core.safetensors_header import open_regular

MAX_VECTORS = 75


@dataclass
class EmbeddingLibrary:
    """The embeddings of the model folders, read once per file version, sorted into usable and not."""

    _cache: dict[Path, tuple[tuple, dict | str]] = field(default_factory=dict)

    def for_model(self, files: dict[str, Path], widths: dict[str, int]) -> tuple[dict, dict[str, str]]:
        """(name -> vectors per encoder key) usable with encoders of `widths` ({"clip_l": 768, ...}), and
        name -> why the others cannot be used."""
        usable, refused = {}, {}
        for name, path in files.items():
            vectors = self._read(path)
            if isinstance(vectors, str):
                refused[name] = vectors
            elif set(vectors) == set(widths) and all(vectors[k].shape[-1] == w for k, w in widths.items()):
                usable[name] = {key: vectors[key] for key in widths}
            else:
                have = "+".join(str(v.shape[-1]) for v in vectors.values())
                refused[name] = (f"{path.name} is an embedding for another model family (vectors of width {have}; "
                                 f"this model's text encoders take {'+'.join(map(str, widths.values()))})")
        return usable, refused

    def _read(self, path: Path):
        try:
            stat = path.stat()
            version = (stat.st_size, stat.st_mtime_ns)
        except OSError as error:
            return f"{path.name} could not be read: {error.strerror or error}"
        cached = self._cache.get(path)
        if cached is None or cached[0] != version:
            try:
                value = read_embedding(path)
            except SfumatoError as error:
                value = str(error)
            cached = self._cache[path] = (version, value)
        return cached[1]


def read_embedding(path: Path) -> dict[str, torch.Tensor]:
    """The vectors of an embedding file per encoder key ("clip_l", "clip_g"), float32 [n, d]."""
    data = _load(path)
    if isinstance(data, dict) and "string_to_param" in data and isinstance(data["string_to_param"], dict):
        data = data["string_to_param"]
    if isinstance(data, dict) and "clip_l" in data and "clip_g" in data:
        vectors = {"clip_l": data["clip_l"], "clip_g": data["clip_g"]}
    else:
        tensors = [v for v in data.values() if isinstance(v, torch.Tensor)] if isinstance(data, dict) else []
        if len(tensors) != 1:
            raise SfumatoError(f"{path.name} is not a textual-inversion embedding Sfumato can read (it expects one "
                               "tensor of vectors, or clip_l and clip_g for SDXL).")
        vectors = {"clip_l": tensors[0]}
    out = {}
    for key, value in vectors.items():
        if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2) or not value.is_floating_point():
            raise SfumatoError(f"{path.name} is not a textual-inversion embedding: its {key} is not a list of vectors.")
        value = value.detach().to(torch.float32)
        value = value.unsqueeze(0) if value.ndim == 1 else value
        if not 1 <= value.shape[0] <= MAX_VECTORS:
            raise SfumatoError(f"{path.name} has {value.shape[0]} vectors; an embedding may have 1 to {MAX_VECTORS}.")
        out[key] = value
    if "clip_g" in out and out["clip_g"].shape[0] != out["clip_l"].shape[0]:
        raise SfumatoError(f"{path.name} is damaged: its clip_l and clip_g hold different numbers of vectors.")
    return out


def _load(path: Path):
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load

            with open_regular(path) as handle:
                flat = load(handle.read(64 * 1024 * 1024 + 1))
            if "string_to_param.*" in flat:
                return {"string_to_param": {"*": flat["string_to_param.*"]}}
            return flat
        with open_regular(path) as handle:
            return torch.load(handle, map_location="cpu", weights_only=True)
    except SfumatoError:
        raise
    except Exception as error:  # noqa: BLE001 - any reader failure becomes a sentence
        text = str(error).lower()
        if "weights only" in text or "weights_only" in text:
            raise SfumatoError(f"{path.name} contains code, not only vectors, so it was not opened. "
                               "Use a .safetensors version of the embedding.") from None
        raise SfumatoError(f"{path.name} could not be read as an embedding: the file is damaged or of another "
                           "kind.") from None
