"""Lineage's core: the pixel hash and its rule for opaque pictures, the PNG chunks read back (hostile ones too),
and an index of the version before lineage migrated in place."""

import json
import sqlite3

import numpy as np
from PIL import Image, PngImagePlugin

from desktop.core import lineage
from desktop.core.control import Control
from desktop.core.gallery import family
from desktop.core.gallery.index import MIGRATIONS, SCHEMA_VERSION, GalleryIndex, _statements
from desktop.core.gallery.metadata import read_image_meta
from desktop.core.gallery.store import INDEX_NAME, GalleryStore
from desktop.core.postprocess import UpscaleRequest
from desktop.core.request import Images, Mode

from tests.support.requests import make_request


def noise(seed, channels=3):
    return np.random.default_rng(seed).integers(0, 256, (32, 48, channels), dtype=np.uint8)


def test_the_hash_is_of_the_pixels_not_of_the_file(tmp_path):
    image = noise(1)
    Image.fromarray(image).save(tmp_path / "a.png", compress_level=1)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "something else entirely")
    Image.fromarray(image).save(tmp_path / "b.png", compress_level=9, pnginfo=info)
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
    hashes = {lineage.pixel_hash(np.asarray(Image.open(tmp_path / name))) for name in ("a.png", "b.png")}
    assert hashes == {lineage.pixel_hash(image)}
    changed = image.copy()
    changed[0, 0, 0] ^= 1
    assert lineage.pixel_hash(changed) != lineage.pixel_hash(image)
    assert lineage.pixel_hash(image.reshape(48, 32, 3)) != lineage.pixel_hash(image)  # same bytes, other shape


def test_an_opaque_rgba_picture_hashes_as_its_rgb_and_a_transparent_one_does_not():
    image = noise(2)
    opaque = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    assert lineage.pixel_hash(opaque) == lineage.pixel_hash(image)
    opaque[0, 0, 3] = 254
    assert lineage.pixel_hash(opaque) != lineage.pixel_hash(image)


def test_each_kind_of_request_names_its_parents_with_their_roles():
    init, mask, control = noise(3), noise(4)[..., 0], noise(5)
    request = make_request(mode=Mode.INPAINT).replace(images=Images(init, mask),
                                                       controls=(Control("canny", control),))
    assert [(p.role, p.hash) for p in lineage.parents_of(request)] == [
        ("init", lineage.pixel_hash(init)), ("mask", lineage.pixel_hash(mask)),
        ("control", lineage.pixel_hash(control))]
    assert lineage.parents_of(make_request()) == ()
    upscale = UpscaleRequest(init, 2.0)
    assert lineage.parents_of(upscale) == (lineage.Parent("source", lineage.pixel_hash(init)),)


def test_chunks_read_back_and_hostile_ones_are_ignored():
    image = noise(6)
    text = lineage.chunks(noise(7), UpscaleRequest(image, 2.0))
    assert lineage.read_chunks(text) == (lineage.pixel_hash(noise(7)),
                                         (lineage.Parent("source", lineage.pixel_hash(image)),))
    good = "0" * lineage.HASH_LENGTH
    for parents in ("not json", "{}", '"x"', "[[[[" * 5000, json.dumps([{"role": "uncle", "hash": good}]),
                    json.dumps([{"role": "init", "hash": "../../etc"}]), json.dumps([1, None, {"role": []}])):
        assert lineage.read_chunks({lineage.HASH_CHUNK: "'; DROP TABLE images", lineage.PARENTS_CHUNK: parents}) \
            == ("", ())
    many = json.dumps([{"role": "control", "hash": f"{n:0{lineage.HASH_LENGTH}x}"} for n in range(1000)])
    assert len(lineage.read_chunks({lineage.PARENTS_CHUNK: many})[1]) == lineage.MAX_PARENTS


def test_an_index_made_before_lineage_is_migrated_in_place(tmp_path):
    folder = tmp_path / "outputs"
    folder.mkdir()
    old = sqlite3.connect(folder / INDEX_NAME)
    for statement in _statements(MIGRATIONS[1]):  # the index as version 1 made it
        old.execute(statement)
    old.execute("INSERT INTO images (path, mtime_ns, size, created, prompt, favourite) VALUES "
                "('old.png', 1, 2, 3.0, 'an old picture', 1)")
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    index = GalleryIndex(folder / INDEX_NAME)
    try:
        assert index._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        record = index.by_path("old.png")
        assert (record.prompt, record.favourite, record.pixel_hash) == ("an old picture", True, "")
        assert family.parents(index, record) == [] and family.family_ids(index, record) == [record.id]
    finally:
        index.close()


def test_a_migrated_gallery_records_the_lineage_of_new_pictures(tmp_path):
    folder = tmp_path / "outputs"
    store = GalleryStore(folder, tmp_path / "thumbs")
    store.close()
    db = sqlite3.connect(folder / INDEX_NAME)  # back to version 1, as an older Sfumato left it
    db.executescript("DROP TABLE parents; DROP INDEX images_pixel_hash; ALTER TABLE images DROP COLUMN pixel_hash; "
                     "PRAGMA user_version = 1;")
    db.close()
    store = GalleryStore(folder, tmp_path / "thumbs")
    try:
        assert store.notice == ""  # migrated, not rebuilt
        first = store.add_result(noise(8), make_request(), 1, "tiny")
        made = store.add_picture(folder / "up.png", noise(9), "", lineage.chunks(noise(9), UpscaleRequest(noise(8))))
        child = store.index.by_path(store.relative(made))
        assert [link.record.path for link in family.parents(store.index, child)] == [store.relative(first)]
        assert read_image_meta(made)[0].parents == (lineage.Parent("source", lineage.pixel_hash(noise(8))),)
    finally:
        store.close()
