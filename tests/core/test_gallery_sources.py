"""A picture an upscale or restore saved beside its source knows that source, by the name rule of
postprocess.result_path, so the gallery can compare the two."""

import numpy as np
from PIL import Image

from desktop.core.gallery.store import GalleryStore


def test_a_result_saved_beside_its_source_finds_it_and_other_pictures_have_none(tmp_path):
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")
    folder = tmp_path / "outputs" / "2026-12-04"
    pixels = np.zeros((8, 8, 3), np.uint8)
    source = store.add_picture(folder / "00001-7.png", pixels, "a cat")
    Image.fromarray(pixels).save(tmp_path / "outputs" / "scan.jpg")
    store.refresh()
    made = {name: store.add_picture(folder / name, pixels, "a cat, Postprocess upscale by: 2")
            for name in ("00001-7-x2.png", "00001-7-x1.5.png", "00001-7-300x200.png", "00001-7-denoise.png",
                         "00001-7-face.png", "00001-7-x2.png", "00001-7-x2-x2.png", "00002-x2.png", "cat-jpeg.png")}
    made["scan-restore.png"] = store.add_picture(tmp_path / "outputs" / "scan-restore.png", pixels, "")
    by_name = {path.name: store.index.by_path(store.relative(path)) for path in folder.iterdir()}
    by_name["scan-restore.png"] = store.index.by_path("scan-restore.png")

    def source_name(name):
        found = store.source_of(by_name[name])
        return found.path.rsplit("/", 1)[-1] if found else None

    for name in ("00001-7-x2.png", "00001-7-x1.5.png", "00001-7-300x200.png", "00001-7-denoise.png",
                 "00001-7-face.png", "00001-7-x2-2.png"):
        assert source_name(name) == source.name, name
    assert source_name("00001-7-x2-x2.png") == "00001-7-x2.png", "an upscale of an upscale: the first upscale"
    assert source_name("scan-restore.png") == "scan.jpg", "a source of another kind of file"
    assert source_name("00002-x2.png") is None, "the canvas's upscale: its source was no file"
    assert source_name("cat-jpeg.png") is None, "no cat.* in the gallery"
    assert source_name(source.name) is None and source_name("00001-7-x2.png") is not None
    store.close()
