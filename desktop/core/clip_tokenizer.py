"""CLIP's BPE tokenizer in pure Python, for counting prompt tokens without torch or transformers.

It reads a tokenizer folder (vocab.json, merges.txt, tokenizer_config.json /
special_tokens_map.json) and gives the ids transformers' CLIPTokenizer gives
(``tokenizer(text, add_special_tokens=False).input_ids``) for any text, as its
tokenizers pipeline does:

1. the special tokens (``<|startoftext|>``, ``<|endoftext|>``, the pad token,
   any added token) are cut out of the raw text first and become their ids;
2. each stretch between them: NFC, every run of whitespace -> one space,
   lower case character by character (so a final sigma stays "σ");
3. CLIP's split pattern picks the words, digits one by one and runs of other
   characters; whitespace goes (a special token's text in capitals, lower-cased
   here, is cut once more into ``<|``, the word, ``|>``, as the byte-level step
   does);
4. each piece's UTF-8 bytes become GPT-2's printable characters, the last one
   marked ``</w>``, and BPE merges them by rank (cached per piece); a symbol
   not in the vocabulary becomes the unknown token.

Equal for every character Python's own Unicode tables know; characters that
only newer Unicode versions assign may be classed differently, since the
tokenizers library and the regex package each carry tables of their own.

``count_tokens`` is A1111's "12/75" counter: for each text a prompt-editing
schedule goes through (the longest counts), extra-network tags taken out, the
prompt cut into emphasis pieces and chunked exactly as the encoder does
(desktop/core/prompts.py), without BOS/EOS.

``load(folder)`` keeps one tokenizer per folder, so the vocabulary (49408
tokens for the real one) is read once.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import threading
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from desktop.core import prompts

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
END_OF_WORD = "</w>"
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
_DEFAULTS = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
_CACHE_LIMIT = 100_000
# CLIP's split pattern keeps these whole; the byte-level pre-tokenizer after it (GPT-2's pattern) cuts them.
_SPLIT_AGAIN = {BOS: ("<|", "startoftext", "|>"), EOS: ("<|", "endoftext", "|>")}
# What A1111 removes before counting; prompts.extract_extra_networks does the same but refuses a bad weight.


class TokenizerFilesError(ValueError):
    """A tokenizer folder that cannot be read; the message says which file and why."""


@lru_cache(maxsize=1)
def _patterns():
    import regex  # noqa: PLC0415 - only needed once a tokenizer is used

    whitespace = regex.compile(r"\s+")
    words = regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    )
    return whitespace, words


@lru_cache(maxsize=1)
def _byte_chars() -> tuple[str, ...]:
    """GPT-2 / CLIP's table: each byte as a printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


class ClipTokenizer:
    """The tokenizer of one folder; `encode` is safe to call from any thread."""

    def __init__(self, vocab: dict[str, int], merges: Iterable[tuple[str, str]], specials: dict[str, str],
                 added: Iterable[str] = ()):
        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.specials = {key: specials.get(key) or _DEFAULTS[key] for key in _SPECIAL_KEYS}
        self.added: dict[str, int] = {}
        for text in (*self.specials.values(), *added):
            if text and text not in self.added:
                self.added[text] = vocab.get(text, len(vocab) + len(self.added))
        self._split_added = re.compile(
            "(" + "|".join(re.escape(t) for t in sorted(self.added, key=len, reverse=True)) + ")")
        self.unk_id = self.added[self.specials["unk_token"]]
        self.bos_id = self.added[self.specials["bos_token"]]
        self.eos_id = self.added[self.specials["eos_token"]]
        self.comma_id = vocab.get("," + END_OF_WORD)
        self._cache: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> ClipTokenizer:
        folder = Path(folder)
        vocab = _read_json(folder / "vocab.json")
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise TokenizerFilesError(f"{folder / 'vocab.json'} is not a CLIP vocabulary (token -> id); "
                                      "copy the tokenizer folder from the model again.")
        merges = _read_merges(folder / "merges.txt")
        specials: dict[str, str] = {}
        added: list[str] = []
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            path = folder / name
            data = _read_json(path) if path.is_file() else {}
            if not isinstance(data, dict):
                continue
            for key in _SPECIAL_KEYS:
                if _token_text(data.get(key)):
                    specials[key] = _token_text(data.get(key))
            extra = data.get("additional_special_tokens")
            decoder = data.get("added_tokens_decoder")
            for tokens in (extra if isinstance(extra, list) else (),
                           decoder.values() if isinstance(decoder, dict) else ()):
                added += [_token_text(t) for t in tokens if _token_text(t)]
        return cls(vocab, merges, specials, added)

    def encode(self, text: str) -> list[int]:
        """The ids of `text` without BOS/EOS (transformers' ``add_special_tokens=False``)."""
        whitespace, words = _patterns()
        ids: list[int] = []
        for i, part in enumerate(self._split_added.split(text)):
            if i % 2:
                ids.append(self.added[part])
                continue
            if not part:
                continue
            part = whitespace.sub(" ", unicodedata.normalize("NFC", part))
            part = part.lower() if "Σ" not in part else "".join(c.lower() for c in part)  # no final-sigma rule
            for word in words.findall(part):
                if word in _SPLIT_AGAIN:  # a special token's text in other case: the byte-level step splits it
                    for again in _SPLIT_AGAIN[word]:
                        ids += self._word_ids(again)
                else:
                    ids += self._word_ids(word)
        return ids

    def _word_ids(self, word: str) -> tuple[int, ...]:
        cached = self._cache.get(word)
        if cached is None:
            cached = self._bpe(word)
            with self._lock:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[word] = cached
        return cached

    def _bpe(self, word: str) -> tuple[int, ...]:
        """Merge the lowest-ranked pair first, the leftmost among equals, until no pair has a rank.

        A heap over a linked list, as the tokenizers library does, so a long run of letters takes
        n log n steps instead of n squared.
        """
        table = _byte_chars()
        chars = [table[b] for b in word.encode("utf-8")]
        symbols: list[str | None] = [*chars[:-1], chars[-1] + END_OF_WORD]
        ranks = self.ranks
        after = [*range(1, len(symbols)), -1]
        before = list(range(-1, len(symbols) - 1))
        heap = [(rank, i) for i in range(len(symbols) - 1)
                if (rank := ranks.get((symbols[i], symbols[i + 1]))) is not None]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = after[i]
            if symbols[i] is None or j == -1 or ranks.get((symbols[i], symbols[j])) != rank:
                continue  # this pair changed since it was queued
            symbols[i] += symbols[j]
            symbols[j] = None
            k = after[i] = after[j]
            if k != -1:
                before[k] = i
                if (rank := ranks.get((symbols[i], symbols[k]))) is not None:
                    heapq.heappush(heap, (rank, i))
            h = before[i]
            if h != -1 and (rank := ranks.get((symbols[h], symbols[i]))) is not None:
                heapq.heappush(heap, (rank, h))
        return tuple(self.vocab.get(symbol, self.unk_id) for symbol in symbols if symbol is not None)




