"""Lineage through the worker's own save path: txt2img -> to canvas -> inpaint -> upscale records each picture's
parents, the chain survives a rebuilt index, and deleting the middle picture leaves it readable with a gap."""

import dataclasses

import numpy as np
import pytest

from desktop.core import settings as settings_store
from desktop.core.backend import ModelDescriptor, Result
from desktop.core.document import CanvasDocument
from desktop.core.frame import frame_request
from desktop.core.gallery import family
from desktop.core.gallery.store import INDEX_NAME, GalleryStore
from desktop.core.imageio import load_image
from desktop.core.lineage import pixel_hash
from desktop.core.postprocess import UpscaleRequest
from desktop.core.request import Mode
from desktop.ui.worker import _Runner
from tests.support.requests import make_request

MODEL = ModelDescriptor("tiny", "sd1", "tiny", "abcdef1234")


def noise(seed, h=64, w=64):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def saving(qtbot, tmp_path):
    """save(result) -> the record of the saved picture, through _Runner._save and the gallery."""
    settings = dataclasses.replace(settings_store.load(), output_folder=str(tmp_path / "outputs"))
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs", trash=lambda p: p.unlink())
    runner = _Runner(settings, lambda s: None)
    runner.set_gallery(store)

    def save(result):
        saved, problem = runner._save([result], MODEL, settings)
        assert problem == ""
        return store.index.by_path(store.relative(saved[0][2]))

    yield store, save
    store.close()


def chain(saving):
    """The three pictures of txt2img -> to canvas -> inpaint -> upscale, as the window makes them."""
    store, save = saving
    base = make_request(prompt="a lighthouse", width=64, height=64, seed=7, model="tiny")
    first = save(Result(noise(1), 7, base.resolved()))
    # To canvas: the file opened as a new picture; a mask painted on it; the frame's request is an inpaint.
    doc = CanvasDocument.from_image(load_image(store.path(first)), "first")
    doc.masks()[0].pixels[10:30, 10:30] = 255
    inpaint = frame_request(doc, base)
    assert inpaint.mode == Mode.INPAINT
    second = save(Result(noise(2), 8, inpaint.resolved()))
    # Upscale from the gallery: the file's pixels, saved beside it.
    source = load_image(store.path(second))
    third = save(Result(np.repeat(np.repeat(source, 2, 0), 2, 1), 0,
                        UpscaleRequest(source, 2.0, beside=str(store.path(second)))))
    return first, second, third, pixel_hash(doc.mask())


def roles(links):
    return [(link.role, link.record.path if link.record else None) for link in links]


def test_txt2img_to_canvas_inpaint_upscale_records_a_chain_of_parents(saving):
    store, _ = saving
    first, second, third, mask = chain(saving)
    assert roles(family.parents(store.index, third)) == [("source", second.path)]
    assert roles(family.parents(store.index, second)) == [("init", first.path), ("mask", None)]
    assert roles(family.ancestors(store.index, third)) == [("source", second.path), ("init", first.path),
                                                          ("mask", None)]
    assert family.ancestors(store.index, third)[2].pixel_hash == mask
    assert roles(family.children(store.index, first)) == [("init", second.path)]
    assert roles(family.descendants(store.index, first)) == [("init", second.path), ("source", third.path)]
    assert set(family.family_ids(store.index, second)) == {first.id, second.id, third.id}


def test_the_chain_survives_a_rebuild_of_the_index_from_the_files(saving, tmp_path):
    store, _ = saving
    first, second, third, _ = chain(saving)
    store.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "outputs" / f"{INDEX_NAME}{suffix}").unlink(missing_ok=True)
    rebuilt = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")
    try:
        third = rebuilt.index.by_path(third.path)
        assert roles(family.ancestors(rebuilt.index, third)) == [("source", second.path), ("init", first.path),
                                                                ("mask", None)]
    finally:
        rebuilt.close()


def test_deleting_the_middle_picture_leaves_the_chain_readable_with_a_gap(saving):
    store, _ = saving
    first, second, third, _ = chain(saving)
    assert store.delete([second.id])[0] == 1
    assert roles(family.parents(store.index, third)) == [("source", None)]
    assert family.parents(store.index, third)[0].pixel_hash == second.pixel_hash
    assert roles(family.ancestors(store.index, third)) == [("source", None), ("init", first.path), ("mask", None)]
    assert roles(family.descendants(store.index, first)) == [("init", None), ("source", third.path)]
    assert set(family.family_ids(store.index, first)) == {first.id, third.id}


def test_the_detail_panel_shows_the_chain_and_the_family(saving, qtbot):
    from PySide6.QtCore import Qt

    from desktop.ui.gallery.view import GalleryView

    store, save = saving
    first, second, third, _ = chain(saving)
    other = save(Result(noise(9), 9, make_request(prompt="unrelated", width=64, height=64, seed=9).resolved()))
    view = GalleryView()
    qtbot.addWidget(view)
    view.set_store(store)
    view.select_row(view.model.row_of(second.id))
    qtbot.waitUntil(lambda: len(view.family.tiles("parents")) == 2 and len(view.family.tiles("children")) == 1)
    assert not view.family.isHidden()
    made_from, used_by = view.family.tiles("parents"), view.family.tiles("children")
    assert made_from[0].isEnabled() and first.path.split("/")[-1] in made_from[0].toolTip()
    assert not made_from[1].isEnabled() and "mask" in made_from[1].toolTip() and "not in the gallery" in \
        made_from[1].toolTip()
    assert third.path.split("/")[-1] in used_by[0].toolTip()
    qtbot.mouseClick(made_from[0], Qt.MouseButton.LeftButton)
    assert view.current().id == first.id

    view.family.show_family.click()  # the family of the first picture: itself and what was made from it
    assert set(view.model.ids) == {first.id, second.id, third.id} and other.id not in view.model.ids
    assert view.current().id == first.id and not view.family_filter.isHidden()
    view.family_filter.click()
    assert set(view.model.ids) == {first.id, second.id, third.id, other.id} and view.family_filter.isHidden()
    assert view.current().id == first.id

    view.select_row(view.model.row_of(other.id))  # made from a prompt and used by nothing: no strip
    qtbot.wait(200)
    assert view.family.isHidden()

    store.delete([second.id])  # the middle picture: the upscale's strip shows a gap
    view.model.reload()
    view.select_row(view.model.row_of(third.id))
    qtbot.waitUntil(lambda: len(view.family.tiles("parents")) == 1)
    assert not view.family.tiles("parents")[0].isEnabled()
    view.family.show_family.click()  # the family goes on through the gap
    assert set(view.model.ids) == {first.id, third.id}
    view.background.wait()
    qtbot.waitUntil(lambda: not view.background._callbacks)  # all delivered before the store closes
