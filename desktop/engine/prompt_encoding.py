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

from collections.abc import Mapping
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


def encode(pipe, family: str, conditioning, guided: bool, device: torch.device,
           embeddings: Mapping[str, dict[str, torch.Tensor]] | None = None) -> Encoded:
    """The prompt (and negative prompt when `guided`) as prompt_embeds & co for `pipe`.

    `conditioning`: prompt, negative_prompt, clip_skip, emphasis. `embeddings`: name -> {"clip_l": [n, d], ...}
    for every textual-inversion embedding this model can use; those named in a prompt are used.
    """
    specs = encoders(pipe, family, conditioning.clip_skip)
    emphasis = getattr(conditioning, "emphasis", prompts.DEFAULT_EMPHASIS)
    embeddings = embeddings or {}
    used: list[str] = []
    positive = _encode_text(specs, _without_tags(conditioning.prompt), emphasis, embeddings, device, used)
    kwargs: dict = {}
    params: dict = {}
    negative = None
    if guided:
        text = conditioning.negative_prompt  # as in A1111, its <lora:...> tags are words: no LoRA comes from it
        zeros = family == "sdxl" and not text and getattr(pipe.config, "force_zeros_for_empty_prompt", False)
        negative = _encode_text(specs, text, emphasis, embeddings, device, used)
        if zeros:
            negative = _Text([torch.zeros_like(h) for h in negative.hidden], torch.zeros_like(negative.pooled), 1)
        if positive.chunks != negative.chunks:
            empty = _encode_text(specs, "", emphasis, {}, device, [])
            positive, negative = _padded(positive, empty, negative.chunks), _padded(negative, empty, positive.chunks)
            params["Pad conds"] = "True"
    kwargs["prompt_embeds"] = _joined(positive)
    if negative is not None:
        kwargs["negative_prompt_embeds"] = _joined(negative)
    if family == "sdxl":
        kwargs["pooled_prompt_embeds"] = positive.pooled
        if negative is not None:
            kwargs["negative_pooled_prompt_embeds"] = negative.pooled
    return Encoded(kwargs, params, list(dict.fromkeys(used)))


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
    return _Text(hidden, text.pooled, chunks)


def _encode_text(specs: list[Encoder], text: str, emphasis: str, embeddings, device, used: list[str]) -> _Text:
    pieces = prompts.pieces_for(text, emphasis)
    hidden, pooled, counts = [], None, []
    for spec in specs:
        chunks = chunk_text(spec, pieces, embeddings)
        outputs = [_encode_chunk(spec, c, embeddings, device, emphasis) for c in chunks]
        hidden.append(torch.cat([z for z, _ in outputs], dim=1))
        if spec.pooled:
            pooled = outputs[0][1]
        counts.append(len(chunks))
        used.extend(at.name for c in chunks for at in c.embeddings)
    if len(set(counts)) > 1:  # the encoders' tokenizers split the text differently: line them up
        most = max(counts)
        return _Text([_pad_each(h, n, most, specs[i], device) for i, (h, n) in enumerate(zip(hidden, counts))],
                     pooled, most)
    return _Text(hidden, pooled, counts[0])


def _pad_each(hidden, chunks, most, spec, device):
    if chunks == most:
        return hidden
    empty, _ = _encode_chunk(spec, chunk_text(spec, prompts.pieces_for(""), {})[0], {}, device, "Original")
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


def _encode_chunk(spec: Encoder, chunk: Chunk, embeddings, device, emphasis: str):
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
    if emphasis in ("Original", "No norm"):
        weights = torch.tensor(chunk.weights, device=z.device, dtype=torch.float32).reshape(1, -1, 1)
        if not bool((weights == 1.0).all()):
            original = z.float()
            weighted = original * weights
            if emphasis == "Original":
                weighted = weighted * (original.mean() / weighted.mean())
            z = weighted.to(z.dtype)
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
