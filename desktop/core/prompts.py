"""Prompt syntax as AUTOMATIC1111 reads it: emphasis, BREAK, LoRA tags, 75-token chunks.

Pure Python, so the engine (which tokenizes with the model's tokenizer) and the
prompt panel's token counter (desktop/core/clip_tokenizer.py) chunk a prompt
the same way.

- ``parse_emphasis``: ``(x)`` x1.1, ``[x]`` /1.1, ``(x:w)``; nesting multiplies;
  ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literal; brackets left open close at
  the end; runs of equal weight merge; ``BREAK`` (a word, in capitals) starts a
  new chunk.
- ``extract_extra_networks``: ``<lora:name:te:unet>`` (and ``<lyco:...>``) are
  taken out of the text that is encoded (replaced by nothing, so the commas
  around stay) and returned as ``ExtraNetwork`` entries.
- ``prompt_schedule``: prompt editing ``[from:to:when]`` and alternation ``[a|b]``: the text of
  each span of steps.
- ``chunk``: token ids with weights fill chunks of 75; a full chunk whose last
  comma lies within the last 20 tokens moves what follows that comma into the
  next chunk; BREAK closes the chunk; every chunk is BOS + 75 + EOS, padded with
  EOS (the encoder turns what follows the first EOS into its pad token).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

CHUNK_LENGTH = 75
COMMA_BACKTRACK = 20
ROUND = 1.1
SQUARE = 1 / 1.1

EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")
DEFAULT_EMPHASIS = "Original"

_ATTENTION = re.compile(
    r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|   # escapes, and a lone backslash
\(|\[|                        # openers
:\s*([+-]?[.\d]+)\s*\)|       # the weight that closes (x:w)
\)|]|                         # closers
[^\\()\[\]:]+|                # text
:                             # a colon that is text
""",
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")  # a <kind:name:...> tag: kind, then what follows the colon
LORA_KINDS = ("lora", "lyco")


@dataclass(frozen=True)
class Piece:
    """A run of prompt text with one weight; `is_break` marks a BREAK."""

    text: str
    weight: float = 1.0
    is_break: bool = False


BREAK = Piece("BREAK", 1.0, True)


def parse_emphasis(text: str) -> list[Piece]:
    """The prompt as runs of text with their emphasis weight (A1111's parse_prompt_attention)."""
    runs: list[list] = []  # [text, weight] or the BREAK piece
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for run in runs[start:]:
            if isinstance(run, list):
                run[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            runs.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(runs))
        elif token == "[":
            square_open.append(len(runs))
        elif weight is not None and round_open:
            multiply(round_open.pop(), _float(weight))
        elif token == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif token == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(token)):
                if i:
                    runs.append(BREAK)
                runs.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)

    pieces: list[Piece] = []
    for run in runs or [["", 1.0]]:
        if run is BREAK:
            pieces.append(BREAK)
        elif pieces and not pieces[-1].is_break and pieces[-1].weight == run[1]:
            pieces[-1] = Piece(pieces[-1].text + run[0], run[1])
        else:
            pieces.append(Piece(run[0], run[1]))
    return pieces


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "1.2.3" fits the number pattern: A1111 stops with an error, here it counts as no weight
        return 1.0


def pieces_for(text: str, emphasis: str = DEFAULT_EMPHASIS) -> list[Piece]:
    """The pieces the encoder uses under an emphasis mode: "None" reads brackets as plain text."""
    if emphasis == "None":
        return [Piece(text, 1.0)]
    pieces = parse_emphasis(text)
    if emphasis == "Ignore":
        return [piece if piece.is_break else Piece(piece.text, 1.0) for piece in pieces]
    return pieces


# -- LoRA and other extra networks -----------------------------------------------


@dataclass(frozen=True)
class ExtraNetwork:
    """One ``<kind:name:...>`` tag: A1111's positional te and unet multipliers (unet defaults to te)."""

    kind: str  # "lora", "lyco", "hypernet", ...
    name: str
    text_weight: float = 1.0
    unet_weight: float = 1.0
    tag: str = field(default="", compare=False)


def extract_extra_networks(text: str) -> tuple[str, list[ExtraNetwork]]:
    """The prompt without its ``<kind:...>`` tags, and the tags in order.

    ``<lora:name>``, ``<lora:name:w>``, ``<lora:name:te:unet>``, named ``te=`` ``unet=``; a weight that is not
    a number raises ValueError with a sentence naming the tag.
    """
    found: list[ExtraNetwork] = []

    def take(match: re.Match) -> str:
        kind, items = match.group(1).lower(), match.group(2).split(":")
        positional = [item for item in items if "=" not in item]
        named = dict(item.split("=", 1) for item in items if "=" in item)
        name = positional[0].strip() if positional else ""
        try:
            text_weight = float(positional[1]) if len(positional) > 1 else 1.0
            text_weight = float(named.get("te", text_weight))
            unet_weight = float(positional[2]) if len(positional) > 2 else text_weight
            unet_weight = float(named.get("unet", unet_weight))
            if not math.isfinite(text_weight) or not math.isfinite(unet_weight):  # nan, inf: a NaN picture
                raise ValueError
        except ValueError:
            raise ValueError(f"{match.group(0)} has a weight that is not a number: write it like "
                             f"<{kind}:{name or 'name'}:0.8>.") from None
        found.append(ExtraNetwork(kind, name, text_weight, unet_weight, match.group(0)))
        return ""

    return EXTRA_NETWORK.sub(take, text), found


