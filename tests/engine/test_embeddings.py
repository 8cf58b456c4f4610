"""Textual-inversion embeddings: every file layout A1111 reads, used by name in either prompt."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from desktop.core.errors import SfumatoError
from desktop.core.progress import TaskState
from desktop.engine import generate
from desktop.engine.embeddings import EmbeddingLibrary, read_embedding
from tests.engine.test_prompt_encoding import bare, manager, ours, theirs  # noqa: F401 - fixtures

WIDTH_SD1, WIDTH_G = 32, 64  # the tiny models' text encoder widths


def vectors(n, width, seed):
    return torch.randn((n, width), generator=torch.Generator().manual_seed(seed)) * 0.05


def write(path: Path, layout: str, n=2, seed=0, width=WIDTH_SD1) -> Path:
    """An embedding file in one of the layouts A1111 reads."""
    if layout == "a1111-pt":
        torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors(n, width, seed)},
                    "name": path.stem, "step": 100}, path)
    elif layout == "emb_params":
        save_file({"emb_params": vectors(n, width, seed)}, str(path))
    elif layout == "diffusers":
        torch.save({f"<{path.stem}>": vectors(1, width, seed)[0]}, path)
    elif layout == "sdxl":
        save_file({"clip_l": vectors(n, WIDTH_SD1, seed), "clip_g": vectors(n, WIDTH_G, seed + 1)}, str(path))
    return path


class Folder:
    """The Addons a run gets: these files by name."""

    def __init__(self, *paths):
        self.paths = {p.stem: p for p in paths}

    def find(self, kind, name):
        return self.paths.get(name) if kind == "lora" else None

    def files(self, kind):
        return dict(self.paths) if kind == "embedding" else {}

    def short_hash(self, kind, path):
        return "0123456789ab"

    def where(self, kind):
        return "the embeddings folder"


def run(manager, model, prompt, negative="", addons=None):
    from tests.support.requests import make_request

    request = make_request(model=model, prompt=prompt, negative_prompt=negative, width=64, height=64, steps=3,
                           seed=7, sampler="Euler", schedule="Automatic")
    state = TaskState()
    said = []
    state.status = said.append
    return generate.run(request, state, manager, addons=addons)[0], said


@pytest.mark.parametrize("layout", ["a1111-pt", "emb_params", "diffusers"])
def test_each_layout_reads_as_vectors(tmp_path, layout):
    got = read_embedding(write(tmp_path / f"e.{'safetensors' if layout == 'emb_params' else 'pt'}", layout))
    assert set(got) == {"clip_l"} and got["clip_l"].shape == ((1 if layout == "diffusers" else 2), WIDTH_SD1)


def test_an_sdxl_embedding_has_both_encoders(tmp_path):
    got = read_embedding(write(tmp_path / "x.safetensors", "sdxl", n=3))
    assert got["clip_l"].shape == (3, WIDTH_SD1) and got["clip_g"].shape == (3, WIDTH_G)


def test_an_embedding_matches_diffusers_textual_inversion(manager, tiny_models, bare, tmp_path):  # noqa: F811
    """The same vectors loaded by diffusers' own textual inversion give the same picture, in both prompts."""
    pipe, model = bare("sd1"), str(tiny_models["sd1"].folder)
    style = write(tmp_path / "shinystyle.pt", "a1111-pt", n=2, seed=3)
    negative = write(tmp_path / "badthing.safetensors", "emb_params", n=3, seed=4)
    got, said = run(manager, model, "a shinystyle fox", "badthing, fog", Folder(style, negative))
    pipe.load_textual_inversion(read_embedding(style)["clip_l"], token="shinystyle")
    pipe.load_textual_inversion(read_embedding(negative)["clip_l"], token="badthing")
    try:
        expected = theirs(pipe, prompt="a shinystyle fox", negative_prompt="badthing, fog")
    finally:
        pipe.unload_textual_inversion()
    assert np.array_equal(got.image, expected)
    assert dict(got.params)["TI hashes"] == "shinystyle: 0123456789ab, badthing: 0123456789ab"
    as_words, _ = run(manager, model, "a shinystyle fox", "badthing, fog")
    assert not np.array_equal(got.image, as_words.image)


def test_an_embedding_of_another_family_is_read_as_words_and_said(manager, tiny_models, tmp_path):  # noqa: F811
    model = str(tiny_models["sd1"].folder)
    other = write(tmp_path / "bigstyle.safetensors", "sdxl")
    got, said = run(manager, model, "a bigstyle fox", addons=Folder(other))
    plain, _ = run(manager, model, "a bigstyle fox")
    assert np.array_equal(got.image, plain.image) and "TI hashes" not in dict(got.params)
    assert any("bigstyle.safetensors is an embedding for another model family" in s and '"bigstyle" was read as words'
               in s for s in said), said


def test_an_sdxl_embedding_works_on_sdxl(manager, tiny_models, tmp_path):  # noqa: F811
    model = str(tiny_models["sdxl"].folder)
    emb = write(tmp_path / "xlstyle.safetensors", "sdxl", n=2)
    got, _ = run(manager, model, "a xlstyle castle", addons=Folder(emb))
    plain, _ = run(manager, model, "a xlstyle castle")
    assert not np.array_equal(got.image, plain.image) and "TI hashes" in dict(got.params)


def test_hostile_and_damaged_embeddings_get_a_sentence(tmp_path):
    class Code:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"string_to_param": {"*": Code()}}, tmp_path / "code.pt")
    with pytest.raises(SfumatoError, match="contains code, not only vectors"):
        read_embedding(tmp_path / "code.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(SfumatoError, match="could not be read as an embedding"):
        read_embedding(tmp_path / "broken.safetensors")
    save_file({"a": torch.zeros(2, 4), "b": torch.zeros(2, 4)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(SfumatoError, match="not a textual-inversion embedding"):
        read_embedding(tmp_path / "two.safetensors")
    usable, refused = EmbeddingLibrary().for_model({"code": tmp_path / "code.pt"}, {"clip_l": WIDTH_SD1})
    assert usable == {} and "contains code" in refused["code"]




def test_an_embedding_saved_again_is_encoded_anew(manager, tiny_models, tmp_path):  # noqa: F811
    """Each time the file changes, a prompt naming it gets the new vectors: the prompt-encoding cache never
    takes re-read vectors for earlier ones whose memory (and so whose id) they happen to reuse."""
    from desktop.core.request import Conditioning
    from desktop.engine import prompt_encoding

    manager.load(str(tiny_models["sd1"].folder))
    pipe = manager.pipeline("txt2img")
    conditioning = Conditioning(prompt="a shinystyle fox")
    path = tmp_path / "shinystyle.safetensors"
    for version in range(40):
        write(path, "emb_params", seed=version)
        stamp = 10**9 * (version + 1)
        os.utime(path, ns=(stamp, stamp))
        embeddings, _ = manager.usable_embeddings({"shinystyle": path})
        with torch.inference_mode():
            got = manager.span_embeddings(pipe, [conditioning], True, embeddings)[0].kwargs["prompt_embeds"]
            fresh = prompt_encoding.encode_spans(pipe, "sd1", [conditioning], True, torch.device("cpu"), embeddings)[0]
        assert torch.equal(got, fresh.kwargs["prompt_embeds"]), f"version {version} got an earlier encoding"
        del embeddings, got, fresh  # the run is over: only the caches hold anything
