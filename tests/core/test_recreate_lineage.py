"""Recreate of a picture made from other pictures, on the FakeBackend: its init picture and mask are found in the
gallery by the hashes its lineage records and it is made again identical; a missing one is named in a sentence; a
picture whose model is not here is refused before any model is loaded."""

import numpy as np
import pytest
from PIL import Image

from desktop.core.backend import GenerationJob, ModelDescriptor
from desktop.core.errors import SfumatoError
from desktop.core.gallery.store import GalleryStore
from desktop.core.imageio import load_image
from desktop.core.progress import TaskState
from desktop.core.recreate import decode, prepare
from desktop.core.request import Images, InpaintArea, Mode
from desktop.core.runs import RunContext
from desktop.core.settings import Settings
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request


@pytest.fixture
def store(tmp_path):
    store = GalleryStore(tmp_path / "outputs", tmp_path / "thumbs", trash=lambda p: p.unlink())
    yield store
    store.close()


def made(backend, store, request, model_name="demo"):
    """A picture made on the backend and saved into the gallery as the window saves it (with its lineage)."""
    result = backend.run(GenerationJob(request), TaskState())[0]
    return store.add_result(result.image, result.request, result.seed, model_name)


def recreate(backend, path, store, panel_model=""):
    run = prepare(path, panel_model, store)
    run = decode(run.encode())  # as the queue keeps it
    run.run(backend, TaskState(), RunContext(Settings(), None, None))
    return run.verdict


def mask_picture(store, name="mask.png"):
    """A mask's file in the gallery (a grey PNG), hashed as the gallery hashes pictures that carry no hash."""
    mask = np.zeros((64, 64), np.uint8)
    mask[8:40, 16:48] = 255
    Image.fromarray(mask).save(store.folder / name)
    store.refresh()
    while store.fill_hashes():
        pass
    return mask


def base(backend, store):
    return made(backend, store, make_request(prompt="a harbour", width=64, height=64, steps=4, seed=3))


def test_an_img2img_picture_is_made_again_from_its_init_picture_in_the_gallery(store):
    backend = FakeBackend()
    first = base(backend, store)
    init = load_image(first)
    child = made(backend, store, make_request(mode=Mode.IMG2IMG, prompt="a harbour at night", width=64, height=64,
                                              steps=8, strength=0.6, seed=11).replace(images=Images(init)))
    verdict = recreate(backend, child, store)
    assert verdict.comparison.identical, verdict.summary()
    job = backend.jobs[-1].request
    assert job.mode is Mode.IMG2IMG and np.array_equal(job.images.init, init) and job.sampling.strength == 0.6


def test_an_inpaint_is_made_again_with_its_init_picture_and_mask_and_its_settings(store):
    backend = FakeBackend()
    first = base(backend, store)
    mask = mask_picture(store)
    request = make_request(mode=Mode.INPAINT, prompt="a boat", width=64, height=64, steps=6, strength=0.75, seed=5,
                           mask_blur=2, inpaint_area=InpaintArea.ONLY_MASKED, inpaint_padding=8)
    child = made(backend, store, request.replace(images=Images(load_image(first), mask)))
    verdict = recreate(backend, child, store)
    assert verdict.comparison.identical, verdict.summary()
    again = backend.jobs[-1].request
    assert np.array_equal(again.images.mask, mask)
    assert (again.inpaint.mask_blur, again.inpaint.area, again.inpaint.padding) == (2, InpaintArea.ONLY_MASKED, 8)


def test_a_missing_init_picture_or_mask_is_named_and_refused(store):
    backend = FakeBackend()
    first = base(backend, store)
    painted = np.zeros((64, 64), np.uint8)
    painted[:10] = 255  # painted on the canvas: never in the gallery
    inpainted = made(backend, store, make_request(mode=Mode.INPAINT, width=64, height=64, steps=4, seed=1)
                     .replace(images=Images(load_image(first), painted)))
    with pytest.raises(SfumatoError) as refused:
        prepare(inpainted, "", store)
    assert str(refused.value) == ("Recreate needs the mask it was inpainted with, and it is not in the gallery "
                                  "(a mask painted on the canvas is never saved there).")
    child = made(backend, store, make_request(mode=Mode.IMG2IMG, width=64, height=64, steps=4, seed=2)
                 .replace(images=Images(load_image(first))))
    store.delete([store.index.by_path(store.relative(first)).id])
    with pytest.raises(SfumatoError) as refused:
        prepare(child, "", store)
    assert str(refused.value) == ("Recreate needs the picture this one was made from, and it is not in the gallery "
                                  "(deleted, or changed on the canvas before it was used).")
    with pytest.raises(SfumatoError, match="the picture this one was made from and the mask it was inpainted with, "
                                           "and neither is in the gallery"):
        prepare(inpainted, "", store)


def test_an_init_picture_changed_after_the_recreate_was_queued_is_named(store):
    backend = FakeBackend()
    first = base(backend, store)
    child = made(backend, store, make_request(mode=Mode.IMG2IMG, width=64, height=64, steps=4, seed=2)
                 .replace(images=Images(load_image(first))))
    run = prepare(child, "", store)
    Image.fromarray(load_image(first)[::-1].copy()).save(first)
    with pytest.raises(SfumatoError, match=f"^{first.name}, the picture it was made from, has changed since"):
        run.run(backend, TaskState(), RunContext(Settings(), None, None))
    assert backend.jobs[-1].request.mode is Mode.IMG2IMG, "nothing run again: the last job is the child's own"


def test_a_picture_whose_model_is_missing_is_refused_before_the_panels_model_is_loaded(store):
    backend = FakeBackend(catalogue=[ModelDescriptor("/models/other.safetensors", "sd1", "other")])
    picture = made(backend, store, make_request(width=64, height=64, steps=2, seed=4, model="/x/dreamy.safetensors"),
                   model_name="dreamy")
    backend.loads.clear()
    before = backend.started
    with pytest.raises(SfumatoError, match="made with dreamy, and no model of that name is in your model folders"):
        recreate(backend, picture, store, panel_model="/elsewhere/painter.safetensors")
    assert backend.loads == [] and backend.started == before, "no model switch for a refusal"
    with pytest.raises(SfumatoError, match="made with dreamy, and no model of that name"):
        recreate(backend, picture, store, panel_model="demo")  # the demo model is tiny-sd1
    assert backend.loads == []

    verdict = recreate(backend, picture, store, panel_model="/x/dreamy.safetensors")  # outside the folders
    assert set(backend.loads) == {"/x/dreamy.safetensors"} and verdict.comparison.identical



def test_an_init_picture_not_hashed_yet_asks_to_try_again_in_a_moment(store):
    backend = FakeBackend()
    old = np.random.default_rng(8).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(old).save(store.folder / "old.png")  # saved before lineage; the gallery has not hashed it yet
    store.refresh()
    child = made(backend, store, make_request(mode=Mode.IMG2IMG, width=64, height=64, steps=4, seed=2)
                 .replace(images=Images(old)))
    with pytest.raises(SfumatoError, match=r"is not in the gallery yet \(the gallery is still reading its older "):
        prepare(child, "", store)
    while store.fill_hashes():
        pass
    assert prepare(child, "", store).sources[0][2] == str(store.folder / "old.png")
