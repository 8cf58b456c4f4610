"""Pictures from A1111-syntax prompts equal bare diffusers fed the conditioning A1111 defines.

The reference conditioning here is written out plainly per prompt (token ids by hand, one chunk of
BOS + 75 + EOS at a time, weights, the mean put back), independent of desktop/engine/prompt_encoding.py;
the parser and the chunker have their own table tests (tests/core/test_prompts.py).
"""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from desktop.core.progress import TaskState
from desktop.engine import devices, generate
from desktop.engine.models import ModelManager
from desktop.engine.schedulers import make_scheduler
from tests.support.requests import make_request

SIZE, STEPS, SEED = 64, 3, 7


@pytest.fixture(scope="module")
def manager():
    return ModelManager(devices.choose("cpu", "fp32"))


@pytest.fixture(scope="module")
def bare(tiny_models):
    """Plain diffusers pipelines of the tiny models, fp32, with the scheduler the engine makes for Euler."""
    pipes = {}

    def get(kind):
        if kind not in pipes:
            cls = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
            extra = {} if kind == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
            pipe = cls.from_pretrained(tiny_models[kind].folder, dtype=torch.float32, **extra)
            pipe.set_progress_bar_config(disable=True)
            pipes[kind] = pipe
        return pipes[kind]

    return get


def ours(manager, model, prompt, negative="", **fields):
    request = make_request(model=model, prompt=prompt, negative_prompt=negative, width=SIZE, height=SIZE,
                           steps=STEPS, seed=SEED, sampler="Euler", schedule="Automatic", cfg_scale=7.0,
                           **fields)
    return generate.run(request, TaskState(), manager)[0]


def theirs(pipe, **conditioning):
    pipe.scheduler = make_scheduler(dict(pipe.scheduler.config), "Euler", "Automatic", [SEED])
    with torch.inference_mode():
        out = pipe(**conditioning, num_inference_steps=STEPS, guidance_scale=7.0, width=SIZE, height=SIZE,
                   generator=[torch.Generator("cpu").manual_seed(SEED)], output_type="np")
    return (np.clip(out.images[0], 0, 1) * 255 + 0.5).astype(np.uint8)


# -- the reference conditioning, spelled out ------------------------------------------------------