# -- chunks -------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingAt:
    """A textual-inversion embedding whose vectors replace the placeholder tokens from `offset` (BOS is 0)."""

    offset: int
    name: str


@dataclass(frozen=True)
class Chunk:
    tokens: tuple[int, ...]  # BOS + 75 + EOS
    weights: tuple[float, ...]
    embeddings: tuple[EmbeddingAt, ...] = ()


# (token ids of a piece, position) -> (embedding name, its vector count, how many ids its name takes) or None
EmbeddingFinder = Callable[[Sequence[int], int], "tuple[str, int, int] | None"]


@dataclass
class _Building:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    embeddings: list[EmbeddingAt] = field(default_factory=list)


def chunk(
    pieces: Sequence[tuple[Sequence[int], Piece]],
    bos: int,
    eos: int,
    comma: int | None,
    find_embedding: EmbeddingFinder | None = None,
) -> tuple[list[Chunk], int]:
    """Chunks of the tokenized pieces (each piece's ids without BOS/EOS), and A1111's token count.

    The token count is what A1111's counter shows: 75 for each full chunk and what the last one holds.
    """
    chunks: list[Chunk] = []
    building = _Building()
    count = 0
    last_comma = -1

    def close(last: bool = False) -> None:
        nonlocal building, count, last_comma
        count += len(building.tokens) if last else CHUNK_LENGTH
        pad = CHUNK_LENGTH - len(building.tokens)
        tokens = [bos, *building.tokens, *[eos] * pad, eos]
        weights = [1.0, *building.weights, *[1.0] * pad, 1.0]
        shifted = tuple(EmbeddingAt(e.offset + 1, e.name) for e in building.embeddings)
        chunks.append(Chunk(tuple(tokens), tuple(weights), shifted))
        building, last_comma = _Building(), -1

    for ids, piece in pieces:
        if piece.is_break:
            close()
            continue
        position = 0
        while position < len(ids):
            token = ids[position]
            if token == comma:
                last_comma = len(building.tokens)
            elif (len(building.tokens) == CHUNK_LENGTH and last_comma != -1
                  and len(building.tokens) - last_comma <= COMMA_BACKTRACK):
                cut = last_comma + 1
                moved = _Building(building.tokens[cut:], building.weights[cut:],
                                  [EmbeddingAt(e.offset - cut, e.name) for e in building.embeddings if e.offset >= cut])
                building = _Building(building.tokens[:cut], building.weights[:cut],
                                     [e for e in building.embeddings if e.offset < cut])
                close()
                building = moved
            if len(building.tokens) == CHUNK_LENGTH:
                close()
            found = find_embedding(ids, position) if find_embedding else None
            if found is None:
                building.tokens.append(token)
                building.weights.append(piece.weight)
                position += 1
                continue
            name, vectors, length = found
            vectors = min(vectors, CHUNK_LENGTH)
            if len(building.tokens) + vectors > CHUNK_LENGTH:
                close()
            building.embeddings.append(EmbeddingAt(len(building.tokens), name))
            building.tokens += [0] * vectors
            building.weights += [piece.weight] * vectors
            position += length
    if building.tokens or not chunks:
        close(last=True)
    return chunks, count


