"""Every odd picture, on the canvas, in the gallery import and in img2img: converted or refused with a sentence."""

import numpy as np
import pytest

from desktop.core.errors import SfumatoError
from desktop.core.gallery.store import GalleryStore
from desktop.core.imageio import ImageError, load_image
from desktop.core.progress import TaskState
from desktop.core.request import Mode
from desktop.engine import generate

from .images import make_all
from tests.support.requests import make_request


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    return make_all(tmp_path_factory.mktemp("pictures"))


def test_img2img_converts_or_refuses_each_picture(pictures, cpu_manager, tiny_models):
    model = str(tiny_models["sd1"].folder)
    for name, (path, expected) in pictures.items():
        try:
            image = load_image(path, keep_alpha=False)
        except ImageError as error:
            assert expected == "refused", f"{name}: {error}"
            assert path.name in str(error) and str(error).endswith(".")
            continue
        assert expected == "ok", name
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        request = make_request(mode=Mode.IMG2IMG, init_image=image, model=model, width=64, height=64,
                                    steps=2, strength=0.5, seed=1)
        assert generate.run(request, TaskState(), cpu_manager)[0].image.shape == (64, 64, 3)


def test_the_gallery_import_takes_the_good_ones_and_names_the_bad(pictures, tmp_path):
    store = GalleryStore(tmp_path / "out", tmp_path / "thumbs")
    records, problems = store.import_files([path for path, _ in pictures.values()])
    imported = {r.path.split("/")[-1] for r in records}
    good = {name for name, (_, expected) in pictures.items() if expected == "ok"}
    assert good <= imported, "every picture that opens can be imported"
    assert all(name in " ".join(problems) for name, (_, e) in pictures.items() if e == "refused" and name not in imported)
    for record in records:
        assert store.thumbnail(record).is_file()
    red = next(r for r in records if r.path.endswith("with-parameters.png"))
    assert (red.prompt, red.seed) == ("a red door", 5)
    store.close()


def test_the_canvas_opens_or_explains_each_picture(pictures, make_window, qtbot):
    window = make_window()
    for name, (path, expected) in pictures.items():
        before = window.doc
        window.error_banner.hide()
        window.files.open(path)
        qtbot.waitUntil(lambda: window.doc is not before or window.error_banner.isVisible(), timeout=30_000)
        if expected == "ok":
            assert window.doc is not before, f"{name}: {window.error_banner.text()}"
            assert window.doc.composite().any()
        else:
            assert window.error_banner.isVisible() and path.name in window.error_banner.text(), name
            assert window.doc is before, "nothing is lost: the open picture stays"


def test_a_bad_picture_never_raises_anything_but_a_sentence(pictures):
    for name, (path, expected) in pictures.items():
        try:
            load_image(path)
        except SfumatoError:
            assert expected == "refused"