def words(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


def chunk_ids(tokenizer, tokens, weights, pad=None):
    """BOS + tokens + EOS padded to 77 (what follows the first EOS is the pad token), and the weights."""
    assert len(tokens) <= 75
    pad = tokenizer.pad_token_id if pad is None else pad
    ids = [tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id] + [pad] * (75 - len(tokens))
    return torch.tensor([ids]), torch.tensor([1.0, *weights, *[1.0] * (76 - len(tokens))]).reshape(1, -1, 1)


def encode_chunk(encoder, ids, weights, layer=-1, norm=False, mean=True):
    out = encoder(ids, output_hidden_states=True)
    z = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
    if norm:
        z = encoder.final_layer_norm(z)
    weighted = z * weights
    if mean:
        weighted = weighted * (z.mean() / weighted.mean())
    return weighted, getattr(out, "text_embeds", None)


def sd1_cond(pipe, chunks, layer=-1, norm=False, mean=True):
    """chunks: list of (token ids, weights) of at most 75."""
    with torch.inference_mode():
        return torch.cat([encode_chunk(pipe.text_encoder, *chunk_ids(pipe.tokenizer, t, w), layer, norm, mean)[0]
                          for t, w in chunks], dim=1)


def weighted(tokenizer, *parts):
    """Token ids and weights of (text, weight) parts."""
    tokens, weights = [], []
    for text, weight in parts:
        ids = words(tokenizer, text)
        tokens += ids
        weights += [weight] * len(ids)
    return tokens, weights


# -- SD 1.x -------------------------------------------------------------------------------------


def test_round_brackets_are_weight_1_1(manager, tiny_models):
    model = str(tiny_models["sd1"].folder)
    assert np.array_equal(ours(manager, model, "a (red) fox").image, ours(manager, model, "a (red:1.1) fox").image)
    assert not np.array_equal(ours(manager, model, "a (red:1.5) fox").image, ours(manager, model, "a red fox").image)


def test_weighted_and_nested_emphasis_equals_the_defined_conditioning(manager, tiny_models, bare):
    pipe, model = bare("sd1"), str(tiny_models["sd1"].folder)
    prompt = "a ((red:1.3) fox) in [snow], (sky:0.8)"
    tok = pipe.tokenizer
    cond = sd1_cond(pipe, [weighted(tok, ("a ", 1.0), ("red", 1.3 * 1.1), (" fox", 1.1), (" in ", 1.0),
                                     ("snow", 1 / 1.1), (", ", 1.0), ("sky", 0.8))])
    uncond = sd1_cond(pipe, [weighted(tok, ("blurry", 1.0))])
    got = ours(manager, model, prompt, "blurry")
    assert np.array_equal(got.image, theirs(pipe, prompt_embeds=cond, negative_prompt_embeds=uncond))
    assert "Pad conds" not in dict(got.params)


def test_no_norm_multiplies_only(manager, tiny_models, bare):
    pipe, model = bare("sd1"), str(tiny_models["sd1"].folder)
    tok = pipe.tokenizer
    cond = sd1_cond(pipe, [weighted(tok, ("a ", 1.0), ("red", 1.4), (" fox", 1.0))], mean=False)
    uncond = sd1_cond(pipe, [([], [])])
    got = ours(manager, model, "a (red:1.4) fox", emphasis="No norm")
    assert np.array_equal(got.image, theirs(pipe, prompt_embeds=cond, negative_prompt_embeds=uncond))


@pytest.mark.parametrize("count", [100, 160])
def test_long_prompts_are_encoded_in_chunks_and_the_negative_padded(manager, tiny_models, bare, count):
    """Past 75 tokens (and past 150) every chunk counts; the one-chunk negative gets empty-prompt chunks."""
    pipe, model = bare("sd1"), str(tiny_models["sd1"].folder)
    tok = pipe.tokenizer
    prompt = " ".join(["fox"] * count)
    tokens = words(tok, prompt)
    assert len(tokens) == count
    chunks = [(tokens[i:i + 75], [1.0] * len(tokens[i:i + 75])) for i in range(0, count, 75)]
    cond = sd1_cond(pipe, chunks)
    empty = sd1_cond(pipe, [([], [])])
    uncond = torch.cat([sd1_cond(pipe, [weighted(tok, ("ugly", 1.0))])] + [empty] * (len(chunks) - 1), dim=1)
    got = ours(manager, model, prompt, "ugly")
    assert np.array_equal(got.image, theirs(pipe, prompt_embeds=cond, negative_prompt_embeds=uncond))
    assert dict(got.params)["Pad conds"] == "True"
    cut = ours(manager, model, " ".join(["fox"] * 75), "ugly")  # what a 77-token cut would have seen
    assert not np.array_equal(got.image, cut.image), "the tokens after the first chunk change the picture"


def test_break_starts_a_new_chunk(manager, tiny_models, bare):
    pipe, model = bare("sd1"), str(tiny_models["sd1"].folder)
    tok = pipe.tokenizer
    cond = sd1_cond(pipe, [weighted(tok, ("a red fox", 1.0)), weighted(tok, ("snow", 1.1))])
    uncond = torch.cat([sd1_cond(pipe, [([], [])])] * 2, dim=1)
    got = ours(manager, model, "a red fox BREAK (snow)")
    assert np.array_equal(got.image, theirs(pipe, prompt_embeds=cond, negative_prompt_embeds=uncond))


def test_clip_skip_2_reads_the_layer_before_the_last_through_the_norm(manager, tiny_models, bare):
    pipe, model = bare("sd1"), str(tiny_models["sd1"].folder)
    tok = pipe.tokenizer
    cond = sd1_cond(pipe, [weighted(tok, ("a ", 1.0), ("red", 1.2), (" fox", 1.0))], layer=-2, norm=True)
    uncond = sd1_cond(pipe, [([], [])], layer=-2, norm=True)
    got = ours(manager, model, "a (red:1.2) fox", clip_skip=2)
    assert np.array_equal(got.image, theirs(pipe, prompt_embeds=cond, negative_prompt_embeds=uncond))


# -- SDXL ---------------------------------------------------------------------------------------


def sdxl_cond(pipe, chunks_l, chunks_g):
    """Both encoders' second-to-last hidden states per chunk, side by side; pooled from the first chunk."""
    with torch.inference_mode():
        parts, pooled = [], None
        for (tl, wl), (tg, wg) in zip(chunks_l, chunks_g, strict=True):
            zl, _ = encode_chunk(pipe.text_encoder, *chunk_ids(pipe.tokenizer, tl, wl), layer=-2)
            zg, p = encode_chunk(pipe.text_encoder_2, *chunk_ids(pipe.tokenizer_2, tg, wg), layer=-2)
            parts.append(torch.cat([zl, zg], dim=-1))
            pooled = p if pooled is None else pooled
        return torch.cat(parts, dim=1), pooled


def test_sdxl_weighted_long_prompt_equals_the_defined_conditioning(manager, tiny_models, bare):
    """Two chunks on both encoders; the empty negative is zeros (force_zeros_for_empty_prompt) padded with the
    empty prompt's encoding, as A1111 does."""
    pipe, model = bare("sdxl"), str(tiny_models["sdxl"].folder)
    tok = pipe.tokenizer
    filler = " ".join(["fox"] * 90)
    tokens, weights = weighted(tok, ("a ", 1.0), ("castle", 1.5), (" " + filler, 1.0))
    assert 75 < len(tokens) <= 150
    chunks = [(tokens[:75], weights[:75]), (tokens[75:], weights[75:])]
    prompt = "a (castle:1.5) " + filler
    cond, pooled = sdxl_cond(pipe, chunks, chunks)
    empty, _ = sdxl_cond(pipe, [([], [])], [([], [])])
    uncond = torch.cat([torch.zeros_like(empty), empty], dim=1)
    got = ours(manager, model, prompt)
    expected = theirs(pipe, prompt_embeds=cond, negative_prompt_embeds=uncond, pooled_prompt_embeds=pooled,
                      negative_pooled_prompt_embeds=torch.zeros_like(pooled))
    assert np.array_equal(got.image, expected)


def test_sdxl_plain_prompt_is_what_diffusers_makes_of_it(manager, tiny_models, bare):
    pipe, model = bare("sdxl"), str(tiny_models["sdxl"].folder)
    got = ours(manager, model, "a castle on a hill", "fog")
    assert np.array_equal(got.image, theirs(pipe, prompt="a castle on a hill", negative_prompt="fog"))


# -- prompt editing and alternation ---------------------------------------------------------------


def switching(pipe, prompts_by_step, negative=""):
    """Bare diffusers with the prompt of each sampling step (from 0) swapped in by a step callback."""
    with torch.inference_mode():
        encoded = {text: pipe.encode_prompt(text, "cpu", 1, True, negative) for text in set(prompts_by_step)}

    def swap(pipe_, index, timestep, tensors):
        if index + 1 >= len(prompts_by_step):
            return {}
        positive, uncond = encoded[prompts_by_step[index + 1]]
        return {"prompt_embeds": torch.cat([uncond, positive])}

    first, uncond = encoded[prompts_by_step[0]]
    return theirs(pipe, prompt_embeds=first, negative_prompt_embeds=uncond, callback_on_step_end=swap,
                  callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])


