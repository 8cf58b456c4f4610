"""Prompts and wildcard files that must give a sentence or a prompt, never a traceback, a freeze or a file outside
the wildcards folders."""

from __future__ import annotations

import time

import pytest

from desktop.core import paths
from desktop.core.wildcards import WildcardError, expand


@pytest.mark.parametrize("text, says", [
    ("{" * 5000 + "fox" + "}" * 5000, "variants nest more than 20 deep"),  # braces nested 5000 deep
    ("{" * 200_000, "no } to close it"),
    ("}" + "{a|b}" * 10_000, "no { opens"),
])
def test_hostile_braces_are_a_sentence_at_once(text, says):
    started = time.perf_counter()
    with pytest.raises(WildcardError, match=says) as caught:
        expand(text, 1, [])
    assert time.perf_counter() - started < 2 and len(str(caught.value)) < 300


def test_a_long_prompt_of_variants_is_expanded_quickly():
    started = time.perf_counter()
    assert len(expand("{a|b|c} " * 40_000, 1, [])) == 80_000
    assert time.perf_counter() - started < 3


def test_a_wildcard_name_cannot_reach_outside_the_folders(tmp_path):
    folder = paths.wildcards_dir()
    (folder / "x").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("the secret\n", encoding="utf-8")
    for name in ("x/../../secret", "x/../../../secret", "a//secret", "x/./../../secret"):
        with pytest.raises(WildcardError, match="There is no wildcard file"):
            expand(f"__{name}__", 1, [folder])
    for text in ("__../secret__", "__./secret__"):  # not wildcards: kept as written
        assert expand(text, 1, [folder]) == text


def test_a_file_that_is_not_text_or_not_a_file_is_a_sentence_or_a_choice():
    folder = paths.wildcards_dir()
    (folder / "folder.txt").mkdir(parents=True)
    (folder / "binary.txt").write_bytes(b"\xff\xfe\x00caf\xe9\n\x89PNG\r\n")
    with pytest.raises(WildcardError, match="There is no wildcard file for __folder__"):
        expand("__folder__", 1, [folder])
    assert {expand("__binary__", seed, [folder]) for seed in range(20)} == {"\ufffd\ufffd\x00caf\ufffd", "\ufffdPNG"}


def test_a_wildcard_that_uses_itself_is_a_sentence_naming_it():
    folder = paths.wildcards_dir()
    folder.mkdir(parents=True)
    (folder / "loop.txt").write_text("__again__\n", encoding="utf-8")
    (folder / "again.txt").write_text("more __loop__\n", encoding="utf-8")
    with pytest.raises(WildcardError, match="through __loop__ → __again__ → __loop__ → __again__ → …"):
        expand("__loop__", 1, [folder])
