"""Odd requests: empty, very long, control-character and emoji prompts work; bad numbers name their field."""

import numpy as np
import pytest
from PIL import Image

from desktop.core.errors import InvalidRequest
from desktop.core.gallery.metadata import read_image_meta
from desktop.core.gallery.store import GalleryStore
from desktop.core.progress import TaskState

from desktop.engine import generate
from tests.support.requests import make_request

PROMPTS = {
    "empty": "",
    "ten thousand characters": ("a lighthouse, " * 800)[:10_000],
    "control characters": "a cat\x00 with\x07 a\x1b[31m hat\r\nNegative prompt: not really\tmore",
    "emoji": "🐈‍⬛ a black cat 🎩 in a top hat, ✨ sparkles, 日本の猫",
    "quotes and json": '{"prompt": "sneaky"} "quoted" \\ back\\slash',
}


@pytest.mark.parametrize("name", list(PROMPTS))
def test_odd_prompts_generate_and_their_parameters_read_back(name, cpu_manager, tiny_models, tmp_path):
    prompt = PROMPTS[name]
    request = make_request(prompt=prompt, negative_prompt=prompt[:50], model=str(tiny_models["sd1"].folder),
                                width=64, height=64, steps=1, seed=7)
    result = generate.run(request, TaskState(), cpu_manager)[0]
    assert result.image.shape == (64, 64, 3) and result.image.std() > 1, "a picture, not a blank"
    store = GalleryStore(tmp_path / "out", tmp_path / "thumbs")
    path = store.add_result(result.image, result.request, result.seed, "tiny")
    meta, _, _ = read_image_meta(path)
    assert meta.prompt == prompt.strip() or meta.request["prompt"] == prompt
    assert meta.seed == 7
    Image.open(path).load()
    store.close()


@pytest.mark.parametrize("field, value, words", [
    ("width", 63, "between 64 and 4096"), ("height", 8192, "4096"),
    ("height", -8, "between"), ("width", 512.0, "whole number"), ("steps", 0, "between 1 and 150"),
    ("steps", 10_000, "150"), ("cfg_scale", float("nan"), "a number"), ("cfg_scale", 31, "between 0 and 30"),
    ("batch_size", 17, "between 1 and 16"), ("strength", 1.5, "between 0 and 1"), ("seed", 2**32, "4294967295"),
    ("seed", -2, "between"), ("seed", 10**30, "between"), ("seed", True, "whole number"),
    ("prompt", "x" * 20_001, "limit is 20000"), ("prompt", None, "must be text"),
])
def test_bad_values_name_their_field(field, value, words):
    with pytest.raises(InvalidRequest) as caught:
        make_request(**{field: value}).validate()
    assert caught.value.field == field and words in str(caught.value)
