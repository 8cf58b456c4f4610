"""Tiny random-weight Stable Diffusion models, built on disk offline.

They are the app's demo model and every test's model, so they have the real
structure, only small: a VAE with four blocks (scale factor 8, 4 latent
channels, the real scaling factors), a UNet with ``layers_per_block=2`` and
cross-attention in a down block, an up block and the mid block, CLIP text
encoders with a locally built BPE tokenizer, and the real scheduler configs.
Each kind is written three ways, which the loading code must all handle:

* ``root/tiny-<kind>/``: a diffusers folder with safetensors weights;
* ``root/tiny-<kind>.safetensors``: one file in the original LDM / SGM key layout;
* ``root/tiny-<kind>.config/``: the sidecar configs (diffusers configs, tokenizers,
  model_index.json, no weights) that ``from_single_file(config=...)`` needs offline.

Weights come from per-tensor seeds, so the same kind gives byte-identical files
on every build, and sd1-inpaint shares every weight with sd1 except conv_in.

The kinds whose family has a TAESD carry a tiny random-weight one inside their
folder (``tiny-sd1/taesd``, ``tiny-sdxl/taesdxl``, ``tiny-flux1/taef1``, ...), in
diffusers' AutoencoderTiny layout: the demo models' own, for previews and the
"tiny" decoder (ModelManager.tiny_decoder), never put in the user's models folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from desktop.core import atomic

UNET_KINDS = ("sd1", "sd1-inpaint", "sdxl")
FLOW_KINDS = ("zimage", "flux2-klein", "flux1", "sd3")  # flow-matching transformers: desktop/engine/tiny_flow.py
KINDS = UNET_KINDS + FLOW_KINDS
# Beside tiny-<kind>/, .config and .safetensors, a kind may have tiny-<kind><suffix>/ (see _extras).
EXTRA_SUFFIXES = (".comfy",)

# Bump whenever anything that ends up on disk changes (sizes, configs, tokenizer, init).
VERSION = 5

MAX_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
_SEED_TAG = "sfumato-tiny"
_STALE_WORK_SECONDS = 3600
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".gguf")

# Words the tokenizer's merges are learned from: common English and prompt vocabulary.
_CORPUS = """
a an the of and or in on at to with without from by for into over under between
photo photograph portrait painting drawing sketch illustration render image picture
art artwork style studio light lighting shadow shadows color colors colorful warm cold
beautiful detailed highly intricate sharp focus soft blur bokeh cinematic dramatic
realistic photorealistic hyperrealistic digital oil watercolor acrylic ink pencil
charcoal canvas paper concept matte trending masterpiece best quality high resolution
landscape mountain mountains river lake sea ocean beach sky clouds sunset sunrise
night day morning evening forest tree trees flower flowers garden field grass snow
rain fog storm desert city street building buildings house castle tower bridge road
cat cats dog dogs bird birds horse fish dragon lion tiger wolf fox bear rabbit owl
man woman girl boy child people person face eyes hair smile hands standing sitting
walking running flying holding wearing looking red orange yellow green blue purple
pink black white gray grey brown golden silver dark bright glowing neon vibrant pastel
old young ancient modern future futuristic fantasy science fiction magic magical
cute small large big tiny giant little long short tall wide deep high low bright
background foreground center close wide angle view shot lens camera film grain
nature natural water fire earth wind stone wood metal glass gold crystal ice
""" + " ".join(
    [
        "the quick brown fox jumps over the lazy dog",
        "a painting of a cat sitting in a garden with flowers",
        "a photo of an astronaut riding a horse on the moon",
        "portrait of a woman with long hair, oil painting, highly detailed",
        "a castle on a mountain at sunset, dramatic lighting, fantasy art",
        "there is this that these those then than when where what which who",
        "is are was were be been being have has had do does did will would",
        "can could should may might must shall not no yes very more most",
        "one two three four five six seven eight nine ten first second last",
        "ing ed er est ly tion ness ment able ful less ous ive al ic",
    ]
)
_NUM_MERGES = 400


@dataclass(frozen=True)
class TinyModel:
    kind: str
    folder: Path
    checkpoint: Path
    config: Path


def paths(root: Path, kind: str) -> TinyModel:
    """Where build(root, kind) puts things, whether or not they exist yet."""
    _check_kind(kind)
    root = Path(root)
    name = f"tiny-{kind}"
    return TinyModel(kind, root / name, root / f"{name}.safetensors", root / f"{name}.config")


def build(root: Path, kind: str = "sd1") -> TinyModel:
    """Build (or find already built) the tiny model of this kind under root.

    Idempotent: a complete build with the current VERSION returns at once.
    Otherwise everything is built in a temporary folder inside root and moved
    into place with os.replace, so a crash never leaves a half-built model that
    looks complete (the stamp file is written last).
    """
    model = paths(root, kind)
    root = Path(root)
    if _is_current(root, model):
        return model
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_work(root, kind)
    work = Path(tempfile.mkdtemp(prefix=f".tiny-{kind}.", suffix=".tmp", dir=root))
    try:
        staged = paths(work, kind)
        _write_model(staged)
        _write_taesd(staged)
        atomic.fsync_tree(work)
        if not _is_current(root, model):  # another process may have finished meanwhile
            _install(staged, model, work)
            _write_stamp(root, model)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return model


def taesd_folder(model: Path) -> Path | None:
    """The tiny TAESD inside a built tiny model's folder (`model`: tiny-<kind>/); None for any other model or a kind
    whose family has none."""
    model = Path(model)
    kind = model.name.removeprefix("tiny-")
    if not model.name.startswith("tiny-") or kind not in KINDS or not _stamp_path(model.parent, kind).is_file():
        return None
    folder = _taesd_path(model, kind)
    return folder if folder is not None and (folder / "config.json").is_file() else None


def _taesd_path(folder: Path, kind: str) -> Path | None:
    from desktop.engine.previews import has_tiny_decoder, taesd_dir

    family = kind.removesuffix("-inpaint")
    return taesd_dir(folder, family) if has_tiny_decoder(family) else None


def _write_taesd(model: TinyModel) -> None:
    """The kind's tiny random-weight TAESD (AutoencoderTiny) inside its folder, when its family has one; its
    config in the sidecar too, which holds every config of the folder."""
    import torch
    from diffusers import AutoencoderTiny

    folder = _taesd_path(model.folder, model.kind)
    if folder is None:
        return
    family = model.kind.removesuffix("-inpaint")
    with torch.random.fork_rng(devices=[]):
        decoder = AutoencoderTiny(encoder_block_out_channels=(16,) * 4, decoder_block_out_channels=(16,) * 4,
                                  num_encoder_blocks=(1,) * 4, num_decoder_blocks=(1,) * 4,
                                  latent_channels=4 if model.kind in UNET_KINDS else 16)
    _init_weights(decoder, f"{family}/taesd")
    decoder.save_pretrained(folder, safe_serialization=True)
    sidecar = model.config / folder.name
    sidecar.mkdir()
    shutil.copy2(folder / "config.json", sidecar / "config.json")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; expected one of {KINDS}")


# ---------------------------------------------------------------------------
# stamp and atomic install


def _stamp_path(root: Path, kind: str) -> Path:
    return root / f".tiny-{kind}.stamp"


def _is_current(root: Path, model: TinyModel) -> bool:
    try:
        stamp = json.loads(_stamp_path(root, model.kind).read_text(encoding="utf-8"))
        return (
            stamp.get("version") == VERSION
            and stamp.get("kind") == model.kind
            and (model.folder / "model_index.json").is_file()
            and (model.config / "model_index.json").is_file()
            and _checkpoint_bytes(model) == stamp.get("checkpoint_bytes")
            and all((root / name).is_dir() for name in stamp.get("extras", []))
        )
    except (OSError, ValueError):
        return False


def _write_stamp(root: Path, model: TinyModel) -> None:
    stamp = {
        "version": VERSION,
        "kind": model.kind,
        "checkpoint_bytes": _checkpoint_bytes(model),
        "extras": [p.name for p in _extras(model) if p.is_dir()],
    }
    atomic.write_json(_stamp_path(root, model.kind), stamp)


def _extras(model: TinyModel) -> list[Path]:
    """Folders some kinds have beside the three: a ComfyUI-style tree of separate files (flow_layout.comfy_tree)."""
    return [model.folder.with_name(model.folder.name + suffix) for suffix in EXTRA_SUFFIXES]


def _checkpoint_bytes(model: TinyModel) -> int:
    """The single file's size (every kind has one; OSError when it is missing, which makes the build not current)."""
    return model.checkpoint.stat().st_size


