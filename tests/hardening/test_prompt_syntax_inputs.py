"""Pasted prompts the prompt-editing parser must read without a traceback or a freeze.

prompts.prompt_schedule runs on the GUI thread for the token counter (desktop/ui/token_counter.py) and on
the worker for every run (desktop/engine/editing.py).
"""

from __future__ import annotations

import time

import pytest

from desktop.core import clip_tokenizer, tokenizer_files
from desktop.core.prompts import extract_extra_networks, prompt_schedule


@pytest.mark.parametrize("text", [
    "[" * 3000 + "fox" + "]" * 3000,  # emphasis brackets nested 3000 deep
    "[a:" * 1500 + "fox" + ":5]" * 1500,  # prompt editing nested 1500 deep
    "[a|" * 1500 + "fox" + "]" * 1500,  # alternation nested 1500 deep
])
def test_deeply_nested_brackets_are_read_as_written(text):
    """Deeper than any real prompt: kept as written (A1111 uses a prompt its parser cannot read as it is)."""
    assert prompt_schedule(text, 20) == [(20, text)]
    tokenizer = tokenizer_files.tokenizer_for("no-such-model")  # the bundled CLIP vocabulary
    count, limit = clip_tokenizer.count_tokens(text, tokenizer)
    assert count > 0 and limit % 75 == 0


def test_thousands_of_unclosed_brackets_are_read_quickly():
    text = "[" * 20_000 + "a fox"
    start = time.perf_counter()
    assert prompt_schedule(text, 20) == [(20, text)]
    assert time.perf_counter() - start < 5.0  # a hang guard: it takes milliseconds; a scan per bracket took 15 s


@pytest.mark.parametrize("when", ["1e400", "-1e400", "1.5e400", "99999999999999999999999"])
def test_a_huge_step_number_is_a_step_past_the_end_or_before_the_start(when):
    schedule = prompt_schedule(f"a [cat:dog:{when}]", 20)
    assert schedule in ([(20, "a cat")], [(20, "a dog")])


@pytest.mark.parametrize("tag", ["<lora:x:nan>", "<lora:x:inf>", "<lora:x:1:-inf>", "<lora:x:te=1e999>"])
def test_a_lora_weight_that_is_no_finite_number_is_refused_in_a_sentence(tag):
    """Merged, an infinite weight would give a NaN picture blamed on a damaged model."""
    with pytest.raises(ValueError, match="has a weight that is not a number: write it like <lora:x:0.8>"):
        extract_extra_networks(f"a fox {tag}")
