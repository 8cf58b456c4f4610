"""The prompt panel's token counter: counting a long prompt with the pure-Python tokenizer, against
transformers' CLIPTokenizer tokenizing the same text (the counter runs on the GUI thread as you type)."""

from __future__ import annotations

from desktop.core import clip_tokenizer
from desktop.core.clip_tokenizer import count_tokens
from desktop.engine.bundled_configs import assemble_config
from tests.bench.common import Figure, best_of

PROMPT = "masterpiece, best quality, a (detailed:1.2) landscape with mountains and a river at sunset, " * 18


def run() -> list[Figure]:
    from transformers import CLIPTokenizer

    import tempfile
    from pathlib import Path

    folder = assemble_config("sd1", Path(tempfile.mkdtemp()) / "sd1") / "tokenizer"
    ours = clip_tokenizer.load(folder)
    theirs = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    count_tokens(PROMPT, ours)
    counted = best_of(lambda: count_tokens(PROMPT, ours), repeat=20)
    tokenized = best_of(lambda: theirs(PROMPT, add_special_tokens=False, truncation=False), repeat=20)
    return [Figure(f"count a {count_tokens(PROMPT, ours)[0]}-token prompt", counted * 1000, "ms",
                   "transformers CLIPTokenizer on the same text", tokenized * 1000)]
