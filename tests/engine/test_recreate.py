"""Recreate on the real engine with the tiny model on the CPU: a picture made again from its own metadata is the
same picture pixel for pixel; a picture whose stored parameters or model hash were changed is not, and says so."""

import json
import shutil

import numpy as np
import pytest

from desktop.core import recreate
from desktop.core.backend import GenerationJob
from desktop.core.imageio import replace_png
from desktop.core.outputs import metadata_chunks, save_result
from desktop.core.progress import TaskState
from desktop.core.runs import RunContext
from desktop.core.settings import Settings
from desktop.engine.local import LocalBackend
from tests.support.requests import change, make_request


@pytest.fixture(scope="module")
def made(tiny_models, tmp_path_factory):
    """(backend, the saved picture, its request, the model as loaded): one txt2img picture, saved as the window
    saves it."""
    folder = tmp_path_factory.mktemp("recreate-models")
    shutil.copy(tiny_models["sd1"].checkpoint, folder / "painter.safetensors")
    shutil.copytree(tiny_models["sd1"].config, folder / "painter.config")  # its sidecar config
    backend = LocalBackend("cpu", "fp32", models_folders=[folder])
    loaded = backend.load(str(folder / "painter.safetensors"), TaskState())
    request = make_request(prompt="a boat at dawn", model=loaded.ref, width=64, height=64, steps=3, seed=1234,
                           sampler="Euler a", schedule="Automatic", cfg_scale=6.0).resolved()
    result = backend.run(GenerationJob(request), TaskState())[0]
    path = save_result(tmp_path_factory.mktemp("outputs"), result.image, request, result.seed, loaded.name,
                       loaded.hash)
    yield backend, path, request, loaded
    backend.close()


def _recreate(backend, path) -> recreate.Verdict:
    run = recreate.prepare(path)
    outcome = run.run(backend, TaskState(), RunContext(Settings(), None, None))
    assert outcome.shown == [], "a check, not a new picture: nothing goes to the gallery"
    assert outcome.summary == run.verdict.summary()
    return run.verdict


def test_a_picture_made_again_is_identical_pixel_for_pixel(made):
    backend, path, _request, _loaded = made
    verdict = _recreate(backend, path)
    assert verdict.comparison.identical and verdict.comparison.diff is None
    assert verdict.summary() == "Recreated: identical to the original, pixel for pixel."


def test_a_changed_parameter_gives_another_picture_a_diff_and_figures(made, tmp_path):
    backend, path, request, loaded = made
    copy = tmp_path / "changed.png"
    shutil.copy(path, copy)
    changed = change(request, cfg_scale=9.0)  # the picture now claims another CFG scale than it was made with
    original = np.asarray(recreate.imageio.load_image(copy, keep_alpha=False))
    replace_png(copy, original, metadata_chunks(changed, request.sampling.seed, loaded.name, loaded.hash))

    verdict = _recreate(backend, copy)
    comparison = verdict.comparison
    assert not comparison.identical
    assert comparison.max_difference > 0 and 0 < comparison.share_different <= 1
    assert comparison.diff.shape == original.shape and comparison.diff.max() == 255
    assert (comparison.diff > 0).mean() == pytest.approx(comparison.share_different)
    said = verdict.summary()
    assert said.startswith("Recreated changed.png: not identical: ") and "of the pixels differ" in said
    assert "CPU and GPU results differ in the last bits" in said and verdict.device in said
    assert "different file" not in said, "the model is the picture's"


def test_a_changed_model_hash_is_named(made, tmp_path):
    backend, path, request, loaded = made
    copy = tmp_path / "other-model.png"
    shutil.copy(path, copy)
    original = np.asarray(recreate.imageio.load_image(copy, keep_alpha=False))
    replace_png(copy, original, metadata_chunks(request, request.sampling.seed, loaded.name, "401156a4e4"))

    verdict = _recreate(backend, copy)
    assert verdict.comparison.identical  # the same file made it: only the recorded hash was changed
    assert verdict.summary() == (
        "Recreated: identical to the original, pixel for pixel. This picture was made with painter [401156a4e4]; "
        f"the model of that name here has hash {loaded.hash}, a different file: the result will differ.")


def test_a_picture_of_a_model_that_is_not_here_is_refused(made, tmp_path):
    backend, path, request, loaded = made
    copy = tmp_path / "gone.png"
    shutil.copy(path, copy)
    original = np.asarray(recreate.imageio.load_image(copy, keep_alpha=False))
    replace_png(copy, original, metadata_chunks(request, request.sampling.seed, "dreamy", loaded.hash))
    run = recreate.prepare(copy)
    with pytest.raises(recreate.SfumatoError, match="made with dreamy, and no model of that name"):
        run.run(backend, TaskState(), RunContext(Settings(), None, None))
    assert json.loads(json.dumps(run.encode()))["kind"] == "recreate"


def test_an_img2img_and_an_inpaint_are_made_again_from_their_pictures_in_the_gallery(made, tmp_path):
    """Through the picture's lineage: its init picture and its mask (a grey file) found in the gallery by hash."""
    from PIL import Image

    from desktop.core.gallery.store import GalleryStore
    from desktop.core.request import Images, InpaintArea, Mode

    backend, path, _request, loaded = made
    store = GalleryStore(tmp_path / "gallery", tmp_path / "thumbs", trash=lambda p: p.unlink())
    try:
        shutil.copy(path, store.folder / path.name)
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, 8:40] = 255
        Image.fromarray(mask).save(store.folder / "mask.png")
        store.refresh()
        while store.fill_hashes():
            pass
        init = recreate.imageio.load_image(store.folder / path.name)
        for request in (make_request(mode=Mode.IMG2IMG, prompt="a boat at dusk", strength=0.6),
                        make_request(mode=Mode.INPAINT, prompt="a red sail", strength=0.8, mask_blur=2,
                                     inpaint_area=InpaintArea.ONLY_MASKED, inpaint_padding=8)):
            request = change(request, model=loaded.ref, width=64, height=64, steps=3, seed=77, sampler="Euler a",
                             schedule="Automatic").replace(images=Images(init, mask if request.mode is Mode.INPAINT
                                                                         else None)).resolved()
            result = backend.run(GenerationJob(request), TaskState())[0]
            child = store.add_result(result.image, result.request, result.seed, loaded.name, loaded.hash)
            run = recreate.prepare(child, "", store)
            assert [role for role, _, _ in run.sources] == (["init", "mask"] if request.mode is Mode.INPAINT
                                                            else ["init"])
            run.run(backend, TaskState(), RunContext(Settings(), None, None))
            assert run.verdict.comparison.identical, run.verdict.summary()
    finally:
        store.close()
