"""The pure-Python CLIP tokenizer gives transformers' ids, and counts tokens as A1111's "12/75" counter does."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from desktop.core import clip_tokenizer, paths, prompts, tokenizer_files
from desktop.core.clip_tokenizer import count_tokens

# Prompts people write and paste, and what trips tokenizers up.
PROMPTS = [
    "",
    " ",
    "a photo of a cat",
    "  Hello   World \n\t ",
    "masterpiece, best quality, 1girl, (red hair:1.2), [blurry], ((detailed eyes))",
    "(x:1.2)",
    "<lora:add_detail:0.7>, <lyco:foo:1:0.5> <hypernet:bar:1>",
    "score_9, score_8_up, source_anime, rating_safe",
    "12345 dollars!!! 3.14159 1e-9 #hashtag @user 50% off",
    "don't, they've, I'm, we'll, she'd, it's, you're, O'Neil",
    "ΑΣ ΟΣ Ελληνικά",
    "İstanbul straße ÉCOLE naïve café",
    "日本語のテキスト 中文 한국어",
    "🙂🙂 👍🏽 👨‍👩‍👧 🇫🇷",
    "a\u0301 e\u0301",
    "x\u200by a\x1cb a\x85b a\u00a0b a\ufeffb a\x00b \ufffd",
    "<|endoftext|> a<|startoftext|>b <|ENDOFTEXT|> <|startoftext",
    "hello! wow!! !",
    "BREAK word BREAK",
    "\\(escaped\\) \\[brackets\\] back\\\\slash",
    "very long " + "word " * 400,
]


@pytest.fixture(scope="session")
def folders(tmp_path_factory, tiny_models):
    """name -> a tokenizer folder: the real CLIP vocabulary (SDXL's two) and the tiny models' tokenizer."""
    from desktop.engine.bundled_configs import assemble_config

    real = assemble_config("sdxl", tmp_path_factory.mktemp("configs") / "sdxl")
    return {"real": real / "tokenizer", "real_2": real / "tokenizer_2",
            "tiny": tiny_models["sd1"].folder / "tokenizer"}


@pytest.fixture(scope="session")
def pairs(folders):
    """name -> (ours, transformers' CLIPTokenizer) for the same folder."""
    from transformers import CLIPTokenizer

    return {name: (clip_tokenizer.load(folder), CLIPTokenizer.from_pretrained(folder, local_files_only=True))
            for name, folder in folders.items()}


def reference_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, truncation=False).input_ids


@pytest.mark.parametrize("name", ["real", "real_2", "tiny"])
@pytest.mark.parametrize("text", PROMPTS)
def test_ids_equal_transformers(pairs, name, text):
    ours, theirs = pairs[name]
    assert ours.encode(text) == reference_ids(theirs, text)


PROMPT_WORDS = st.sampled_from([
    "cat", "photo", "masterpiece", "best quality", "BREAK", ",", ", ", ".", "(", ")", "[", "]", ":", "1.2",
    "0.5", "(red:1.3)", "[blue]", "((nested))", "<lora:detail:0.7>", "<lora:x:abc>", "\\(", "\\)", " ", "  ",
    "\n", "'s", "don't", "🙂", "日本", "Straße", "Σ", "<|endoftext|>", "!", "!!", "999", "a_b-c", "|", "AND",
])
# Characters Unicode had assigned by Python's unicodedata version: the tokenizers library and the regex
# package each carry their own, newer Unicode tables, which classify later characters differently.
ASSIGNED = st.characters(exclude_categories=("Cn", "Cs"))
PROMPTLIKE = st.lists(PROMPT_WORDS | st.text(ASSIGNED, max_size=8), max_size=120).map("".join)
# Prompt editing and alternation around prompt-like text.
EDITED = st.lists(PROMPTLIKE.map(lambda t: t[:40]) | st.builds(
    "[{}:{}:{}]".format, PROMPTLIKE.map(lambda t: t[:60]), PROMPTLIKE.map(lambda t: t[:60]),
    st.sampled_from(["0.5", "3", "10", ".25"])) | st.builds("[{}|{}]".format, PROMPT_WORDS, PROMPT_WORDS),
    max_size=6).map("".join)


@pytest.mark.parametrize("name", ["real", "real_2", "tiny"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(ASSIGNED, max_size=300) | PROMPTLIKE)
@example(text="Ᾰ\u0345")  # characters whose lower case is more than one character
def test_ids_equal_transformers_for_any_text(pairs, name, text):
    ours, theirs = pairs[name]
    assert ours.encode(text) == reference_ids(theirs, text)


@pytest.mark.parametrize("name", ["real", "tiny"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzé日本"), min_size=300, max_size=3000))
def test_ids_equal_transformers_for_long_words(pairs, name, text):
    ours, theirs = pairs[name]
    assert ours.encode(text) == reference_ids(theirs, text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=PROMPTLIKE | EDITED, emphasis=st.sampled_from(prompts.EMPHASIS_MODES), steps=st.integers(1, 40))
def test_count_is_what_the_encoder_chunks(pairs, text, emphasis, steps):
    """The counter chunks exactly as the engine does with transformers' ids per piece (no BOS/EOS), for the
    longest text of the run's prompt-editing schedule."""
    ours, theirs = pairs["real"]
    comma = theirs.convert_tokens_to_ids(",</w>")
    counts = []
    for _, scheduled in prompts.prompt_schedule(text, steps):
        try:
            plain, _ = prompts.extract_extra_networks(scheduled)
        except ValueError:  # a tag with a bad weight: the engine refuses the prompt (tested below for the counter)
            assume(False)
        pieces = [([] if p.is_break else reference_ids(theirs, p.text), p)
                  for p in prompts.pieces_for(plain, emphasis)]
        counts.append(prompts.chunk(pieces, theirs.bos_token_id, theirs.eos_token_id, comma)[1])
    assert count_tokens(text, ours, emphasis, steps) == (max(counts), prompts.token_limit(max(counts)))


# -- counting as A1111 -------------------------------------------------------------------


@pytest.fixture
def real(pairs):
    return pairs["real"][0]


def test_count_and_limit(real):
    assert count_tokens("", real) == (0, 75)
    assert count_tokens("a photo of a cat", real) == (5, 75)
    assert count_tokens("cat " * 75, real) == (75, 75)
    assert count_tokens("cat " * 80, real) == (80, 150)
    assert count_tokens("cat " * 151, real) == (151, 225)


def test_emphasis_and_tags_are_not_counted(real):
    assert count_tokens("a (red:1.3) [fox]", real) == count_tokens("a red fox", real) == (3, 75)
    assert count_tokens("a fox <lora:add_detail:0.7> <lyco:x:1:0.5>", real) == (2, 75)
    assert count_tokens("a fox <lora:x:not-a-number>", real) == (2, 75)  # no error while typing
    assert count_tokens("(red:1.3)", real, "None") == (7, 75)  # the brackets are text: ( red : 1 . 3 )


def test_comma_moves_the_tail_to_the_next_chunk(real):
    # 70 words, a comma, 10 words: the chunk fills at the 4th word after the comma, so those 4 move on
    # and the first chunk counts as 75: 75 + 10, not 81.
    assert count_tokens("cat " * 70 + ", " + "dog " * 10, real) == (85, 150)
    assert count_tokens("cat " * 81, real) == (81, 150)
    # a comma more than 20 tokens back does not move anything
    assert count_tokens("cat " * 50 + ", " + "dog " * 30, real) == (81, 150)


def test_prompt_editing_counts_the_longest_text(real):
    long = "a very detailed oil painting of "
    assert count_tokens(f"[{long}:cat:0.5] in a garden", real) == (9, 75)
    assert count_tokens("[cat:dog:0.5] in a garden", real) == (4, 75)
    assert count_tokens("[a|b c d] fox", real) == (4, 75)
    assert count_tokens(f"[{'cat ' * 80}:dog:5]", real, steps=20) == (80, 150)
    assert count_tokens(f"[dog:{'cat ' * 80}:25]", real, steps=20) == (1, 75)  # the swap comes after the last step


def test_break_starts_a_new_chunk(real):
    assert count_tokens("a red fox BREAK a blue sky", real) == (78, 150)
    assert count_tokens("fox BREAK BREAK sky", real) == (151, 225)
    assert count_tokens("breakfast, break, Break", real)[0] == 5  # only the word BREAK in capitals


def test_a_long_prompt_counts_past_four_chunks(real):
    """(How fast: python -m tests.bench tokens.)"""
    text = "masterpiece, best quality, a (detailed:1.2) landscape with mountains and a river at sunset, " * 18
    assert count_tokens(text, real)[0] >= 300


def test_the_vocabulary_is_read_once_per_folder(folders, tmp_path):
    assert clip_tokenizer.load(folders["real"]) is clip_tokenizer.load(folders["real"])
    copy = shutil.copytree(folders["tiny"], tmp_path / "tokenizer")
    first = clip_tokenizer.load(copy)
    assert clip_tokenizer.load(copy) is first
    (copy / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")  # changed on disk: read again
    assert clip_tokenizer.load(copy) is not first


# -- which tokenizer counts for the chosen model -------------------------------------------


def test_the_demo_counts_with_the_tiny_tokenizer_once_built(folders):
    assert tokenizer_files.tokenizer_folder("demo") == tokenizer_files.bundled_folder()
    demo_tokenizer = paths.demo_model_dir() / tokenizer_files.DEMO_TOKENIZER
    shutil.copytree(folders["tiny"], demo_tokenizer)
    assert tokenizer_files.tokenizer_folder("demo") == demo_tokenizer
    assert count_tokens("an emerald cathedral", tokenizer_files.tokenizer_for("demo")) == (11, 75)
    assert count_tokens("an emerald cathedral", tokenizer_files.tokenizer_for("/nowhere/model.safetensors")) == (3, 75)


def test_the_demo_layout_is_the_one_tiny_builds(tmp_path):
    from desktop.engine import tiny

    assert tiny.paths(tmp_path, "sd1").folder / "tokenizer" == tmp_path / tokenizer_files.DEMO_TOKENIZER


def test_folders_files_and_sidecars(tiny_models, tmp_path):
    sd1 = tiny_models["sd1"]
    assert tokenizer_files.tokenizer_folder(str(sd1.folder)) == sd1.folder / "tokenizer"
    assert tokenizer_files.tokenizer_folder(str(sd1.checkpoint)) == sd1.config / "tokenizer"
    refiner = tmp_path / "refiner"
    shutil.copytree(sd1.folder / "tokenizer", refiner / "tokenizer_2")
    assert tokenizer_files.tokenizer_folder(str(refiner)) == refiner / "tokenizer_2"
    lone = tmp_path / "lone.safetensors"
    shutil.copyfile(sd1.checkpoint, lone)
    for model in (str(lone), "someone/some-model", str(tmp_path / "missing.safetensors")):
        assert tokenizer_files.tokenizer_folder(model) == tokenizer_files.bundled_folder()


def test_an_unreadable_tokenizer_gives_way_to_the_bundled_one(tiny_models, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_models["sd1"].folder / "tokenizer", model / "tokenizer")
    (model / "tokenizer" / "vocab.json").write_text("{not json", encoding="utf-8")
    assert tokenizer_files.tokenizer_for(str(model)) is clip_tokenizer.load(tokenizer_files.bundled_folder())
