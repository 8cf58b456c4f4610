"""Saves results and autosaves a document as fast as it can, until it is killed (test_kill.py)."""

import sys
from pathlib import Path

import numpy as np

from desktop.core import autosave
from desktop.core.brush import Brush
from desktop.core.document import CanvasDocument
from desktop.core.gallery.store import GalleryStore
from desktop.core.geometry import Extent

from tests.support.requests import make_request

folder = Path(sys.argv[1])
store = GalleryStore(folder / "outputs", folder / "thumbnails")
doc = CanvasDocument.new(Extent(256, 256))
rng = np.random.default_rng(int(sys.argv[2]))
print("ready", flush=True)
seed = int(sys.argv[2]) * 1000
while True:
    seed += 1
    picture = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    store.add_result(picture, make_request(prompt=f"run {seed}", seed=seed, width=128, height=128).resolved(),
                     seed, "killer")
    stroke = doc.begin_stroke(doc.layers[0], Brush(size=30, colour=tuple(int(c) for c in rng.integers(0, 256, 3))))
    stroke.to(*rng.integers(0, 256, 2))
    stroke.finish()
    autosave.save(doc.snapshot())
