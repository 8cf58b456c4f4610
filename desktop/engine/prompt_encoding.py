"""The prompt encoding AUTOMATIC1111 defines, for SD 1.x, 2.x and SDXL text encoders.

For each text encoder of the model, each prompt is cut into pieces with their
emphasis weight (desktop/core/prompts.py), tokenized piece by piece, and
chunked into BOS + 75 + EOS token chunks. Every chunk is encoded on its own:

- what follows the chunk's first EOS becomes the tokenizer's pad token;
- a textual-inversion embedding's vectors replace its placeholder tokens at
  the encoder's token-embedding layer;
- the hidden state used: SD 1.x the last layer's output, or with clip skip N
  the output N layers from the end through the final layer norm; SD 2.x the
  last (the converted encoder already ends one layer early); SDXL the second
  to last of both encoders, without the norm, as in A1111 (which ignores clip
  skip for SD 2.x and SDXL);
- emphasis "Original" multiplies each token's vector by its weight and then
  scales the chunk back to its mean before weighting; "No norm" only
  multiplies; "Ignore" and "None" have all weights 1.

The chunks' encodings are concatenated along the tokens; SDXL's two encoders
along the features, with the pooled output of the first chunk of the second.
When the prompt and negative prompt differ in chunk count, the shorter gets
encodings of the empty prompt appended (A1111's "Pad conds"). An empty
negative prompt on an SDXL model that asks for it is zeros, as in A1111.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from desktop.core import prompts
from desktop.core.errors import SfumatoError
from desktop.core.prompts import Chunk


@dataclass(frozen=True)
class Encoder:
    """One text encoder of a pipeline and how its hidden state is read."""

    tokenizer: object
    model: torch.nn.Module
    key: str  # "clip_l" | "clip_g": which vectors of an SDXL embedding it takes
    layer: int  # which hidden state: -1 the last layer's output
    norm: bool  # pass it through the final layer norm (only where it is not the last layer's output)
    pooled: bool = False  # keep the pooled output (SDXL's second encoder)


@dataclass
class Encoded:
    """Pipeline arguments, and what the infotext says about them."""

    kwargs: dict
    params: dict = field(default_factory=dict)
    embeddings_used: list[str] = field(default_factory=list)


@dataclass
class _Text:
    hidden: list[torch.Tensor]  # one [1, tokens, features] per encoder
    pooled: torch.Tensor | None
    chunks: int
    used: list[str] = field(default_factory=list)  # the embeddings it names


def encoders(pipe, family: str, clip_skip: int) -> list[Encoder]:
    if family == "sdxl":
        return [Encoder(pipe.tokenizer, pipe.text_encoder, "clip_l", -2, False),
                Encoder(pipe.tokenizer_2, pipe.text_encoder_2, "clip_g", -2, False, pooled=True)]
    if family == "sd1" and clip_skip > 1:
        depth = pipe.text_encoder.config.num_hidden_layers
        if clip_skip > depth:
            raise SfumatoError(f"Clip skip {clip_skip} is more than this model's text encoder has layers "
                               f"({depth}): use 1 to {depth}.")
        return [Encoder(pipe.tokenizer, pipe.text_encoder, "clip_l", -clip_skip, True)]
    return [Encoder(pipe.tokenizer, pipe.text_encoder, "clip_l", -1, False)]


def encode_spans(pipe, family: str, spans: Sequence, guided: bool, device: torch.device,
                 embeddings: Mapping[str, dict[str, torch.Tensor]] | None = None) -> list[Encoded]:
    """The encodings of the spans of a prompt with editing (editing.spans: one conditioning per span of steps).

    As A1111 does, the prompt's texts are encoded as one batch, and the negative prompt's as another: the
    texts of a batch have the same chunk count (shorter ones get empty chunks) and "Original" emphasis keeps
    the mean of each chunk position over the batch; an SDXL negative is zeros when all its texts are empty.
    A span whose prompt and negative prompt differ in length gets empty-prompt chunks ("Pad conds").
    """
    first = spans[0]
    specs = encoders(pipe, family, first.clip_skip)
    emphasis = getattr(first, "emphasis", prompts.DEFAULT_EMPHASIS)
    embeddings = embeddings or {}
    texts = list(dict.fromkeys(_without_tags(span.prompt) for span in spans))
    positives = dict(zip(texts, _encode_texts(specs, texts, emphasis, embeddings, device), strict=True))
    negatives: dict = {}
    if guided:  # as in A1111, the negative prompt's <lora:...> tags are words: no LoRA comes from it
        texts = list(dict.fromkeys(span.negative_prompt for span in spans))
        negatives = dict(zip(texts, _encode_texts(specs, texts, emphasis, embeddings, device), strict=True))
        if family == "sdxl" and not any(texts) and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
            negatives = {text: _Text([torch.zeros_like(h) for h in t.hidden], torch.zeros_like(t.pooled), t.chunks)
                         for text, t in negatives.items()}
    empty: list = []
    out = []
    for span in spans:
        positive = positives[_without_tags(span.prompt)]
        negative = negatives.get(span.negative_prompt)
        params = {}
        if negative is not None and positive.chunks != negative.chunks:
            empty = empty or _encode_texts(specs, [""], emphasis, {}, device)
            positive, negative = _padded(positive, empty[0], negative.chunks), _padded(negative, empty[0], positive.chunks)
            params["Pad conds"] = "True"
        kwargs = {"prompt_embeds": _joined(positive)}
        if negative is not None:
            kwargs["negative_prompt_embeds"] = _joined(negative)
        if family == "sdxl":
            kwargs["pooled_prompt_embeds"] = positive.pooled
            if negative is not None:
                kwargs["negative_pooled_prompt_embeds"] = negative.pooled
        used = positive.used + (negative.used if negative is not None else [])
        out.append(Encoded(kwargs, params, list(dict.fromkeys(used))))
    return out


def _without_tags(text: str) -> str:
    try:
        return prompts.extract_extra_networks(text)[0]
    except ValueError as error:
        raise SfumatoError(str(error)) from None


def _joined(text: _Text) -> torch.Tensor:
    return torch.cat(text.hidden, dim=-1) if len(text.hidden) > 1 else text.hidden[0]


def _padded(text: _Text, empty: _Text, chunks: int) -> _Text:
    if text.chunks >= chunks:
        return text
    extra = chunks - text.chunks
    hidden = [torch.cat([h, e.repeat(1, extra, 1)], dim=1) for h, e in zip(text.hidden, empty.hidden, strict=True)]
    return _Text(hidden, text.pooled, chunks, text.used)


def _encode_texts(specs: list[Encoder], texts: list[str], emphasis: str, embeddings, device) -> list[_Text]:
    """The texts encoded as one batch (A1111's get_learned_conditioning of a prompt's schedule)."""
    pieces = [prompts.pieces_for(text, emphasis) for text in texts]
    hidden: list[list[torch.Tensor]] = [[] for _ in texts]  # per text: one tensor per encoder
    pooled: list = [None] * len(texts)
    used: list[list[str]] = [[] for _ in texts]
    counts = []
    for spec in specs:
        chunked = [chunk_text(spec, p, embeddings) for p in pieces]
        counts.append(max(len(chunks) for chunks in chunked))
        empty = chunk_text(spec, prompts.pieces_for(""), {})[0]
        per_text: list[list[torch.Tensor]] = [[] for _ in texts]
        for position in range(counts[-1]):
            batch = [chunks[position] if position < len(chunks) else empty for chunks in chunked]
            outputs = [_encode_chunk(spec, c, embeddings, device) for c in batch]
            for i, z in enumerate(_emphasised([z for z, _ in outputs], [c.weights for c in batch], emphasis)):
                per_text[i].append(z)
                if spec.pooled and position == 0:
                    pooled[i] = outputs[i][1]
        for i, chunks in enumerate(chunked):
            hidden[i].append(torch.cat(per_text[i], dim=1))
            used[i].extend(at.name for c in chunks for at in c.embeddings)
    most = max(counts)
    return [_Text([_pad_each(h, n, most, spec, device) for h, n, spec in zip(hidden[i], counts, specs, strict=True)],
                  pooled[i], most, used[i]) for i in range(len(texts))]


def _emphasised(zs: list[torch.Tensor], weights: list[tuple[float, ...]], emphasis: str) -> list[torch.Tensor]:
    """Each token's vector times its weight; "Original" then scales the batch back to its mean before."""
    if emphasis not in ("Original", "No norm") or all(w == 1.0 for ws in weights for w in ws):
        return zs
    original = torch.cat(zs).float()
    multipliers = torch.tensor(weights, device=original.device, dtype=torch.float32).unsqueeze(-1)
    weighted = original * multipliers
    if emphasis == "Original":
        weighted = weighted * (original.mean() / weighted.mean())
    return [z.to(zs[0].dtype) for z in weighted.split(1)]