def test_prompt_editing_swaps_the_prompt_after_its_step(manager, tiny_models, bare):
    """[cat:dog:1] of 3 steps: A1111 runs sampling steps 0 and 1 (from 0) on "a cat", step 2 on "a dog"."""
    pipe, model = bare("sd1"), str(tiny_models["sd1"].folder)
    got = ours(manager, model, "a [cat:dog:1]")
    assert np.array_equal(got.image, switching(pipe, ["a cat", "a cat", "a dog"]))
    assert not np.array_equal(got.image, ours(manager, model, "a cat").image)
    assert np.array_equal(ours(manager, model, "a [cat:dog:0]").image, ours(manager, model, "a dog").image)
    assert np.array_equal(ours(manager, model, "a [cat:dog:0.99]").image, ours(manager, model, "a cat").image)


def test_alternation_changes_the_prompt_every_step(manager, tiny_models, bare):
    pipe, model = bare("sd1"), str(tiny_models["sd1"].folder)
    got = ours(manager, model, "a [cat|dog]")
    assert np.array_equal(got.image, switching(pipe, ["a cat", "a cat", "a dog"]))


def test_sdxl_prompt_editing_swaps_the_pooled_prompt_too(manager, tiny_models):
    model = str(tiny_models["sdxl"].folder)
    got = ours(manager, model, "a [cat:dog:1]").image
    assert not np.array_equal(got, ours(manager, model, "a cat").image)
    assert not np.array_equal(got, ours(manager, model, "a dog").image)


def test_the_texts_of_an_edited_prompt_are_weighted_as_one_batch(manager, tiny_models, bare):
    """A1111 encodes a prompt's schedule as one batch: "Original" emphasis keeps the mean over all its texts."""
    pipe, model = bare("sd1"), str(tiny_models["sd1"].folder)
    tok = pipe.tokenizer
    with torch.inference_mode():
        raw = []
        for tokens, weights in (weighted(tok, ("a ", 1.0), ("cat", 1.5)), weighted(tok, ("a dog", 1.0))):
            ids, multipliers = chunk_ids(tok, tokens, weights)
            z = pipe.text_encoder(ids, output_hidden_states=True).last_hidden_state
            raw.append((z, multipliers))
        batch = torch.cat([z for z, _ in raw])
        scaled = torch.cat([z * m for z, m in raw])
        scaled = scaled * (batch.mean() / scaled.mean())
        cat, dog = scaled.split(1)
        uncond = sd1_cond(pipe, [([], [])])

    def swap(pipe_, index, timestep, tensors):
        return {"prompt_embeds": torch.cat([uncond, dog])} if index == 1 else {}

    expected = theirs(pipe, prompt_embeds=cat, negative_prompt_embeds=uncond, callback_on_step_end=swap,
                      callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    assert np.array_equal(ours(manager, model, "a [(cat:1.5)|dog]").image, expected)
