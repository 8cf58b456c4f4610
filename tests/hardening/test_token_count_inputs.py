"""Pasted text the token counter must count without freezing the window (it counts on the GUI thread)."""

from __future__ import annotations

import json
import random
import shutil
import time

import pytest

from desktop.core import clip_tokenizer, tokenizer_files
from desktop.core.clip_tokenizer import count_tokens


def test_a_long_run_of_letters_is_counted_quickly():
    """One 'word' of 30 000 letters (text without spaces): BPE with a heap, not a quadratic loop."""
    tokenizer = tokenizer_files.tokenizer_for("no-such-model")  # the bundled CLIP vocabulary
    rng = random.Random(1)
    letters = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(30_000))
    start = time.perf_counter()
    count, limit = count_tokens(letters, tokenizer)
    assert time.perf_counter() - start < 10.0  # a hang guard (it takes ~0.05 s); quadratic BPE took 12.5 s
    assert count > 10_000 and limit % 75 == 0


def test_odd_tokenizer_configs_are_read_or_refused_in_a_sentence(tmp_path):
    folder = tmp_path / "tokenizer"
    shutil.copytree(tokenizer_files.bundled_folder(), folder)
    config = {"additional_special_tokens": 5, "added_tokens_decoder": ["x"], "bos_token": {"content": 7}}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert count_tokens("a red fox", clip_tokenizer.load(folder)) == (3, 75)
    (folder / "merges.txt").write_text("#version: 0.2\na b c\n", encoding="utf-8")
    with pytest.raises(clip_tokenizer.TokenizerFilesError, match="line 2 is not a merge of two symbols"):
        clip_tokenizer.load(folder)


def test_a_deeply_nested_tokenizer_config_is_refused_in_a_sentence(tmp_path):
    folder = tmp_path / "tokenizer"
    shutil.copytree(tokenizer_files.bundled_folder(), folder)
    (folder / "tokenizer_config.json").write_text("[" * 100_000, encoding="utf-8")
    with pytest.raises(clip_tokenizer.TokenizerFilesError, match="tokenizer_config.json cannot be read"):
        clip_tokenizer.load(folder)
