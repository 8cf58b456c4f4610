"""The face detailer's repaint of one face crop: the face area changes and nothing else, the same seed gives the
same pixels, it stops within a step, strength 0 is no pass, and it writes ADetailer's keys."""

import numpy as np
import pytest

from desktop.core.errors import Cancelled
from desktop.core.postprocess import DetailSettings
from desktop.core.progress import TaskState
from desktop.core.request import Conditioning, Sampling
from desktop.engine import face_detail
from tests.engine.test_embeddings import Folder
from tests.engine.test_lora_runs import sd1_loras  # noqa: F401 - fixture

SIDE = 64


def settings(model, strength=0.5, steps=4, seed=3, prompt="a detailed face", negative="blurry"):
    return DetailSettings(model, Conditioning(prompt, negative),
                          Sampling(sampler="Euler a", schedule="Automatic", steps=steps, cfg_scale=7.0, seed=seed,
                                   strength=strength))


def crop(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


def face_mask():
    mask = np.zeros((SIDE, SIDE), bool)
    mask[16:48, 20:44] = True
    return mask


@pytest.mark.parametrize("kind", ["sd1", "sd1-inpaint", "flux1", "zimage"])
def test_the_face_area_is_repainted_and_the_rest_kept(cpu_manager, tiny_models, kind):
    image, mask = crop(1), face_mask()
    steps = []
    state = TaskState(on_step=lambda i, n, p: steps.append((i, n)))
    out, params = face_detail.repaint(settings(str(tiny_models[kind].folder)), image, mask, 5, state, cpu_manager,
                                      None)
    assert out.shape == (SIDE, SIDE, 3) and out.dtype == np.uint8
    assert np.abs(out[mask].astype(int) - image[mask].astype(int)).mean() > 1, "the face was repainted"
    assert np.array_equal(out[~mask], image[~mask]), "the context around the face is the crop's, exactly"
    assert steps == [(1, 2), (2, 2)], "strength 0.5 of 4 steps: two steps on the progress bar"
    assert dict(params) == {"ADetailer denoising strength": "0.5", "ADetailer prompt": "a detailed face",
                            "ADetailer negative prompt": "blurry"}


def test_the_same_seed_gives_the_same_face_and_another_seed_another(cpu_manager, tiny_models):
    pass_ = settings(str(tiny_models["sd1"].folder))
    image, mask = crop(2), face_mask()
    first, _ = face_detail.repaint(pass_, image, mask, 11, TaskState(), cpu_manager, None)
    again, _ = face_detail.repaint(pass_, image, mask, 11, TaskState(), cpu_manager, None)
    other, _ = face_detail.repaint(pass_, image, mask, 12, TaskState(), cpu_manager, None)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_cancel_stops_within_one_step(cpu_manager, tiny_models):
    seen = []
    state = TaskState(on_step=lambda i, n, p: (seen.append((i, n)), state.cancel()))
    with pytest.raises(Cancelled):
        face_detail.repaint(settings(str(tiny_models["sd1"].folder), strength=1.0, steps=6), crop(3), face_mask(),
                            1, state, cpu_manager, None)
    assert seen == [(1, 6)], "one step of six ran, then it stopped"


@pytest.mark.parametrize("strength", [0.0, 0.2])
def test_a_strength_that_leaves_no_step_returns_the_crop_unchanged(cpu_manager, tiny_models, strength):
    image, steps = crop(4), []
    out, params = face_detail.repaint(settings(str(tiny_models["sd1"].folder), strength=strength, steps=4), image,
                                      face_mask(), 1, TaskState(on_step=lambda i, n, p: steps.append(i)),
                                      cpu_manager, None)
    assert np.array_equal(out, image) and params == () and steps == []


def test_an_empty_prompt_writes_no_prompt_keys(cpu_manager, tiny_models):
    _, params = face_detail.repaint(settings(str(tiny_models["sd1"].folder), prompt="", negative=""), crop(5),
                                    face_mask(), 1, TaskState(), cpu_manager, None)
    assert params == (("ADetailer denoising strength", "0.5"),)


def test_the_prompts_loras_are_used_and_their_hashes_written(cpu_manager, tiny_models, sd1_loras):  # noqa: F811
    model, folder = str(tiny_models["sd1"].folder), Folder(*sd1_loras)
    image, mask = crop(6), face_mask()
    plain, _ = face_detail.repaint(settings(model, prompt="a face"), image, mask, 1, TaskState(), cpu_manager,
                                   folder)
    with_lora, params = face_detail.repaint(settings(model, prompt="a face <lora:detail:1>"), image, mask, 1,
                                            TaskState(), cpu_manager, folder)
    assert not np.array_equal(plain, with_lora)
    assert dict(params)["Lora hashes"] == "detail: 0123456789ab"
    assert dict(params)["ADetailer prompt"] == "a face <lora:detail:1>"


def test_a_seed_past_the_last_wraps_to_0_as_a_batchs_seeds_do(cpu_manager, tiny_models):
    """The faces of a picture take seed, seed + 1, ...: the one after 4294967295 is 0, not a refused request."""
    pass_ = settings(str(tiny_models["sd1"].folder))
    image, mask = crop(7), face_mask()
    past, _ = face_detail.repaint(pass_, image, mask, 2**32, TaskState(), cpu_manager, None)
    zero, _ = face_detail.repaint(pass_, image, mask, 0, TaskState(), cpu_manager, None)
    assert np.array_equal(past, zero)
