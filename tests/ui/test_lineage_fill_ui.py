"""The gallery hashes its older pictures in the background: a picture made from one saved before lineage first
shows a gap where its parent is, and the parent itself once its pixels were hashed, without a click."""

import threading

import numpy as np
from PIL import Image

from desktop.core.gallery.store import GalleryStore
from desktop.core.request import Images, Mode
from tests.support.requests import make_request


def test_the_strip_finds_an_old_parent_once_the_background_has_hashed_it(qtbot, tmp_path):
    from desktop.ui.gallery.view import GalleryView

    folder = tmp_path / "outputs"
    folder.mkdir()
    old = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(old).save(folder / "old.png")  # saved before lineage: no hash of its own
    store = GalleryStore(folder, tmp_path / "thumbs", trash=lambda p: p.unlink())
    made = store.add_result(old[::-1].copy(), make_request(mode=Mode.IMG2IMG).replace(images=Images(old)), 2, "tiny")
    child = store.index.by_path(store.relative(made))
    parent = store.index.by_path("old.png")
    threads, fill = [], store.fill_hashes
    gate = threading.Event()

    def held_fill(*args, **kwargs):  # the first batch waits until the gap has been seen
        threads.append(threading.current_thread().name)
        gate.wait(10)
        return fill(*args, **kwargs)

    store.fill_hashes = held_fill
    view = GalleryView()
    qtbot.addWidget(view)
    try:
        view.set_store(store)
        view.select_row(view.model.row_of(child.id))
        qtbot.waitUntil(lambda: len(view.family.tiles("parents")) == 1)
        assert not view.family.tiles("parents")[0].isEnabled(), "a gap until its pixels are hashed"
        gate.set()
        qtbot.waitUntil(lambda: any(tile.isEnabled() for tile in view.family.tiles("parents")))
        assert "old.png" in view.family.tiles("parents")[0].toolTip()
        assert threading.main_thread().name not in threads, "hashed off the GUI thread"

        view.select_row(view.model.row_of(parent.id))  # the old picture now shows what was made from it
        qtbot.waitUntil(lambda: len(view.family.tiles("children")) == 1)
        assert view.current().pixel_hash != ""
        qtbot.waitUntil(lambda: view._hashing is None)  # the last batch found nothing left
    finally:
        view.background.wait()
        qtbot.waitUntil(lambda: not view.background._callbacks)
        store.close()
