"""Lineage for pictures that carry no hash (desktop/core/gallery/store.py fill_hashes): what hashing their pixels
costs, off the GUI thread, once per file.

Figures, each against a baseline measured in the same run:
- hashing one 512x512 and one 1024x1024 PNG (decode with the bounded reader, hash, record), vs indexing it (its
  metadata read and written to the index, as a refresh does);
- hashing a gallery of 1,000 512x512 pictures saved before lineage, batch after batch, vs the refresh that
  indexed them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from desktop.core.gallery.store import GalleryStore

from .bench_credentials import picture
from .common import Figure

GALLERY = 1000


def _fill(store: GalleryStore) -> int:
    done = 0
    while batch := store.fill_hashes():
        done += len(batch)
    return done


def run() -> list[Figure]:
    root = Path(tempfile.mkdtemp(prefix="sfumato-bench-lineage-"))
    figures: list[Figure] = []
    try:
        for side in (512, 1024):
            folder = root / f"one-{side}"
            folder.mkdir()
            for n in range(5):
                Image.fromarray(np.roll(picture(side), n, axis=1)).save(folder / f"{n}.png")
            started = time.perf_counter()
            store = GalleryStore(folder, root / "thumbs")  # a new index: the refresh indexes the 5 pictures
            indexed = (time.perf_counter() - started) / 5
            started = time.perf_counter()
            assert _fill(store) == 5
            hashed = (time.perf_counter() - started) / 5
            store.close()
            figures.append(Figure(f"lineage: hash an old {side}x{side} PNG (decode + hash + record)", hashed * 1000,
                                  "ms", "index it (metadata)", indexed * 1000))
        folder = root / "gallery"
        day = folder / "2025-01-01"
        day.mkdir(parents=True)
        Image.fromarray(picture(512)).save(day / "0.png")
        for n in range(1, GALLERY):
            shutil.copyfile(day / "0.png", day / f"{n}.png")
        started = time.perf_counter()
        store = GalleryStore(folder, root / "thumbs")
        indexed = time.perf_counter() - started
        started = time.perf_counter()
        assert _fill(store) == GALLERY
        hashed = time.perf_counter() - started
        store.close()
        figures.append(Figure(f"lineage: hash a gallery of {GALLERY} old 512x512 PNGs", hashed, "s",
                              "index them (first opening)", indexed))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return figures