def _pad_each(hidden, chunks, most, spec, device):
    if chunks == most:
        return hidden
    empty, _ = _encode_chunk(spec, chunk_text(spec, prompts.pieces_for(""), {})[0], {}, device)
    return torch.cat([hidden, empty.repeat(1, most - chunks, 1)], dim=1)


def chunk_text(spec: Encoder, pieces: list[prompts.Piece], embeddings) -> list[Chunk]:
    tokenizer = spec.tokenizer
    texts = [piece.text for piece in pieces if not piece.is_break]
    ids = iter(tokenizer(texts, add_special_tokens=False, truncation=False).input_ids if texts else [])
    tokenized = [([], piece) if piece.is_break else (next(ids), piece) for piece in pieces]
    finder = None
    if embeddings:
        names = {}
        for name, vectors in embeddings.items():
            if spec.key in vectors:
                names[name] = (tokenizer(name, add_special_tokens=False).input_ids, int(vectors[spec.key].shape[0]))
        finder = prompts.embedding_finder(names)
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    chunks, _ = prompts.chunk(tokenized, tokenizer.bos_token_id, tokenizer.eos_token_id,
                              comma if comma != tokenizer.unk_token_id else None, finder)
    return chunks


def _encode_chunk(spec: Encoder, chunk: Chunk, embeddings, device):
    """The chunk's hidden state as the model reads it (before emphasis), and its pooled output."""
    tokenizer, model = spec.tokenizer, spec.model
    tokens = list(chunk.tokens)
    end = tokens.index(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens[end + 1:] = [pad] * (len(tokens) - end - 1)
    ids = torch.tensor([tokens], device=device)
    with _embeddings_at(model, chunk, embeddings, spec.key):
        output = model(ids, output_hidden_states=True)
    if spec.layer == -1:
        z = output.last_hidden_state
    else:
        z = output.hidden_states[spec.layer]
        if spec.norm:
            z = getattr(model, "text_model", model).final_layer_norm(z)
    pooled = output.text_embeds if spec.pooled else None
    return z, pooled


@contextmanager
def _embeddings_at(model, chunk: Chunk, embeddings, key: str):
    """Put the embeddings' vectors in place of their placeholder tokens while `model` encodes `chunk`."""
    if not chunk.embeddings:
        yield
        return

    def replace(module, args, output):
        output = output.clone()
        for at in chunk.embeddings:
            vectors = embeddings[at.name][key].to(device=output.device, dtype=output.dtype)
            count = min(vectors.shape[0], output.shape[1] - at.offset - 1)
            output[0, at.offset:at.offset + count] = vectors[:count]
        return output

    handle = model.get_input_embeddings().register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()
