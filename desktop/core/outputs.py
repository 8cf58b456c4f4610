"""Saving a generated image with its metadata.

Each PNG carries the AUTOMATIC1111 `parameters` text (readable by A1111,
Civitai and most tools) and Sfumato's own `sfumato` JSON chunk (the full
request, so nothing is lost in translation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import infotext, lineage, marking
from .imageio import output_path, save_png
from .request import GenerationRequest

# 1: the request as a flat dict; 2: one nested dict per part (request.to_dict). Readers take both (request.nested).
METADATA_VERSION = 2


def metadata_chunks(request: GenerationRequest, seed: int, model_name: str, model_hash: str = "",
                    params: tuple[tuple[str, str], ...] = (), mark: bool = True) -> dict[str, str]:
    """`params`: what the run adds to the infotext (Result.params); `mark`: add the XMP that says the picture is
    generated (desktop/core/marking.py; File > Settings turns it off)."""
    text = infotext.format_infotext(infotext.from_request(request, seed, model_name, model_hash, params))
    record = {
        "version": METADATA_VERSION,
        # The model's name, not its path: a shared picture must not reveal the user's folders.
        "request": request.replace(model=model_name,
                                   sampling=request.sampling.replace(seed=seed, batch_size=1)).to_dict(),
        "model_name": model_name,
        "model_hash": model_hash,
    }
    return {"parameters": text, "sfumato": json.dumps(record, ensure_ascii=False), **marking.chunks(request, mark)}


def save_result(
    folder: Path, image: np.ndarray, request: GenerationRequest, seed: int, model_name: str, model_hash: str = "",
    params: tuple[tuple[str, str], ...] = (), mark: bool = True,
) -> Path:
    """Write one result under folder/<date>/ and return its path."""
    return save_png(output_path(folder, seed), image, {**metadata_chunks(request, seed, model_name, model_hash, params,
                                                                         mark), **lineage.chunks(image, request)})
