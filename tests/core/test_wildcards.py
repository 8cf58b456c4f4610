"""Wildcards and dynamic prompts: __name__ from text files, {a|b} variants, chosen by the picture's seed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from desktop.core import paths
from desktop.core.request import Conditioning, GenerationRequest, Sampling
from desktop.core.wildcards import (
    WildcardError,
    expand,
    expand_batch,
    expand_request,
    wildcard_folders,
    wildcard_names,
)


@pytest.fixture
def folder():
    """The person's own wildcards folder (under the test's SFUMATO_HOME)."""
    folder = paths.wildcards_dir()
    folder.mkdir(parents=True)
    return folder


def write(folder, name, *lines):
    path = folder / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def outcomes(text, folders=(), seeds=range(200), **kwargs):
    return {expand(text, seed, list(folders), **kwargs) for seed in seeds}


def test_a_wildcard_is_one_line_of_its_file_chosen_by_the_seed(folder):
    write(folder, "colors", "# the colours", "red", "", "green", "  blue  ", "#grey")
    assert outcomes("a __colors__ car", [folder]) == {"a red car", "a green car", "a blue car"}
    assert expand("a __colors__ car", 7, [folder]) == expand("a __colors__ car", 7, [folder])
    assert len({expand("__colors__ __colors__ __colors__", seed, [folder]) for seed in range(5)}) > 1


def test_the_same_seed_gives_the_same_prompt_in_another_process(folder):
    write(folder, "colors", *(f"colour{i}" for i in range(50)))
    text = "a {cat|dog|fox|owl} in __colors__, {2$$x|y|z|w}"
    here = [expand(text, seed, [folder]) for seed in (1, 2, 3, 4_000_000_000)]
    code = ("import sys, pathlib; from desktop.core.wildcards import expand; "
            f"print(repr([expand({text!r}, s, [pathlib.Path(sys.argv[1])]) for s in (1, 2, 3, 4_000_000_000)]))")
    there = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=paths.resources_dir().parent).stdout
    assert there.strip() == repr(here)
    assert len(set(here)) > 1  # another seed (usually) another prompt


def test_wildcard_files_may_hold_wildcards_and_variants(folder):
    write(folder, "animal", "{big|small} __species__")
    write(folder, "species", "cat", "dog")
    assert outcomes("a __animal__", [folder]) == {f"a {s} {a}" for s in ("big", "small") for a in ("cat", "dog")}


def test_a_sub_folder_names_the_wildcard_with_a_slash(folder):
    write(folder / "clothes", "hats", "a fedora", "a beret")
    write(folder, "hats", "not this one")
    assert outcomes("wearing __clothes/hats__", [folder]) == {"wearing a fedora", "wearing a beret"}
    assert wildcard_names([folder]) == ["clothes/hats", "hats"]


def test_names_with_underscores_and_several_wildcards_on_a_line(folder):
    write(folder, "hair_color", "black")
    write(folder, "eye_color", "green")
    assert expand("__hair_color__ hair, __eye_color__ eyes", 1, [folder]) == "black hair, green eyes"


def test_variants_choose_one_option_each():
    assert outcomes("a {red|green|blue} car") == {"a red car", "a green car", "a blue car"}
    assert outcomes("{a|{b|c}}") == {"a", "b", "c"}
    assert outcomes("{|very }big") == {"big", "very big"}


def test_weights_make_an_option_likelier():
    picks = [expand("{9::red|blue}", seed, []) for seed in range(1000)]
    assert 850 < picks.count("red") < 950
    assert outcomes("{0::never|always}") == {"always"}
    assert outcomes("{0.5::a|1.5::b}") == {"a", "b"}


def test_several_options_joined_by_a_comma_or_the_given_separator():
    two = outcomes("{2$$red|green|blue}")
    assert two <= {f"{a}, {b}" for a in ("red", "green", "blue") for b in ("red", "green", "blue") if a != b}
    assert len(two) == 6
    assert outcomes("{2$$ and $$red|green}") == {"red and green", "green and red"}
    assert outcomes("{5$$a|b}") == {"a, b", "b, a"}  # no more than there are
    assert {len(x.split(", ")) for x in outcomes("{1-3$$a|b|c|d}")} == {1, 2, 3}
    assert {len(x.split(", ")) for x in outcomes("{2-$$a|b|c}")} == {2, 3}


@pytest.mark.parametrize("text", [
    "(masterpiece:1.2), [cat:dog:0.5], [red|blue] hair, <lora:detail_tweaker:0.7>, \\(literal\\)",
    "a photo, BREAK, (((very))) [[small]] __, ___, ____ 4__2 \\\\ x \\ y",
])
def test_a1111_syntax_is_untouched(text):
    assert expand(text, 1, []) == text
    assert expand("{x} " + text, 1, []) == "x " + text  # also beside a variant


def test_an_alternation_inside_a_variant_is_not_split():
    assert outcomes("{[red|blue] hair|bald}") == {"[red|blue] hair", "bald"}


def test_escaped_braces_and_bars_are_literal():
    assert expand(r"a \{b\} c", 3, []) == "a {b} c"
    assert outcomes(r"{a\|b|c}") == {"a|b", "c"}


def test_an_unknown_wildcard_is_a_sentence_naming_it_and_the_folders(folder, tmp_path):
    models = tmp_path / "models"
    with pytest.raises(WildcardError) as caught:
        expand_request(request("a __nothing__ here"), [models])
    message = str(caught.value)
    assert "__nothing__" in message and "nothing.txt" in message
    assert str(folder) in message and str(models / "wildcards") in message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("text, says", [("a {red|blue", "no }"), ("a red}", "no {"), ("__self__", "nest")])
def test_broken_syntax_is_a_sentence(folder, text, says):
    write(folder, "self", "__self__ again")
    with pytest.raises(WildcardError, match=says):
        expand(text, 1, [folder])


def test_the_sentence_names_the_negative_prompt_when_it_is_there():
    with pytest.raises(WildcardError, match="^The negative prompt has a { with no }"):
        expand_request(request("{fine|good}", "{blurry"), [])


def test_an_empty_file_is_a_sentence(folder):
    write(folder, "empty", "# nothing yet", "")
    with pytest.raises(WildcardError, match="no lines"):
        expand("__empty__", 1, [folder])


def test_the_folders_are_sfumatos_then_each_models_folder_and_the_apps_beside_them(tmp_path):
    a1111 = tmp_path / "webui" / "models" / "Stable-diffusion"
    comfy = tmp_path / "ComfyUI" / "models" / "checkpoints"
    assert wildcard_folders([tmp_path / "mine", a1111, comfy, tmp_path / "mine"]) == [
        paths.wildcards_dir(), tmp_path / "mine" / "wildcards",
        a1111 / "wildcards", tmp_path / "webui" / "extensions" / "sd-dynamic-prompts" / "wildcards",
        comfy / "wildcards", tmp_path / "ComfyUI" / "wildcards"]


def test_a_models_folders_wildcards_count(tmp_path):
    models = tmp_path / "models"
    write(models / "wildcards", "mood", "calm")
    assert expand_request(request("__mood__ sea"), [models]).conditioning.prompt == "calm sea"


def request(prompt, negative="", seed=5, batch_size=1):
    return GenerationRequest(sampling=Sampling(seed=seed, batch_size=batch_size),
                             conditioning=Conditioning(prompt=prompt, negative_prompt=negative))


def test_a_request_has_both_prompts_expanded_by_its_seed(folder):
    write(folder, "bad", *(f"bad{i}" for i in range(30)))
    resolved = [expand_request(request("{a|b|c|d|e|f}", "__bad__", seed=s), []) for s in range(40)]
    assert all("{" not in r.conditioning.prompt and "__" not in r.conditioning.negative_prompt for r in resolved)
    assert len({r.conditioning.negative_prompt for r in resolved}) > 5
    again = expand_request(request("{a|b|c|d|e|f}", "__bad__", seed=11), [])
    assert again == resolved[11]


def test_a_request_without_the_syntax_is_returned_as_it_is():
    plain = request("a (cat:1.2)", "blurry")
    assert expand_request(plain, []) is plain
    assert expand_batch(plain.replace(sampling=plain.sampling.replace(batch_size=4)), []) == \
        [plain.replace(sampling=plain.sampling.replace(batch_size=4))]


def test_a_batch_gives_each_seed_the_prompt_that_seed_chooses_alone():
    template = "a {red|green|blue|yellow|pink|black|white|grey} cat"
    batch = expand_batch(request(template, "{blurry|dark|flat}", seed=100, batch_size=4), [])
    alone = [expand_request(request(template, "{blurry|dark|flat}", seed=seed), []) for seed in range(100, 104)]
    assert batch == alone  # one picture a seed, in the batch's order, each as that seed alone (a plot, a folder batch)
    assert len({r.conditioning.prompt for r in batch}) > 1


def test_a_batch_whose_seeds_all_choose_the_same_runs_as_one_batch(folder):
    write(folder, "only", "calm")
    [one] = expand_batch(request("a __only__ {sea}", seed=7, batch_size=3), [])
    assert (one.conditioning.prompt, one.sampling.seed, one.sampling.batch_size) == ("a calm sea", 7, 3)
