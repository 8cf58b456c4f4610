"""The gallery's Recreate button on a picture made from another picture: the run it queues carries its init
picture as found in the gallery; a missing one is said in a sentence."""

from desktop.core.imageio import load_image
from desktop.core.request import Images, Mode
from tests.core.test_recreate_lineage import base, made, store  # noqa: F401 - the store fixture
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request


def test_the_gallerys_recreate_button_finds_the_init_picture_or_says_which_is_missing(store, qtbot):
    from desktop.ui.gallery.view import GalleryView

    backend = FakeBackend()
    first = base(backend, store)
    child = made(backend, store, make_request(mode=Mode.IMG2IMG, width=64, height=64, steps=4, seed=2)
                 .replace(images=Images(load_image(first))))
    view = GalleryView()
    qtbot.addWidget(view)
    view.set_store(store)
    view.select_row(view.model.row_of(store.index.by_path(store.relative(child)).id))
    with qtbot.waitSignal(view.recreate_requested) as queued:
        view.buttons["recreate"].click()
    assert queued.args[0].sources == (("init", store.index.by_path(store.relative(first)).pixel_hash, str(first)),)

    store.delete([store.index.by_path(store.relative(first)).id])
    with qtbot.waitSignal(view.error) as said:
        view.buttons["recreate"].click()
    assert said.args[0].startswith("Recreate needs the picture this one was made from, and it is not in the gallery")
    view.background.wait()
    qtbot.waitUntil(lambda: not view.background._callbacks)
