"""Lineage for pictures that carry no hash (saved before lineage, or by other tools): the store hashes their pixels
once per version of the file, never touching it, and what was made from them finds them afterwards; a grey
picture is found as the mask it is."""

import os

import numpy as np
from PIL import Image

from desktop.core import lineage
from desktop.core.gallery import family
from desktop.core.gallery.store import GalleryStore
from desktop.core.request import Images, Mode
from tests.support.requests import make_request


def noise(seed, h=32, w=48):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def roles(links):
    return [(link.role, link.record.path if link.record else None) for link in links]


def old_picture(folder, name, pixels):
    """A picture as Sfumato saved it before lineage, or another tool did: no hash of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / name)
    return folder / name


def fill_all(store):
    tried = []
    while batch := store.fill_hashes(limit=2):
        tried += batch
    return tried


def test_an_old_picture_is_hashed_once_without_being_rewritten_and_its_child_finds_it(tmp_path):
    folder = tmp_path / "outputs"
    old = old_picture(folder, "old.png", noise(1))
    before = old.read_bytes(), os.stat(old).st_mtime_ns
    store = GalleryStore(folder, tmp_path / "thumbs")
    try:
        child_path = store.add_result(noise(2), make_request(mode=Mode.IMG2IMG).replace(images=Images(noise(1))), 3,
                                      "tiny")
        child = store.index.by_path(store.relative(child_path))
        parent = store.index.by_path("old.png")
        assert parent.pixel_hash == "" and roles(family.parents(store.index, child)) == [("init", None)]

        assert fill_all(store) == [(parent.id, lineage.pixel_hash(noise(1)))]
        assert roles(family.parents(store.index, child)) == [("init", "old.png")]
        assert roles(family.children(store.index, store.index.by_path("old.png"))) == [("init", child.path)]
        assert (old.read_bytes(), os.stat(old).st_mtime_ns) == before, "the user's file is only read"

        assert store.fill_hashes() == [], "done once"
        store.index_files([old])  # indexed again, unchanged (an undone delete): the hash is remembered
        assert store.index.by_path("old.png").pixel_hash == lineage.pixel_hash(noise(1))
        assert store.fill_hashes() == []

        Image.fromarray(noise(5)).save(old)  # changed outside the app: hashed again after the refresh
        os.utime(old, ns=(before[1] + 10**9, before[1] + 10**9))
        store.refresh()
        assert store.index.by_path("old.png").pixel_hash == ""
        assert fill_all(store) == [(parent.id, lineage.pixel_hash(noise(5)))]
        assert roles(family.parents(store.index, child)) == [("init", None)], "no longer the picture it started from"
    finally:
        store.close()


def test_a_picture_that_cannot_be_decoded_is_tried_once(tmp_path):
    folder = tmp_path / "outputs"
    broken = old_picture(folder, "broken.png", noise(3, 256, 256))
    broken.write_bytes(broken.read_bytes()[:-4000])  # the header reads (it is indexed); the pixels do not
    store = GalleryStore(folder, tmp_path / "thumbs")
    try:
        record = store.index.by_path("broken.png")
        assert record is not None
        assert store.fill_hashes() == [(record.id, "")]
        assert store.fill_hashes() == [] and store.index.by_path("broken.png").pixel_hash == ""
    finally:
        store.close()


def test_a_grey_picture_is_found_as_the_mask_an_inpaint_used(tmp_path):
    folder = tmp_path / "outputs"
    mask = np.zeros((32, 48), np.uint8)
    mask[4:20, 8:30] = 255
    old_picture(folder, "mask.png", mask)  # a grey PNG: load_mask reads it as these values
    old_picture(folder, "photo.png", noise(4))
    store = GalleryStore(folder, tmp_path / "thumbs")
    try:
        made = store.add_result(noise(6), make_request(mode=Mode.INPAINT).replace(images=Images(noise(4), mask)), 1,
                                "tiny")
        child = store.index.by_path(store.relative(made))
        assert roles(family.parents(store.index, child)) == [("init", None), ("mask", None)]
        fill_all(store)
        assert roles(family.parents(store.index, child)) == [("init", "photo.png"), ("mask", "mask.png")]
        assert store.index.by_path("photo.png").pixel_hash == lineage.pixel_hash(noise(4)), "a colour one: no mask"
        assert store.index.by_hash([lineage.pixel_hash(mask)]) == {lineage.pixel_hash(mask):
                                                                   [store.index.by_path("mask.png").id]}
        store.delete([store.index.by_path("mask.png").id])
        assert roles(family.parents(store.index, child)) == [("init", "photo.png"), ("mask", None)]
    finally:
        store.close()
