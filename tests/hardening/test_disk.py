"""A full disk, a folder that cannot be written, a file deleted under the gallery's feet: the user is told,
and nothing already saved is damaged."""

import errno
import os

import numpy as np
import pytest

from desktop.core import autosave
from desktop.core.brush import Brush
from desktop.core.document import CanvasDocument
from desktop.core.gallery.store import GalleryStore

from tests.support.requests import make_request

TIMEOUT = 60_000


@pytest.fixture
def full_disk(monkeypatch):
    """Every write of a file's bytes fails the way a full disk does (ENOSPC)."""

    real_fsync = os.fsync

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def switch(on: bool = True):
        monkeypatch.setattr(os, "fsync", no_space if on else real_fsync)

    return switch


def files_under(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_a_full_disk_while_saving_results_says_so_and_keeps_what_was_saved(make_window, qtbot, full_disk):
    window = make_window()
    qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
    window.panel.set_request(make_request(prompt="first", steps=1, width=64, height=64, seed=1))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    saved = files_under(window.settings.output_path())
    assert saved
    full_disk()
    window.panel.set_request(make_request(prompt="second", steps=1, width=64, height=64, seed=2))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        window.generate()
    full_disk(False)
    (image, seed, path), = shown.args[0]
    assert path is None and image.shape == (64, 64, 3), "the picture is still on the canvas"
    qtbot.waitUntil(lambda: "pictures could not be saved" in window.error_banner.text(), timeout=TIMEOUT)
    assert "No space left on device" in window.error_banner.text() and "disk is not full" in window.error_banner.text()
    assert files_under(window.settings.output_path()) == saved, "nothing already saved changed"
    assert window.generation.staged, "the new result waits on the canvas, to accept or save later"


def test_a_full_disk_while_saving_a_document_keeps_the_previous_file(make_window, qtbot, full_disk, tmp_path,
                                                                        answer_dialogs):
    window = make_window()
    window.files.set_document(CanvasDocument.from_image(np.full((64, 64, 3), 90, np.uint8), "p"), name="p")
    path = tmp_path / "work.ora"
    window.files.save_as(path)
    qtbot.waitUntil(lambda: path.is_file() and window.files.path == path, timeout=TIMEOUT)
    before = path.read_bytes()
    window.layers.new_layer("image")
    full_disk()
    window.files.save()
    qtbot.waitUntil(window.error_banner.isVisible, timeout=TIMEOUT)
    full_disk(False)
    assert "work.ora could not be saved; your picture is still open" in window.error_banner.text()
    assert path.read_bytes() == before and window.doc.modified
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], "no half-written file left"
    window.files.autosave_timer.stop()


def test_a_full_disk_during_autosave_is_reported(make_window, qtbot, full_disk):
    window = make_window()
    window.layers.new_layer("image")
    stroke = window.doc.begin_stroke(window.doc.active, Brush())
    stroke.to(10, 10)
    stroke.finish()
    full_disk()
    window.files.autosave_now()
    qtbot.waitUntil(window.error_banner.isVisible, timeout=TIMEOUT)
    full_disk(False)
    assert "autosave could not be written" in window.error_banner.text() and not autosave.exists()


def test_an_output_folder_that_cannot_be_created_is_explained(make_window, qtbot, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    window = make_window(output_folder=str(blocker / "outputs"))
    qtbot.waitUntil(lambda: window.gallery.count.text() == "Unavailable", timeout=TIMEOUT)
    assert "could not be opened" in window.error_banner.text() and "writable" in window.error_banner.text()
    window.panel.set_request(make_request(prompt="x", steps=1, width=64, height=64, seed=1))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        window.generate()
    assert shown.args[0][0][2] is None
    qtbot.waitUntil(lambda: "could not be saved" in window.error_banner.text(), timeout=TIMEOUT)


def test_a_picture_deleted_under_the_gallerys_feet(make_window, qtbot, sfumato_home):
    store = GalleryStore(sfumato_home / "outputs", sfumato_home / "cache" / "thumbnails")
    for seed in (1, 2):
        store.add_result(np.full((64, 64, 3), seed * 50, np.uint8),
                         make_request(prompt=f"p{seed}", seed=seed, width=64, height=64).resolved(), seed, "m")
    store.close()
    window = make_window()
    qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
    gallery = window.gallery
    window.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 2, timeout=TIMEOUT)
    # Showing the tab starts a refresh in the background; deleting before it has looked would let it drop the
    # picture first, and there would be nothing unreadable left to select.
    qtbot.waitUntil(lambda: not gallery.background.busy(), timeout=TIMEOUT)
    gallery.select_row(1)
    record = gallery.model.record(0)
    window.gallery_store.path(record).unlink()  # deleted by hand while Sfumato runs
    gallery.select_row(0)
    qtbot.waitUntil(window.error_banner.isVisible, timeout=TIMEOUT)
    assert "can no longer be read" in window.error_banner.text()
    window.tabs.setCurrentIndex(0)
    window.tabs.setCurrentIndex(1)  # showing the gallery again refreshes it
    qtbot.waitUntil(lambda: gallery.model.rowCount() == 1, timeout=TIMEOUT)
    assert gallery.model.record(0).prompt == "p1", "the picture still there is intact"
