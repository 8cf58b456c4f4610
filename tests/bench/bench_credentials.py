"""Content credentials (desktop/core/credentials.py): what signing costs a saved picture.

Figures, each against a baseline measured in the same run:
- saving a 512x512 and a 1024x1024 result PNG (its metadata, atomically, as the gallery does) and signing it,
  vs saving it unsigned;
- reading and validating a signed picture's manifest (what the gallery's detail panel does off the GUI thread),
  vs reading the picture's metadata;
- the bytes a manifest adds, vs the unsigned file.
- making Sfumato's own key (once per computer, on first use, before the other timings), vs signing a picture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from itertools import count
from pathlib import Path

import numpy as np

from desktop.core import credentials
from desktop.core.gallery.metadata import read_image_meta
from desktop.core.imageio import save_png
from desktop.core.outputs import metadata_chunks

from .common import Figure, best_of
from tests.support.requests import make_request


def picture(side: int) -> np.ndarray:
    """A picture that compresses like a generated one: smooth shapes with a little grain."""
    y, x = np.mgrid[0:side, 0:side] / side
    rng = np.random.default_rng(side)
    channels = [np.sin(6 * x + k) * np.cos(5 * y - k) for k in range(3)]
    smooth = (np.stack(channels, -1) * 0.5 + 0.5) * 235
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def run() -> list[Figure]:
    folder = Path(tempfile.mkdtemp(prefix="sfumato-bench-credentials-"))
    old_home = os.environ.get("SFUMATO_HOME")
    os.environ["SFUMATO_HOME"] = str(folder / "home")
    figures: list[Figure] = []
    try:
        started = time.perf_counter()
        credentials.own_key()  # made once, on first use
        made = time.perf_counter() - started
        signing = credentials.Signing()
        numbers = count()
        for side in (512, 1024):
            image = picture(side)
            request = make_request(prompt="a lighthouse at dawn", seed=1, width=side, height=side).resolved()
            text = metadata_chunks(request, 1, "model")
            what = credentials.provenance(request)

            def unsigned() -> Path:
                return save_png(folder / f"{next(numbers)}.png", image, text)

            def signed() -> Path:
                path = unsigned()
                assert signing.sign(path, what), signing.summary()
                return path

            signed()  # warm: c2pa loaded, key read
            plain = best_of(unsigned, repeat=5)
            both = best_of(signed, repeat=5)
            figures.append(Figure(f"credentials: save + sign a {side}x{side} PNG", both * 1000, "ms",
                                  "save it unsigned", plain * 1000))
            if side == 512:
                figures.append(Figure("credentials: make Sfumato's own key (first use only)", made * 1000, "ms",
                                      "signing a 512x512 PNG with it", (both - plain) * 1000))
            sample = signed()
            reading = best_of(lambda: credentials.read(sample), repeat=5)
            meta = best_of(lambda: read_image_meta(sample), repeat=5)
            figures.append(Figure(f"credentials: read + validate a {side}x{side} PNG's manifest", reading * 1000,
                                  "ms", "read its metadata", meta * 1000))
            figures.append(Figure(f"credentials: bytes a manifest adds to a {side}x{side} PNG",
                                  sample.stat().st_size - unsigned().stat().st_size, "B", "the unsigned file",
                                  unsigned().stat().st_size))
    finally:
        if old_home is None:
            os.environ.pop("SFUMATO_HOME", None)
        else:
            os.environ["SFUMATO_HOME"] = old_home
        shutil.rmtree(folder, ignore_errors=True)
    return figures
