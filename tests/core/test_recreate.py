"""Recreate's core: the comparison and its figures, the model check by name and hash, what cannot be made again."""

import numpy as np
import pytest

from desktop.core.backend import ModelDescriptor
from desktop.core.errors import SfumatoError
from desktop.core.gallery.metadata import meta_from_chunks
from desktop.core.outputs import metadata_chunks
from desktop.core.recreate import RecreateRun, compare, decode, find_model, model_sentence, recreate_request
from desktop.core.request import Hires, Mode
from tests.support.requests import make_request

MODELS = [ModelDescriptor("/m/dreamy.safetensors", "sd1", "dreamy", "9f86d081"),
          ModelDescriptor("/m/4x.pth", "upscaler", "other", kinds=frozenset({"upscale"}))]


def test_the_same_pixels_are_identical_and_others_give_figures_and_a_visible_diff():
    a = np.zeros((4, 5, 3), np.uint8)
    assert compare(a, a.copy()).identical and compare(a, a.copy()).diff is None
    b = a.copy()
    b[0, 0, 1] = 1  # one channel of one pixel, by one: still seen
    b[3, 4] = 200
    found = compare(a, b)
    assert not found.identical and found.max_difference == 200
    assert found.share_different == pytest.approx(2 / 20)
    assert found.diff[3, 4].tolist() == [255] * 3 and found.diff[0, 0, 0] >= 64 and found.diff[1, 1, 0] == 0
    assert "10.00% of the pixels differ, by at most 200 of 255" in found.figures()
    assert "the sizes differ: 5 x 4 against 5 x 3" in compare(a, a[:3]).figures()


def test_another_file_under_the_models_name_is_named_with_both_hashes():
    found = find_model("dreamy.safetensors", MODELS)
    assert found.ref == "/m/dreamy.safetensors"
    assert model_sentence("dreamy.safetensors", "401156a4e4", found) == (
        "This picture was made with dreamy.safetensors [401156a4e4]; the model of that name here has hash "
        "9f86d081, a different file: the result will differ.")
    assert model_sentence("dreamy", "9F86D081AB", found) == ""  # A1111's old 8-digit hash is a prefix
    assert model_sentence("dreamy", "", found) == ""  # nothing recorded: nothing to say


def test_a_model_that_is_not_here_is_refused_with_its_name():
    with pytest.raises(SfumatoError, match="made with other, and no model of that name"):
        find_model("other", MODELS)  # an upscaler of that name is no generation model


def _meta(request, seed=7, model="dreamy", model_hash="401156a4e4"):
    return meta_from_chunks(metadata_chunks(request, seed, model, model_hash))


def test_a_txt2img_picture_with_hires_fix_gives_its_request_and_hash():
    request = make_request(prompt="a fox", steps=12, cfg_scale=5.5, width=256, height=320,
                           hires=Hires(enabled=True, scale=1.5), model="/secret/dreamy.safetensors")
    again, recorded = recreate_request(_meta(request))
    assert recorded == "401156a4e4" and again.model == "dreamy" and again.sampling.seed == 7
    assert again.hires.enabled and again.hires.scale == 1.5 and again.conditioning.prompt == "a fox"
    assert (again.width, again.height, again.sampling.steps) == (256, 320, 12)
    assert decode(RecreateRun("x.png", again, recorded).encode()) == RecreateRun("x.png", again, recorded)


def test_an_a1111_picture_is_read_from_its_infotext():
    meta = meta_from_chunks({"parameters": "a cat\nNegative prompt: blur\nSteps: 9, Sampler: Euler, "
                                           "Schedule type: Automatic, CFG scale: 4, Seed: 42, Size: 320x256, "
                                           "Model hash: 401156a4e4, Model: dreamy"})
    request, recorded = recreate_request(meta)
    assert (request.model, request.sampling.seed, request.sampling.steps, request.width) == ("dreamy", 42, 9, 320)
    assert recorded == "401156a4e4" and request.mode is Mode.TXT2IMG


@pytest.mark.parametrize("chunks, said", [
    (metadata_chunks(make_request(mode=Mode.INPAINT), 7, "dreamy"), "made from another picture (inpaint)"),
    ({"parameters": "a cat\nSteps: 9, Seed: 4, Denoising strength: 0.5, Model: dreamy"}, "(img2img)"),
    ({"parameters": "a grid\nSteps: 9, Seed: 4, Model: dreamy", "sfumato_plot": "{}"}, "X/Y/Z plot's grid"),
    ({}, "does not say how it was made"),
])
def test_what_cannot_be_made_again_is_refused_in_a_sentence(chunks, said):
    with pytest.raises(SfumatoError, match=said.replace("(", r"\(").replace(")", r"\)")):
        recreate_request(meta_from_chunks(chunks), chunks)


def test_a_jpeg_whose_parameters_are_in_exif_is_read_as_the_gallery_reads_it(tmp_path):
    from desktop.core.recreate import prepare
    from tests.core.test_foreign_metadata import write

    picture = write(tmp_path / "a1111.jpg", "JPEG", user_comment="a cat\nSteps: 4, Sampler: Euler a, CFG scale: 7, "
                                                                  "Seed: 5, Size: 16x8, Model: tiny-sd1")
    run = prepare(picture)
    assert run.request.conditioning.prompt == "a cat" and run.request.sampling.seed == 5