def token_limit(count: int) -> int:
    """The "/75", "/150" ... A1111's counter shows beside `count`."""
    return math.ceil(max(count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH


def embedding_finder(names: dict[str, tuple[Sequence[int], int]]) -> EmbeddingFinder:
    """A finder over embeddings given as name -> (the ids its name tokenizes to, its vector count);
    where two names start alike the longer wins, as in A1111."""
    by_first: dict[int, list[tuple[tuple[int, ...], str, int]]] = {}
    for name, (ids, vectors) in names.items():
        if ids:
            by_first.setdefault(ids[0], []).append((tuple(ids), name, vectors))
    for entries in by_first.values():
        entries.sort(key=lambda entry: -len(entry[0]))

    def find(ids: Sequence[int], position: int):
        for name_ids, name, vectors in by_first.get(ids[position], ()):
            if tuple(ids[position:position + len(name_ids)]) == name_ids:
                return name, vectors, len(name_ids)
        return None

    return find


# -- prompt editing [from:to:when] and alternation [a|b] ------------------------------

MAX_NESTING = 100  # "[" brackets within each other that prompt editing reads; real prompts use a few
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


@dataclass(frozen=True)
class _Scheduled:
    before: tuple | None  # None: "[to:when]", nothing before
    after: tuple
    number: str  # as written: with a "." a fraction of the steps, else a step


@dataclass(frozen=True)
class _Alternate:
    options: tuple


def prompt_schedule(text: str, steps: int, after: int | None = None) -> list[tuple[int, str]]:
    """The prompt's text for each span of steps, as A1111's prompt editing makes it: [(last step, text), ...].

    ``[to:when]`` adds `to` after step `when`, ``[from::when]`` removes `from`, ``[from:to:when]`` swaps;
    `when` with a decimal point is a fraction of the steps (0.5: halfway). ``[a|b|c]`` alternates every step.
    They nest; whatever is not one of them (emphasis brackets, unbalanced ones) is kept as written. Steps
    count from 1; step i of a run (from 0) uses the first entry whose last step is >= i, as in A1111.
    `after`: the steps of a first pass this one follows (the hires fix's second pass): as in A1111, `when`
    counts on from it (12 after a 10-step pass is step 2 here, 1.5 is halfway here; an edit within the
    first pass has happened before this one starts).
    """
    if "[" not in text:
        return [(steps, text)]
    if _nesting(text) > MAX_NESTING:  # deeper than any real prompt: as written, as A1111 uses one it cannot parse
        return [(steps, text)]
    nodes = _parse_editing(text)
    ends = {steps}
    _collect_steps(nodes, steps, ends, after)
    return [(end, _text_at(nodes, end, steps, after)) for end in sorted(ends)]


def _when(number: str, steps: int, after: int | None = None) -> int:
    value = max(-1e9, min(float(number), 1e9))  # "1e400" is inf: a step past any run, not an OverflowError
    if after is not None:  # A1111's hires pass: counted on from the first pass
        return min(steps, int((value - 1) * steps if "." in number else value - after))
    return min(steps, int(value * steps if "." in number else value))


def _collect_steps(nodes, steps: int, ends: set[int], after: int | None = None) -> None:
    for node in nodes:
        if isinstance(node, _Scheduled):
            when = _when(node.number, steps, after)
            if when >= 1:
                ends.add(when)
            _collect_steps(node.before or (), steps, ends, after)
            _collect_steps(node.after, steps, ends, after)
        elif isinstance(node, _Alternate):
            ends.update(range(1, steps + 1))
            for option in node.options:
                _collect_steps(option, steps, ends, after)


def _text_at(nodes, step: int, steps: int, after: int | None = None) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            chosen = (node.before or ()) if step <= _when(node.number, steps, after) else node.after
            out.append(_text_at(chosen, step, steps, after))
        else:
            out.append(_text_at(node.options[(step - 1) % len(node.options)], step, steps, after))
    return "".join(out)


def _parse_editing(text: str) -> tuple:
    nodes: list = []
    plain: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            plain.append(text[i:i + 2])
            i += 2
            continue
        end = _closing(text, i) if char == "[" else None
        if end is None:
            plain.append(char)
            i += 1
            continue
        inner = text[i + 1:end]
        node = _editing_node(inner)
        if node is None:  # an emphasis bracket: kept, with what it holds parsed
            plain.append("[")
            nodes.append("".join(plain))
            plain = []
            nodes.extend(_parse_editing(inner))
            plain.append("]")
        else:
            nodes.append("".join(plain))
            plain = []
            nodes.append(node)
        i = end + 1
    nodes.append("".join(plain))
    return tuple(n for n in nodes if n != "")


def _editing_node(inner: str):
    parts = _split_top(inner, ":")
    if len(parts) in (2, 3) and _NUMBER.fullmatch(parts[-1]):
        before = _parse_editing(parts[0]) if len(parts) == 3 else None
        return _Scheduled(before, _parse_editing(parts[-2]), parts[-1].strip())
    options = _split_top(inner, "|")
    if len(options) > 1 and len(parts) == 1:
        return _Alternate(tuple(_parse_editing(option) for option in options))
    return None


def _unescaped(text: str, start: int = 0):
    """(index, character) of each character of `text` from `start` that a backslash does not escape."""
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        yield i, text[i]
        i += 1


def _nesting(text: str) -> int:
    """How deep the "[" brackets of `text` go (unclosed ones count to the end)."""
    depth = deepest = 0
    for _, char in _unescaped(text):
        if char == "[":
            depth += 1
            deepest = max(deepest, depth)
        elif char == "]":
            depth = max(0, depth - 1)
    return deepest


def _closing(text: str, start: int) -> int | None:
    """The index of the "]" that closes the "[" at `start`, or None."""
    depth = 0
    for i, char in _unescaped(text, start):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return i
    return None


def _split_top(text: str, separator: str) -> list[str]:
    """`text` split at `separator` outside any brackets (and not escaped)."""
    parts, depth, start = [], 0, 0
    for i, char in _unescaped(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts
