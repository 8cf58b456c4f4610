"""The gallery with 10,000 pictures on disk (the issue's "browse tens of thousands fast" case).

Figures, each against a baseline measured in the same run:
- opening the gallery (index present) and showing the first screen of
  thumbnails, vs merely listing the folder's files;
- the first opening, when the index is built from the 10,000 files, vs the same listing;
- the first screen when no thumbnail is cached yet, vs decoding those pictures in full;
- a full-text search, vs a plain substring scan of the prompts held in memory;
- one repaint of the grid while scrolling through all 10,000 (page by page), vs a repaint of a grid of 100;
- the memory the process gains browsing all 10,000, vs browsing a gallery of 100, and what a second
  pass adds (bounded memory: little).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from desktop.core.gallery.index import Query
from desktop.core.gallery.store import GalleryStore
from desktop.core.outputs import metadata_chunks


from .common import Figure, best_of
from tests.support.requests import make_request

COUNT = 10_000
WORDS = "lighthouse fox castle harbour forest portrait city mountain river garden dragon robot".split()


def make_pictures(folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    prompts = []
    base = np.linspace(0, 255, 128, dtype=np.uint8)
    for i in range(count):
        day = folder / f"2026-{1 + i // 1000 % 12:02d}-{1 + i % 28:02d}"
        day.mkdir(parents=True, exist_ok=True)
        words = rng.choice(WORDS, 4, replace=False)
        prompt = f"a {words[0]} and a {words[1]}, {words[2]} style, {words[3]}"
        prompts.append(prompt)
        pixels = np.empty((128, 128, 3), np.uint8)
        pixels[..., 0] = base[None, :]
        pixels[..., 1] = base[:, None]
        pixels[..., 2] = i % 256
        request = make_request(prompt=prompt, seed=i, width=512, height=512).resolved()
        info = PngImagePlugin.PngInfo()
        for key, value in metadata_chunks(request, i, "model-a" if i % 3 else "model-b").items():
            info.add_text(key, value)
        Image.fromarray(pixels).save(day / f"{i:05d}-{i}.png", pnginfo=info, compress_level=1)
    return prompts


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run() -> list[Figure]:
    from PySide6.QtWidgets import QApplication

    from desktop.ui.gallery.view import GalleryView

    app = QApplication.instance() or QApplication([])
    root = Path(tempfile.mkdtemp(prefix="sfumato-bench-gallery-"))
    try:
        folder, small_folder = root / "outputs", root / "small"
        print(f"  making {COUNT} pictures...", flush=True)
        prompts = make_pictures(folder, COUNT)
        make_pictures(small_folder, 100)

        listing = best_of(lambda: sum(len(files) for _, _, files in os.walk(folder)), repeat=3)

        started = time.perf_counter()
        store = GalleryStore(folder, root / "thumbs")
        first_open = time.perf_counter() - started
        store.close()

        view = GalleryView()
        view.resize(1200, 800)
        view.show()

        def first_screen(thumbs: Path) -> float:
            started = time.perf_counter()
            opened = GalleryStore(folder, thumbs)
            view.set_store(opened)
            app.processEvents()
            shown = _visible_rows(view)
            deadline = time.perf_counter() + 120
            while time.perf_counter() < deadline:
                app.processEvents()
                if all(view.model.index(r).data(1) is not None for r in shown):  # DecorationRole
                    break
                time.sleep(0.002)
            seconds = time.perf_counter() - started
            view.set_store(None)
            opened.close()
            return seconds

        cold = first_screen(root / "thumbs")  # no thumbnail cached yet: made now
        warm = first_screen(root / "thumbs")  # all on disk already
        screen = len(_visible_rows(view)) or 40

        def decode_screen():
            for path in sorted(folder.rglob("*.png"))[:screen]:
                with Image.open(path) as image:
                    image.load()

        decode = best_of(decode_screen, repeat=3)

        store = GalleryStore(folder, root / "thumbs")
        search = best_of(lambda: store.search(Query("harbour dragon")), repeat=5, number=5)
        scan = best_of(lambda: [i for i, p in enumerate(prompts) if "harbour" in p and "dragon" in p], repeat=5,
                       number=5)
        assert len(store.search(Query("harbour dragon"))) == sum("harbour" in p and "dragon" in p for p in prompts)

        gc.collect()
        before = rss_mib()
        view.set_store(store)
        repaint = _scroll_through(app, view)
        gained = rss_mib() - before
        _scroll_through(app, view)
        second = rss_mib() - before - gained  # what browsing it all once more adds: bounded memory adds ~nothing
        view.set_store(None)
        store.close()

        small = GalleryStore(small_folder, root / "thumbs-small")
        gc.collect()
        before_small = rss_mib()
        view.set_store(small)
        small_repaint = _scroll_through(app, view)
        gained_small = max(0.1, rss_mib() - before_small)
        view.set_store(None)
        small.close()
        view.model.loader.stop()
        view.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    listing_ms = listing * 1000
    return [
        Figure(f"open gallery + first screen of thumbnails ({COUNT} pictures)", warm * 1000, "ms",
               f"listing the {COUNT} files", listing_ms),
        Figure(f"first open: build the index from {COUNT} files", first_open * 1000, "ms",
               f"listing the {COUNT} files", listing_ms),
        Figure(f"first screen with no thumbnail cached ({screen} tiles)", cold * 1000, "ms",
               f"decoding those {screen} pictures in full", decode * 1000),
        Figure(f"full-text search of {COUNT} pictures", search * 1000, "ms", "substring scan of prompts in memory",
               scan * 1000),
        Figure(f"grid repaint while scrolling through {COUNT}", repaint * 1000, "ms", "same through 100",
               small_repaint * 1000),
        Figure(f"memory gained browsing all {COUNT}", gained, "MiB", "browsing 100", gained_small),
        Figure(f"memory gained browsing all {COUNT} a second time", max(second, 0.0), "MiB", "the first time",
               gained),
    ]


def _visible_rows(view) -> list[int]:
    rows = []
    viewport = view.list.viewport().rect()
    for row in range(min(view.model.rowCount(), 400)):
        if view.list.visualRect(view.model.index(row)).intersects(viewport):
            rows.append(row)
    return rows


def _scroll_through(app, view) -> float:
    """Page down through the whole grid, each page shown with its thumbnails; the mean time of one repaint."""
    bar = view.list.verticalScrollBar()
    app.processEvents()
    times = []
    value = 0
    while True:
        bar.setValue(value)
        started = time.perf_counter()
        view.list.viewport().repaint()
        times.append(time.perf_counter() - started)
        shown = _visible_rows_from(view, bar)
        deadline = time.perf_counter() + 5
        while time.perf_counter() < deadline and not all(view.model.index(r).data(1) is not None for r in shown):
            app.processEvents()
            time.sleep(0.001)
        if value >= bar.maximum():
            break
        value = min(bar.maximum(), value + bar.pageStep())
    return float(np.mean(times))


def _visible_rows_from(view, bar) -> list[int]:
    first = view.list.indexAt(view.list.viewport().rect().topLeft() + view.list.viewport().rect().center() * 0)
    start = max(0, first.row()) if first.isValid() else 0
    viewport = view.list.viewport().rect()
    rows = []
    for row in range(start, min(view.model.rowCount(), start + 200)):
        if view.list.visualRect(view.model.index(row)).intersects(viewport):
            rows.append(row)
        elif rows:
            break
    return rows