def _token_text(value) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerFilesError(f"{path} is missing; the tokenizer folder needs vocab.json and merges.txt.") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:  # RecursionError: nested too deep
        raise TokenizerFilesError(f"{path} cannot be read ({error}); copy the tokenizer folder "
                                  "from the model again.") from None


def _read_merges(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TokenizerFilesError(f"{path} is missing; the tokenizer folder needs vocab.json and merges.txt.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise TokenizerFilesError(f"{path} cannot be read ({error}); copy the tokenizer folder "
                                  "from the model again.") from None
    merges = []
    for number, line in enumerate(lines, 1):
        if number == 1 and line.startswith("#version"):
            continue
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise TokenizerFilesError(f"{path} line {number} is not a merge of two symbols; copy the tokenizer "
                                      "folder from the model again.")
        merges.append((parts[0], parts[1]))
    return merges


_loaded: dict[tuple, ClipTokenizer] = {}
_loaded_lock = threading.Lock()


def load(folder: str | os.PathLike) -> ClipTokenizer:
    """The tokenizer of `folder`, read once (again only when its vocab.json or merges.txt changed)."""
    folder = Path(folder).resolve()
    key = (folder, *(_stamp(folder / name) for name in ("vocab.json", "merges.txt")))
    with _loaded_lock:
        tokenizer = _loaded.get(key)
    if tokenizer is None:
        tokenizer = ClipTokenizer.from_folder(folder)
        with _loaded_lock:
            for old in [k for k in _loaded if k[0] == folder]:
                del _loaded[old]
            _loaded[key] = tokenizer
    return tokenizer


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def count_tokens(text: str, tokenizer: ClipTokenizer, emphasis: str = prompts.DEFAULT_EMPHASIS,
                 steps: int = 20) -> tuple[int, int]:
    """A1111's counter for `text`: (tokens, limit), e.g. (12, 75) or (80, 150).

    LoRA and other ``<kind:...>`` tags are not counted; emphasis brackets and weights are not either (under
    "None" they are text); BREAK fills the chunk; a full chunk gives its tail after a late comma to the
    next one. With prompt editing or alternation (``[a:b:0.5]``, ``[a|b]``) the longest of the texts the
    run's `steps` go through counts, as in A1111. Textual-inversion names count as the tokens their names
    spell (the panel does not know them).
    """
    texts = dict.fromkeys(text for _, text in prompts.prompt_schedule(text, steps))
    return max((_count_one(text, tokenizer, emphasis) for text in texts), key=lambda counted: counted[0])


def _count_one(text: str, tokenizer: ClipTokenizer, emphasis: str) -> tuple[int, int]:
    try:
        text, _ = prompts.extract_extra_networks(text)
    except ValueError:  # a tag with a bad weight: the encoder refuses it, the counter still leaves it out
        text = prompts.EXTRA_NETWORK.sub("", text)
    pieces = [([] if piece.is_break else tokenizer.encode(piece.text), piece)
              for piece in prompts.pieces_for(text, emphasis)]
    _, count = prompts.chunk(pieces, tokenizer.bos_id, tokenizer.eos_id, tokenizer.comma_id)
    return count, prompts.token_limit(count)
