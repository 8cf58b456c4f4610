"""Tiny random-weight flow-matching models (Z-Image, FLUX.2 klein, FLUX.1, SD3.5), built on disk offline.

Each is the family's real diffusers pipeline with the real structure and only
small sizes, like the UNet models of desktop/engine/tiny.py (whose tokenizer,
seeded init and saving it reuses):

* FLUX.1 [dev]: FluxPipeline; CLIP-L and T5 encoders, a FluxTransformer2DModel
  with guidance embedding, a 16-channel VAE with Flux's scaling and shift, and
  the dev scheduler with dynamic shifting.
* SD3.5 Medium: StableDiffusion3Pipeline; CLIP-L, CLIP-G and T5 encoders, an
  SD3Transformer2DModel with Medium's dual attention and RMS q/k norms, a
  16-channel VAE with SD3's scaling and shift, the shift-3 scheduler.
* Z-Image Turbo: ZImagePipeline; a Qwen3 encoder, a ZImageTransformer2DModel,
  Flux's VAE, Turbo's shift-3 scheduler.
* FLUX.2 [klein] 4B: Flux2KleinPipeline (distilled); a Qwen3 causal LM whose
  layers 9, 18 and 27 are read, a Flux2Transformer2DModel, the 32-channel
  AutoencoderKLFlux2 and FLUX.2's scheduler.

Every VAE keeps four blocks (scale factor 8), so picture sizes behave as with
the real models. T5 and Qwen tokenizers are built here from tiny.py's corpus
and merges; the Qwen one carries a Qwen3-style chat template (the pipelines
apply it). Weights come from per-tensor seeds (tiny._init_weights), so a kind
gives byte-identical files on every build.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from desktop.engine import tiny

# FLUX.1 dev's scheduler_config.json (schnell: no dynamic shifting, shift 1).
_FLUX1_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)
# FLUX.2's: the pipeline computes its own mu for the dynamic shift.
_FLUX2_SCHEDULER = dict(_FLUX1_SCHEDULER, time_shift_type="exponential")
_SD3_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)
_ZIMAGE_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False)

# The 16-channel VAE's scaling and shift (FLUX.1 and Z-Image share one VAE).
_FLUX_VAE = (0.3611, 0.1159)
_SD3_VAE = (1.5305, 0.0609)
# Four blocks (scale factor 8) as the real VAEs have, 16 channels at full resolution
# like tiny.py's; narrower deeper down than tiny.py's to keep the folders small.
_VAE_CHANNELS = (16, 32, 32, 32)

T5_MAX_LENGTH = 512
_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
# Qwen3's chat template, cut down to what a prompt needs: user turns and the
# assistant's opening, with the empty thinking block when thinking is off.
_QWEN_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def write_model(model) -> None:
    """Write `model` (a tiny.TinyModel of a flow kind): its diffusers folder and sidecar configs."""
    import torch

    builders = {"flux1": _flux1, "sd3": _sd3, "zimage": _zimage, "flux2-klein": _flux2_klein}
    scratch = model.folder.parent / "tokenizers"
    with torch.random.fork_rng(devices=[]):
        pipe, clip_tokenizers = builders[model.kind](scratch)
    tiny._save_quietly(pipe, model.folder)
    _name_fast_tokenizers(model.folder / "model_index.json")
    for name in clip_tokenizers:  # our own files, not whatever this transformers version writes
        shutil.rmtree(model.folder / name)
        shutil.copytree(scratch / name, model.folder / name)
    shutil.rmtree(scratch, ignore_errors=True)
    weights = shutil.ignore_patterns(*("*" + suffix for suffix in tiny._WEIGHT_SUFFIXES))
    shutil.copytree(model.folder, model.config, ignore=weights)
    from desktop.engine import flow_layout  # the single files in the original key layouts

    flow_layout.write_files(model, pipe)


def _name_fast_tokenizers(index: Path) -> None:
    """model_index.json names the fast T5 and Qwen2 tokenizer classes (as FLUX.1's, SD3's and klein's do).

    transformers 5 saves its (only, fast) tokenizers under the plain names, which
    transformers 4 reads as the slow classes that need files these folders lack.
    """
    data = json.loads(index.read_text(encoding="utf-8"))
    for name, entry in data.items():
        if isinstance(entry, list) and entry[0] == "transformers" and entry[1] in _FAST_NAMES:
            data[name] = ["transformers", _FAST_NAMES[entry[1]]]
    index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


_FAST_NAMES = {"T5Tokenizer": "T5TokenizerFast", "Qwen2Tokenizer": "Qwen2TokenizerFast"}


# ---------------------------------------------------------------------------
# tokenizers


def _clip_tokenizer(scratch: Path, name: str, pad_token: str):
    from transformers import CLIPTokenizer

    vocab, merges = tiny._vocab_and_merges()
    tiny._write_tokenizer(scratch / name, vocab, merges, pad_token)
    return CLIPTokenizer.from_pretrained(scratch / name, local_files_only=True), vocab


def _t5_tokenizer():
    """A Unigram T5 tokenizer over the corpus words and every character in them."""
    from transformers import T5TokenizerFast

    words: dict[str, int] = {}
    for word in tiny._CORPUS.lower().replace(",", " ").split():
        words["▁" + word] = words.get("▁" + word, 0) + 1
    chars = sorted({c for word in words for c in word[1:]} | set(",.!?'-0123456789"))
    total = sum(words.values())
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(w, round(math.log(n / total) - 1.0, 4)) for w, n in sorted(words.items())]
    pieces += [(c, -12.0) for c in chars if c != "▁"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def _qwen_tokenizer():
    """A byte-level BPE Qwen2 tokenizer: tiny.py's merges inside words, Qwen's special tokens and chat template."""
    from transformers import Qwen2TokenizerFast

    _, clip_merges = tiny._vocab_and_merges()
    # CLIP's merges that do not involve a word end; they only build on each other, so stay consistent.
    merges = [(a, b) for a, b in clip_merges if "</w>" not in a + b]
    vocab: dict[str, int] = {}
    for token in list(tiny._bytes_to_unicode().values()) + [a + b for a, b in merges]:
        vocab.setdefault(token, len(vocab))
    for token in _QWEN_SPECIALS:
        vocab.setdefault(token, len(vocab))
    return Qwen2TokenizerFast(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(_QWEN_SPECIALS[1:]),
        model_max_length=131072,
        chat_template=_QWEN_CHAT_TEMPLATE,
    ), vocab


# ---------------------------------------------------------------------------
# text encoders


def _t5_encoder(tokenizer, d_model: int):
    """T5 v1.1 (T5-XXL's structure): gated GELU, relative position buckets."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=2 * d_model,
        num_layers=2,
        num_heads=d_model // 8,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


# Z-Image and FLUX.2 klein 4B read the same Qwen3-4B: their tiny encoders share weights too.
_QWEN3_TAG = "qwen3-4b/text_encoder"


def _qwen3_config(vocab: dict[str, int]):
    """Qwen3-4B's structure (36 layers, grouped-query attention, q/k norms), 32 wide."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=36,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=40960,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        max_window_layers=36,
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|im_end|>"],
    )


# ---------------------------------------------------------------------------
# VAEs


def _vae_blocks() -> dict:
    """What every tiny flow VAE has: four tiny blocks."""
    return dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=_VAE_CHANNELS, layers_per_block=2,
                norm_num_groups=16, sample_size=1024)


def _vae16(scaling_factor: float, shift_factor: float):
    """The 16-channel VAE of FLUX.1, Z-Image and SD3 (no quant convs), four tiny blocks."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        **_vae_blocks(),
        latent_channels=16,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
        force_upcast=True,
    )


def _init(kind: str, modules: dict) -> None:
    for name, module in modules.items():
        tiny._init_weights(module, f"{kind}/{name}")


# ---------------------------------------------------------------------------
# pipelines: each returns (pipeline, names of its CLIP tokenizer folders)


def _flux1(scratch: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    tokenizer, vocab = _clip_tokenizer(scratch, "tokenizer", tiny.EOS)
    tokenizer_2 = _t5_tokenizer()
    text_encoder = CLIPTextModel(tiny._text_config(32, 4, vocab, tiny.EOS, "quick_gelu", 32))
    text_encoder_2 = _t5_encoder(tokenizer_2, 32)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels in 2x2 patches
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5's width
        pooled_projection_dim=32,  # CLIP's pooled output
        guidance_embeds=True,  # dev: the distilled guidance is an input
        axes_dims_rope=(4, 6, 6),
    )
    vae = _vae16(*_FLUX_VAE)
    _init("flux1", {"transformer": transformer, "text_encoder": text_encoder,
                    "text_encoder_2": text_encoder_2, "vae": vae})
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**_FLUX1_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    return pipe, ["tokenizer"]


def _sd3(scratch: Path):
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    tokenizer, vocab = _clip_tokenizer(scratch, "tokenizer", tiny.EOS)
    tokenizer_2, _ = _clip_tokenizer(scratch, "tokenizer_2", "!")
    tokenizer_3 = _t5_tokenizer()
    # CLIP-L and CLIP-G differ in width as the real ones do (32 + 64 side by side
    # fill T5's 96, as 768 + 1280 are padded to T5-XXL's 4096).
    text_encoder = CLIPTextModelWithProjection(tiny._text_config(32, 4, vocab, tiny.EOS, "quick_gelu", 32))
    text_encoder_2 = CLIPTextModelWithProjection(tiny._text_config(64, 10, vocab, "!", "gelu", 64))
    text_encoder_3 = _t5_encoder(tokenizer_3, 96)
    transformer = SD3Transformer2DModel(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        num_layers=3,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=96,
        caption_projection_dim=32,
        pooled_projection_dim=32 + 64,
        out_channels=16,
        pos_embed_max_size=96,
        dual_attention_layers=(0, 1),  # 3.5 Medium's MMDiT-X blocks
        qk_norm="rms_norm",
    )
    vae = _vae16(*_SD3_VAE)
    _init("sd3", {"transformer": transformer, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2,
                  "text_encoder_3": text_encoder_3, "vae": vae})
    with torch.no_grad():  # SD3 uses CLIP-L's pooled output unprojected, as its single files load it
        text_encoder.text_projection.weight.copy_(torch.eye(text_encoder.text_projection.weight.shape[0]))
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(**_SD3_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    return pipe, ["tokenizer", "tokenizer_2"]


def _zimage(scratch: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Model

    tokenizer, vocab = _qwen_tokenizer()
    text_encoder = Qwen3Model(_qwen3_config(vocab))
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=2,
        n_heads=2,
        n_kv_heads=2,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=32,  # the Qwen3 encoder's width
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[1536, 512, 512],
    )
    vae = _vae16(*_FLUX_VAE)
    _init("zimage", {"transformer": transformer, "vae": vae})
    tiny._init_weights(text_encoder, _QWEN3_TAG)
    pipe = ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**_ZIMAGE_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    return pipe, []


def _flux2_klein(scratch: Path):
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3ForCausalLM

    tokenizer, vocab = _qwen_tokenizer()
    config = _qwen3_config(vocab)
    text_encoder = Qwen3ForCausalLM(config)
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,  # 32 latent channels in 2x2 patches
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * config.hidden_size,  # the encoder's layers 9, 18 and 27 side by side
        timestep_guidance_channels=256,
        mlp_ratio=3.0,
        axes_dims_rope=(4, 4, 4, 4),
        rope_theta=2000,
        guidance_embeds=False,  # klein: no distilled guidance input
    )
    vae = AutoencoderKLFlux2(**_vae_blocks(), latent_channels=32)
    _init("flux2-klein", {"transformer": transformer, "vae": vae})
    tiny._init_weights(text_encoder.model, _QWEN3_TAG)  # its LM head is the (tied) token embedding
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**_FLUX2_SCHEDULER),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )
    return pipe, []