def _remove_stale_work(root: Path, kind: str) -> None:
    """Delete what a crashed build left behind (old enough not to be a build in progress)."""
    cutoff = time.time() - _STALE_WORK_SECONDS
    for path in root.glob(f".tiny-{kind}.*.tmp"):
        try:
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _install(staged: TinyModel, model: TinyModel, work: Path) -> None:
    _stamp_path(model.folder.parent, model.kind).unlink(missing_ok=True)
    trash = work / "old"
    trash.mkdir()
    for src, dst in (
        (staged.folder, model.folder),
        (staged.config, model.config),
        (staged.checkpoint, model.checkpoint),
        *zip(_extras(staged), _extras(model)),
    ):
        if not src.exists() and dst in _extras(model):  # a kind without that extra folder
            if dst.is_dir() and not dst.is_symlink():
                os.replace(dst, trash / dst.name)  # left from an older build
            continue
        if dst.is_dir() and not dst.is_symlink():
            os.replace(dst, trash / dst.name)  # a directory can only replace an empty one
        os.replace(src, dst)


# ---------------------------------------------------------------------------
# tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _learn_merges(text: str, count: int) -> list[tuple[str, str]]:
    """Plain BPE over the corpus words (ties broken by the pair itself, so deterministic)."""
    byte_chars = _bytes_to_unicode()
    freqs: dict[tuple[str, ...], int] = {}
    for word in text.lower().replace(",", " ").split():
        chars = [byte_chars[b] for b in word.encode("utf-8")]
        symbols = tuple(chars[:-1]) + (chars[-1] + "</w>",)
        freqs[symbols] = freqs.get(symbols, 0) + 1
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: dict[tuple[str, str], int] = {}
        for symbols, n in freqs.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] = pairs.get(pair, 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        merges.append(best)
        joined = best[0] + best[1]
        new_freqs: dict[tuple[str, ...], int] = {}
        for symbols, n in freqs.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            new_freqs[tuple(out)] = new_freqs.get(tuple(out), 0) + n
        freqs = new_freqs
    return merges


def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP vocabulary order: bytes, bytes + '</w>', merges, then the two specials."""
    base = list(_bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base]
    merges = _learn_merges(_CORPUS, _NUM_MERGES)
    for a, b in merges:
        tokens.append(a + b)
    tokens += [BOS, EOS]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab, merges


def _write_tokenizer(folder: Path, vocab: dict[str, int], merges, pad_token: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": pad_token, "unk_token": EOS}
    config = {
        **special,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": MAX_LENGTH,
        "tokenizer_class": "CLIPTokenizer",
    }
    for name, data in (("special_tokens_map.json", special), ("tokenizer_config.json", config)):
        (folder / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------
# models


def _init_weights(module, tag: str) -> None:
    """Deterministic random weights, one seed per tensor (name, shape).

    Norm scales near 1 and small random biases (never exactly 0 or 1, so that a
    swapped tensor in a layout conversion cannot go unnoticed), embeddings like
    CLIP's, other weights uniform in +-1/sqrt(fan_in) like PyTorch's defaults.
    """
    import torch

    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            seed = zlib.crc32(f"{_SEED_TAG}/{tag}/{name}/{tuple(param.shape)}".encode())
            gen = torch.Generator().manual_seed(seed)
            values = torch.empty(param.shape, dtype=torch.float32)
            if param.ndim == 1 and name.endswith("weight"):
                values.normal_(1.0, 0.05, generator=gen)
            elif param.ndim == 1:
                values.normal_(0.0, 0.02, generator=gen)
            elif name.endswith(("token_embedding.weight", "position_embedding.weight")):
                values.normal_(0.0, 0.02, generator=gen)
            else:
                bound = 1.0 / float(param[0].numel()) ** 0.5
                values.uniform_(-bound, bound, generator=gen)
            param.copy_(values)


def _text_config(hidden: int, layers: int, vocab: dict[str, int], pad_token: str, act: str, proj: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_attention_heads=4,
        num_hidden_layers=layers,
        max_position_embeddings=MAX_LENGTH,
        hidden_act=act,
        projection_dim=proj,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[pad_token],
    )


def _vae(scaling_factor: float, sample_size: int, force_upcast: bool):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        # 16 channels at full resolution keep a 512x512 decode around half a second
        # on a laptop CPU thread; real SD has (128, 256, 512, 512) and 32 groups.
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
        force_upcast=force_upcast,
    )


_SD_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    steps_offset=1,
    prediction_type="epsilon",
)


def _sd1_pipeline(kind: str, tokenizer_dir: Path, vocab):
    from diffusers import (
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=9 if kind == "sd1-inpaint" else 4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        # Attention at the middle resolution only keeps a 512x512 demo image quick;
        # the layout still has an up block with and one without attention before
        # its upsampler, so both LDM positions of an upsampler are exercised.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
    )
    text_encoder = CLIPTextModel(_text_config(32, 4, vocab, EOS, "quick_gelu", 32))
    vae = _vae(0.18215, 512, force_upcast=True)
    for module, name in ((unet, "unet"), (text_encoder, "text_encoder"), (vae, "vae")):
        _init_weights(module, f"sd1/{name}")
    scheduler = PNDMScheduler(**_SD_SCHEDULER, skip_prk_steps=True, set_alpha_to_one=False)
    cls = StableDiffusionInpaintPipeline if kind == "sd1-inpaint" else StableDiffusionPipeline
    pipe = cls(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe, [text_encoder]


def _sdxl_pipeline(tokenizer_dir: Path, tokenizer_2_dir: Path, vocab):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    # The two encoders must differ in width: diffusers' single-file loader tells
    # them apart by the width of their position embeddings. Ten layers in the
    # OpenCLIP encoder make diffusers recognise the checkpoint as SDXL base
    # (it looks for conditioner.embedders.1.model.transformer.resblocks.9.*).
    text_encoder = CLIPTextModel(_text_config(32, 4, vocab, EOS, "quick_gelu", 32))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(64, 10, vocab, "!", "gelu", 32))
    addition_time_embed_dim = 8
    unet = UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 4),
        use_linear_projection=True,
        cross_attention_dim=32 + 64,
        addition_embed_type="text_time",
        addition_time_embed_dim=addition_time_embed_dim,
        # six size/crop numbers, each embedded, plus the pooled projection of encoder 2
        projection_class_embeddings_input_dim=6 * addition_time_embed_dim + 32,
    )
    vae = _vae(0.13025, 1024, force_upcast=True)
    for module, name in (
        (unet, "unet"),
        (text_encoder, "text_encoder"),
        (text_encoder_2, "text_encoder_2"),
        (vae, "vae"),
    ):
        _init_weights(module, f"sdxl/{name}")
    scheduler = EulerDiscreteScheduler(
        **_SD_SCHEDULER,
        interpolation_type="linear",
        timestep_spacing="leading",
        use_karras_sigmas=False,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True),
        tokenizer_2=CLIPTokenizer.from_pretrained(tokenizer_2_dir, local_files_only=True),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )
    return pipe, [text_encoder, text_encoder_2]


def _save_quietly(pipe, folder: Path) -> None:
    """save_pretrained without transformers' "Writing model shards" progress bars."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        pipe.save_pretrained(folder, safe_serialization=True)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _write_model(model: TinyModel) -> None:
    if model.kind in FLOW_KINDS:
        from desktop.engine import tiny_flow

        tiny_flow.write_model(model)
        return
    import torch
    from safetensors.torch import save_file

    from desktop.engine.ldm_layout import to_original_layout

    vocab, merges = _vocab_and_merges()
    tok_dirs = {"tokenizer": EOS}
    if model.kind == "sdxl":
        tok_dirs["tokenizer_2"] = "!"
    scratch = model.folder.parent / "tokenizers"
    for name, pad in tok_dirs.items():
        _write_tokenizer(scratch / name, vocab, merges, pad)

    with torch.random.fork_rng(devices=[]):
        if model.kind == "sdxl":
            pipe, encoders = _sdxl_pipeline(scratch / "tokenizer", scratch / "tokenizer_2", vocab)
            family = "sdxl"
        else:
            pipe, encoders = _sd1_pipeline(model.kind, scratch / "tokenizer", vocab)
            family = "sd1"

    _save_quietly(pipe, model.folder)
    for name in tok_dirs:  # our own files, not whatever this transformers version writes
        shutil.rmtree(model.folder / name)
        shutil.copytree(scratch / name, model.folder / name)
    shutil.rmtree(scratch)

    state = to_original_layout(pipe.unet, pipe.vae, encoders, family)
    save_file(state, str(model.checkpoint), metadata={"format": "pt"})

    shutil.copytree(model.folder, model.config, ignore=shutil.ignore_patterns(*("*" + s for s in _WEIGHT_SUFFIXES)))
