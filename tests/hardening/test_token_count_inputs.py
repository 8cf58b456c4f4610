"""Pasted text the token counter must count without freezing the window (it counts on the GUI thread)."""

from __future__ import annotations

import random
import time

from desktop.core import tokenizer_files
from desktop.core.clip_tokenizer import count_tokens


def test_a_long_run_of_letters_is_counted_quickly():
    """One 'word' of 30 000 letters (text without spaces): BPE with a heap, not a quadratic loop."""
    tokenizer = tokenizer_files.tokenizer_for("no-such-model")  # the bundled CLIP vocabulary
    rng = random.Random(1)
    letters = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(30_000))
    start = time.perf_counter()
    count, limit = count_tokens(letters, tokenizer)
    assert time.perf_counter() - start < 1.0
    assert count > 10_000 and limit % 75 == 0
