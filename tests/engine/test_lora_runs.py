"""LoRAs named in prompts, end to end: found by file name, merged for the run, gone when taken out."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from desktop.cli import main
from desktop.core import addons
from desktop.core.errors import SfumatoError
from desktop.core.infotext import parse_infotext
from desktop.core.progress import TaskState
from desktop.engine import generate
from desktop.engine.tiny_addons import build_lora
from tests.engine.test_embeddings import Folder
from tests.engine.test_prompt_encoding import manager  # noqa: F401 - fixture
from tests.support.requests import make_request


@pytest.fixture(scope="module")
def sd1_loras(tiny_models, tmp_path_factory):
    """A kohya and a LoHa LoRA for the tiny SD 1.x model."""
    folder = tmp_path_factory.mktemp("loras")
    pipe = StableDiffusionPipeline.from_pretrained(tiny_models["sd1"].folder, safety_checker=None,
                                                   requires_safety_checker=False)
    return (build_lora(pipe, "kohya", folder / "detail.safetensors", seed=1),
            build_lora(pipe, "loha", folder / "style_loha.safetensors", seed=2))


def run(manager, model, prompt, addons_=None):  # noqa: F811
    request = make_request(model=model, prompt=prompt, width=64, height=64, steps=3, seed=7, sampler="Euler",
                           schedule="Automatic")
    return generate.run(request, TaskState(), manager, addons=addons_)[0]


def test_a_lora_changes_the_picture_and_taking_it_out_restores_it_exactly(manager, tiny_models, sd1_loras):  # noqa: F811
    model, folder = str(tiny_models["sd1"].folder), Folder(*sd1_loras)
    base = run(manager, model, "a fox", folder).image
    assert np.array_equal(run(manager, model, "a fox <lora:detail:0>", folder).image, base), "weight 0 is no LoRA"
    one = run(manager, model, "a fox <lora:detail:1>", folder)
    assert np.abs(one.image.astype(int) - base.astype(int)).mean() > 1
    assert dict(one.params)["Lora hashes"] == "detail: 0123456789ab"
    both = run(manager, model, "a fox <lora:detail:1> <lora:style_loha:0.8>", folder).image
    assert not np.array_equal(both, one.image)
    assert np.array_equal(run(manager, model, "a fox <lora:detail:1>", folder).image, one.image), "switching back"
    assert np.array_equal(run(manager, model, "a fox", folder).image, base), "every LoRA out: the base, exactly"
    text_only = run(manager, model, "a fox <lora:detail:1:0>", folder).image  # A1111: te weight, then unet weight
    assert not np.array_equal(text_only, base) and not np.array_equal(text_only, one.image)


def test_a_missing_lora_stops_the_run_with_a_sentence(manager, tiny_models, sd1_loras):  # noqa: F811
    with pytest.raises(SfumatoError, match=r"No LoRA file is named nowhere\. Put it in the embeddings folder"):
        run(manager, str(tiny_models["sd1"].folder), "a fox <lora:nowhere:0.5>", Folder(*sd1_loras))
    with pytest.raises(SfumatoError, match="does not use <hypernet:x:1>"):
        run(manager, str(tiny_models["sd1"].folder), "a fox <hypernet:x:1>", Folder(*sd1_loras))


def test_an_sdxl_lora_on_an_sd1_model_names_both_families(manager, tiny_models, tmp_path):  # noqa: F811
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_models["sdxl"].folder)
    xl = build_lora(pipe, "kohya", tmp_path / "xl_detail.safetensors")
    with pytest.raises(SfumatoError, match="SDXL") as refused:
        run(manager, str(tiny_models["sd1"].folder), "a fox <lora:xl_detail:1>", Folder(xl))
    assert "SD 1" in str(refused.value)
    assert np.array_equal(run(manager, str(tiny_models["sd1"].folder), "a fox", Folder(xl)).image,
                          run(manager, str(tiny_models["sd1"].folder), "a fox").image), "left at base"


def test_the_cli_takes_tags_and_clip_skip_and_its_infotext_reads_back(capsys, tmp_path, tiny_models, sd1_loras):
    own = addons.ensure_own_folder("lora")
    (own / "detail.safetensors").write_bytes(sd1_loras[0].read_bytes())
    prompt = "(a:1.2) fox <lora:detail:0.5>"
    code = main(["--model", str(tiny_models["sd1"].folder), "--prompt", prompt, "--steps", "2", "--seed", "5",
                 "--width", "64", "--height", "64", "--clip-skip", "2", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    info = parse_infotext(Image.open(out.splitlines()[0]).text["parameters"])
    assert info.prompt == prompt and info.params["Clip skip"] == "2"
    assert info.params["Lora hashes"] == f"detail: {addons.short_hash('lora', own / 'detail.safetensors')}"


def test_a_lora_tag_in_the_negative_prompt_is_read_as_words_as_in_a1111(manager, tiny_models, sd1_loras):  # noqa: F811
    """A1111 takes LoRAs from the prompt only: a tag in the negative prompt is encoded as the text it is, its
    LoRA is neither looked for nor merged, and the status line says so."""
    request = make_request(model=str(tiny_models["sd1"].folder), prompt="a fox", negative_prompt="blurry <lora:detail:1>",
                           width=64, height=64, steps=3, seed=7, sampler="Euler", schedule="Automatic")
    state, said = TaskState(), []
    state.status = said.append
    got = generate.run(request, state, manager, addons=Folder(*sd1_loras))[0]
    without_the_file = generate.run(request, TaskState(), manager, addons=Folder())[0]
    assert np.array_equal(got.image, without_the_file.image) and "Lora hashes" not in dict(got.params)
    assert any("<lora:detail:1>" in s and "negative prompt" in s for s in said), said
    as_if_no_tag = generate.run(request.replace(conditioning=request.conditioning.replace(negative_prompt="blurry")),
                                TaskState(), manager, addons=Folder(*sd1_loras))[0]
    assert not np.array_equal(got.image, as_if_no_tag.image), "the tag's words are in the negative conditioning"


def test_a_name_with_a_comma_is_written_in_the_hashes_as_a1111_writes_it(manager, tiny_models, sd1_loras, tmp_path):  # noqa: F811
    """A1111 leaves ':' and ',' out of the names in "Lora hashes", so the list reads back name by name."""
    from desktop.core.infotext import parse_hashes

    renamed = tmp_path / "detail, v2.safetensors"
    renamed.write_bytes(sd1_loras[0].read_bytes())
    got = run(manager, str(tiny_models["sd1"].folder), "a fox <lora:detail, v2:1>", Folder(renamed))
    assert parse_hashes(dict(got.params)["Lora hashes"]) == {"detail v2": "0123456789ab"}
