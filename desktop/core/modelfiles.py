"""Find model files and tell what they are without loading them.

A safetensors file is identified from its JSON header alone (the tensor data is
never read). A pickle checkpoint (.ckpt/.pt/.pth/.bin) is NEVER unpickled: its
opcodes are listed with ``pickletools.genops``, which executes nothing, to
collect the key strings. A diffusers folder is identified from its JSON configs.
A GGUF file (a quantised transformer) from its header (desktop/core/gguf.py).

Families are told apart by key *structure* (which text encoders are present) and
by the UNet's input channels, never by layer widths: Sfumato's tiny test models
share the real key layout with tiny widths. Layer widths are only used where
nothing else can tell (the base model of a LoRA or an embedding, the size or
depth of a flow-matching model's variant), and then only the exact real widths count.
"""

from __future__ import annotations

import enum
import hashlib
import io
import json
import logging
import os
import pickletools
import re
import zipfile
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from desktop.core import atomic, fewstep
from desktop.core.gguf import read_gguf_header
from desktop.core.safetensors_header import (
    DTYPE_BITS,
    ModelFileError,
    SafetensorsHeader,
    TensorInfo,
    open_regular,
    read_safetensors_header,
    sniff,
)

__all__ = [
    "DTYPE_BITS", "Family", "ModelFileError", "ModelInfo", "SafetensorsHeader", "TensorInfo", "flow_parts",
    "identify", "identify_or_explain", "known_hash", "model_hash", "read_safetensors_header", "scan", "sidecar_config",
]  # fmt: skip

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".gguf")  # what scan() lists
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MAX_PICKLE_BYTES = 64 * 2**20  # bound on the pickle bytes scanned for key names
MAX_CONFIG_BYTES = 4 * 2**20  # a diffusers config is a few KB
SCAN_DEPTH = 4

UNET = "model.diffusion_model."  # the UNet of an original-layout (LDM/SGM) checkpoint
CONV_IN = UNET + "input_blocks.0.0.weight"  # shape (width, in_channels, 3, 3)
SD_PIPELINES = {f"StableDiffusion{task}Pipeline" for task in ("", "Img2Img", "Inpaint")}
SDXL_PIPELINES = {f"StableDiffusionXL{task}Pipeline" for task in ("", "Img2Img", "Inpaint")}
TEXT_ENCODER_NOTE = "a text encoder (CLIP, T5 or Qwen3, as ComfyUI's text_encoders folder holds them), not a full model"
# The GGUF architectures of the flow families' text encoders (city96's T5 files, Qwen3 4B and 8B).
GGUF_TEXT_ENCODERS = ("t5", "t5encoder", "qwen3")
TEXT_PREFIXES = ("text_encoders.", "cond_stage_model.", "conditioner.")  # a ComfyUI checkpoint's text encoders
VAE_PREFIXES = ("vae.", "first_stage_model.")


class Family(str, enum.Enum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl-refiner"
    # flow-matching transformer families (desktop/core/families.py says what each needs and defaults to)
    ZIMAGE = "zimage"
    FLUX2_KLEIN = "flux2-klein"
    FLUX1 = "flux1"
    SD3 = "sd3"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    format: str  # "safetensors" | "ckpt" | "gguf" | "diffusers"
    kind: str  # "checkpoint" | "lora" | "vae" | "embedding" | "upscaler" | "restorer" | "face restorer" |
    #            "controlnet" | "text encoder" | "unknown"
    family: Family
    inpaint: bool = False
    size_bytes: int = 0
    note: str = ""
    prediction: str | None = None  # "epsilon" | "v_prediction" when the file says
    config_dir: Path | None = None  # sidecar diffusers config folder, if any
    variant: str = ""  # within a family (desktop/core/families.py VARIANTS): "dev", "schnell", "fill", "turbo", ...
    few_step: str = ""  # desktop/core/fewstep.py KINDS when the name or metadata says it is a few-step model/LoRA
    # the UNet takes the CFG scale as an embedding (time_cond_proj_dim: a full LCM checkpoint such as
    # SimianLuo/LCM_Dreamshaper_v7): one UNet batch, no negative prompt; fewstep.recipe(..., guided=True) gives CFG 8
    guidance_embedded: bool = False

    @property
    def name(self) -> str:
        return self.path.name if self.format == "diffusers" else self.path.stem


# ------------------------------------------------------------ identification


@dataclass
class _Guess:
    kind: str = "unknown"
    family: Family = Family.UNKNOWN
    inpaint: bool = False
    note: str = ""
    prediction: str | None = None
    variant: str = ""


def identify(path) -> ModelInfo:
    """Tell what a model file or diffusers folder is. Raises ModelFileError."""
    path = Path(path)
    if path.is_dir():
        return _identify_diffusers(path)
    suffix = path.suffix.lower()
    metadata: Mapping[str, str] = {}
    shapes: Mapping[str, tuple[int, ...] | None] = {}
    if suffix in (".safetensors", ".sft"):
        header = read_safetensors_header(path)
        metadata = header.metadata
        shapes = {k: t.shape for k, t in header.tensors.items()}
        guess, fmt = _classify(shapes, header.metadata, path.name), "safetensors"
        if guess.family in FLOW_FAMILIES and any(t.dtype in ("F8_E4M3", "F8_E5M2") for t in header.tensors.values()):
            guess.note = _join("fp8 weights", guess.note)
    elif suffix == ".gguf":
        guess, fmt = _identify_gguf(path), "gguf"
    elif suffix in PICKLE_SUFFIXES:
        guess, fmt = _identify_pickle(path), "ckpt"
    elif not path.exists():
        raise ModelFileError(path, "it does not exist.")
    else:
        raise ModelFileError(path, f"Sfumato does not know {suffix or 'extensionless'} files.")
    config = sidecar_config(path)
    if config is not None and guess.kind == "checkpoint" and guess.family is Family.UNKNOWN:
        try:
            side = _identify_diffusers(config)
            guess.family, guess.inpaint = side.family, side.inpaint
            guess.note = f"architecture read from {config.name}"
        except ModelFileError as e:
            guess.note = f"{guess.note}; its config folder is unusable: {e.reason}".lstrip("; ")
    embedded = guess.kind == "checkpoint" and any(key.endswith(GUIDANCE_EMBEDDING_KEYS) for key in shapes)
    few_step = _few_step(path, guess, metadata) or (fewstep.LCM if embedded else "")
    return ModelInfo(path, fmt, guess.kind, guess.family, guess.inpaint, path.stat().st_size,
                     guess.note, guess.prediction, config, guess.variant, few_step, embedded)


# A UNet's weight that takes the guidance as an embedding (diffusers' and the original layout's names)
GUIDANCE_EMBEDDING_KEYS = ("time_embedding.cond_proj.weight", "time_embed.cond_proj.weight")


# The stems of files that only their folder names: the Hub's names for a LoRA's or a UNet's weights, as people keep
# them ("models/Lora/lcm-lora-sdxl/pytorch_lora_weights.safetensors").
GENERIC_STEMS = ("pytorch_lora_weights", "diffusion_pytorch_model", "model", "lora", "unet", "adapter_model")


def _few_step(path: Path, guess: _Guess, metadata: Mapping[str, str]) -> str:
    """The few-step kind (desktop/core/fewstep.py) of an SD checkpoint or LoRA from its name (its folder's too when
    the file has a generic name, and a Hub download's repository) and its metadata; "" for the other files and
    for the flow families, whose few-step variants are ModelInfo.variant."""
    if guess.kind not in ("checkpoint", "lora") or guess.family in FLOW_FAMILIES:
        return ""
    names = [path.name if path.is_dir() else path.stem]
    if not path.is_dir() and path.stem.lower().split(".")[0] in GENERIC_STEMS:
        names.append(path.parent.name)
    names += [part for part in path.parts if part.startswith("models--")]  # models--org--name: the Hub id
    return fewstep.recognise(" ".join(names), metadata)


def _classify(shapes: Mapping[str, tuple[int, ...] | None], metadata: Mapping[str, str], name: str = "") -> _Guess:
    """Kind and family from tensor names (shapes are None where unknown); `name` (the file's) hints a variant."""
    keys = shapes.keys()

    def has(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    def contains(*parts: str) -> bool:
        return any(p in k for k in keys for p in parts)

    lora_parts = (".lora_down.", ".lora_up.", "lora_A", "lora_B", ".lora.down.", ".hada_w1", ".lokr_w1")
    if has("lora_unet_", "lora_te") or contains(*lora_parts):
        return _classify_lora(shapes, metadata, has, contains)
    flow = _classify_flow(shapes, metadata, name)
    if flow is not None:
        return flow
    if has(UNET + "input_blocks."):
        return _classify_checkpoint(shapes, metadata, has)
    if has(UNET):  # newer architectures (Z-Image, Lumina, Wan, ...) share the prefix
        return _Guess("checkpoint", note=_unsupported("a model that is not SD 1.x, 2.x or SDXL"))
    if {"emb_params", "string_to_param", "clip_l", "clip_g"} & keys:
        return _classify_embedding(shapes)
    if has("text_model.encoder.", "encoder.block.", "model.embed_tokens.") and not has("encoder.conv_in."):
        return _Guess("text encoder", note=TEXT_ENCODER_NOTE)
    face = _face_restorer(keys)  # before the VAE: RestoreFormer has a VAE's encoder and decoder
    if face:
        return _Guess("face restorer", note=face)
    if has("encoder.conv_in.", "decoder.conv_in.") or (
        has("first_stage_model.") and not has("cond_stage_model.")
    ):
        return _Guess("vae", note="a VAE; its layout does not tell which family it was trained for")
    if has("control_model.", "controlnet_"):
        return _Guess("controlnet", note="a ControlNet (for control layers and `--control`)")
    if has("conv_in.", "down_blocks.", "time_embedding."):
        return _Guess(note="looks like one part of a diffusers model; add the whole diffusers folder")
    if _restorer_layout(shapes, has, contains):
        return _Guess("restorer", note="a restorer (denoise / de-JPEG model of scale 1)")
    if _upscaler_layout(keys, has, contains):
        return _Guess("upscaler", note="an upscaler (super-resolution model)")
    return _Guess(note="does not look like a Stable Diffusion checkpoint, LoRA, VAE or embedding")


FACE_RESTORERS = {  # spandrel's face restorers (purpose "FaceSR"): the key names it detects each by
    "GFPGAN": {"toRGB.0.weight", "stylegan_decoder.style_mlp.1.weight"},
    "CodeFormer": {"position_emb", "quantize.embedding.weight", "ft_layers.0.self_attn.in_proj_weight"},
    "RestoreFormer": {"quantize.embedding.weight", "encoder.conv_out.weight", "decoder.conv_out.weight"},
}
FACE_LICENCES = {"CodeFormer": "its architecture comes from spandrel-extra-arches under the S-Lab License 1.0, "
                               "for non-commercial use only"}


def _face_restorer(keys) -> str:
    """The note of a face restoration model (GFPGAN, CodeFormer, RestoreFormer), "" for any other file."""
    for architecture, names in FACE_RESTORERS.items():
        if names <= keys:
            licence = FACE_LICENCES.get(architecture)
            return f"a {architecture} face restorer (for fixing faces)" + (f"; {licence}" if licence else "")
    return ""


def _restorer_layout(shapes, has, contains) -> bool:
    """The key names of spandrel's scale-1 restorers: DnCNN, SCUNet / DRUNet / FBCNN (m_head ... m_tail), NAFNet,
    and a Real-ESRGAN Compact whose last convolution gives 3 channels (scale 1)."""
    keys = shapes.keys()
    if {"model.0.weight", "model.2.weight", "model.4.weight"} <= keys and not contains(".sub.", "RDB"):  # DnCNN
        return True
    if has("m_head.") and has("m_tail.") or {"intro.weight", "ending.weight"} <= keys:
        return True
    convolutions = sorted((int(k.split(".")[1]) for k in keys
                           if k.startswith("body.") and k.endswith(".weight") and k.split(".")[1].isdigit()))
    if convolutions and {"body.0.weight", "body.1.weight"} <= keys and not has("body.0.rdb1."):
        last = shapes.get(f"body.{convolutions[-1]}.weight")
        return bool(last) and last[0] == 3
    return False


def _upscaler_layout(keys, has, contains) -> bool:
    """The key names of the super-resolution models spandrel loads: ESRGAN (old and new layouts), Real-ESRGAN
    Compact, SwinIR / HAT / DAT / Swin2SR and the other transformer upscalers, SPAN, OmniSR."""
    if has("model.0.weight") and contains(".sub.", "RDB1"):  # ESRGAN, old layout
        return True
    if has("conv_first.") and (has("RRDB_trunk.", "body.0.rdb1.", "layers.0.") or has("conv_after_body.")):
        return True
    if {"body.0.weight", "body.1.weight"} <= keys and not has("body.0.rdb1."):  # Compact (SRVGG)
        return True
    return has("block_1.c1_r.", "residual_layer.", "upsampler.0.weight") and has("conv_first.", "conv_1.", "input.")


def _unsupported(what: str) -> str:
    return f"looks like {what}, which Sfumato does not support"


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


# ------------------------------------------------- flow-matching transformers
#
# Told apart by key structure, as diffusers' single_file_utils.infer_diffusers_model_type does (CHECKPOINT_KEY_NAMES
# "flux", "flux2", "sd3", "z-image-turbo") and its convert_*_to_diffusers functions name them, in the original
# layout (BFL's FLUX, Stability's MMDiT, Tongyi's Z-Image; bare, or under ComfyUI's "model.diffusion_model.") and
# in diffusers' layout (a ComfyUI diffusion_models file may hold either). A variant that only a width or a depth
# tells is set only for the real sizes, so the tiny test models (real names, tiny widths) get the family's "".

FLOW_FAMILIES = (Family.ZIMAGE, Family.FLUX2_KLEIN, Family.FLUX1, Family.SD3)
FLOW_PARTS = ("transformer", "text_encoders", "vae")
_SD3_DIFFUSERS = {"pos_embed.proj.weight", "context_embedder.weight"}  # beside transformer_blocks.N (not FLUX.1's)


def _classify_flow(shapes, metadata, name: str) -> _Guess | None:
    """The family and variant of a flow-matching transformer checkpoint; None when it is not one."""
    t = _transformer_tensors(shapes)

    def has(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in t)

    hints = _hints(metadata, name)
    controlnet = has("controlnet_", "control_layers.", "control_all_x_embedder.")  # Flux/SD3's, Z-Image's
    if controlnet and has("transformer_blocks.", "double_blocks.", "joint_blocks.", "layers."):
        return _Guess("controlnet", note=_unsupported("a ControlNet for a flow-matching model"))
    if has("single_stream_modulation.", "double_stream_modulation_img."):
        guess = _flux2(t, has, hints)
    elif has("double_blocks.", "single_blocks.") or has("single_transformer_blocks.") and has("time_text_embed."):
        guess = _flux1(t, has, hints)
    elif has("joint_blocks.") or has("transformer_blocks.") and _SD3_DIFFUSERS <= t.keys():
        guess = _sd3(t, has, hints)
    elif {"x_pad_token", "cap_pad_token"} <= t.keys() or has("all_x_embedder.") or "cap_embedder.1.weight" in t:
        guess = _zimage(t, hints)
    else:
        return None
    if guess.family is not Family.UNKNOWN and _parts(shapes.keys()) == {"transformer"}:
        guess.note = _join(guess.note, "the transformer only: its text encoders and VAE are separate files")
    return guess


def _transformer_tensors(shapes) -> dict:
    """The transformer's tensors without a ComfyUI checkpoint's prefix, its text encoders' and VAE's left out."""
    found = {}
    for key, shape in shapes.items():
        if key.startswith(UNET):
            found[key[len(UNET):]] = shape
        elif not key.startswith(TEXT_PREFIXES + VAE_PREFIXES):
            found.setdefault(key, shape)
    return found


def _parts(keys: Iterable[str]) -> set[str]:
    """What a flow-matching checkpoint holds, of FLOW_PARTS."""
    parts = set()
    for key in keys:
        parts.add("text_encoders" if key.startswith(TEXT_PREFIXES) else "vae" if key.startswith(VAE_PREFIXES)
                  else "transformer")
    return parts


def _hints(metadata, name: str) -> set[str]:
    """The words of a file's name and of its short descriptive metadata ("kontext", "base", "turbo", ...)."""
    texts = [v for k, v in metadata.items()
             if isinstance(v, str) and len(v) <= 200 and k.startswith(("modelspec.", "general."))]
    return set(re.split(r"[^a-z0-9]+", " ".join([name, *texts]).lower())) - {""}


def _width(t, *names: str, axis: int) -> int | None:
    """One axis of the first named 2-D tensor's shape (None when absent or unknown)."""
    shape = next((t[n] for n in names if t.get(n)), None)
    return shape[axis] if shape and len(shape) == 2 else None


def _flux1(t, has, hints) -> _Guess:
    if has("distilled_guidance_layer."):
        return _Guess("checkpoint", note=_unsupported("a Chroma model"))
    if has("txt_in.individual_token_refiner."):
        return _Guess("checkpoint", note=_unsupported("a HunyuanVideo model"))
    if not {"img_in.weight", "x_embedder.weight"} & t.keys():
        return _Guess("checkpoint", note=_unsupported("a Flux-like model that is not FLUX.1"))
    features = _width(t, "img_in.weight", "x_embedder.weight", axis=1)
    guess = _Guess("checkpoint", Family.FLUX1)
    if features == 128:  # diffusers' "flux-depth": FLUX.1 Depth and Canny take a control image's latents too
        return _Guess("checkpoint", note=_unsupported("FLUX.1 Depth or Canny [dev]"))
    if features == 384:  # 64 latent + 64 masked-image latent + 256 packed mask
        guess.variant, guess.inpaint = "fill", True
    elif not has("guidance_in.", "time_text_embed.guidance_embedder."):
        guess.variant = "schnell"
    else:  # Kontext has dev's layout: only its name or metadata tells
        guess.variant = "kontext" if "kontext" in hints else "dev"
    return guess


def _flux2(t, has, hints) -> _Guess:
    if has("guidance_in.", "time_guidance_embed.guidance_embedder."):
        return _Guess("checkpoint", note=_unsupported("FLUX.2 [dev]"))
    width = _width(t, "img_in.weight", "x_embedder.weight", axis=0)  # 3072 (24 heads) or 4096 (32 heads)
    size = {3072: "4b", 4096: "9b"}.get(width, "")
    variant = f"base-{size}" if size and "base" in hints else size  # the distilled model unless it says base
    return _Guess("checkpoint", Family.FLUX2_KLEIN, variant=variant)


def _sd3(t, has, hints) -> _Guess:
    blocks = {k.split(".")[1] for k in t if k.startswith(("joint_blocks.", "transformer_blocks."))}
    depth = sum(b.isdigit() for b in blocks)
    if any(".x_block.attn2." in k or k.startswith("transformer_blocks.") and ".attn2." in k for k in t):
        variant = "medium"  # MMDiT-X: 3.5 Medium's self-attention beside the joint attention
    elif depth == 38:  # 3.5 Large and Large Turbo (3.0 Medium has 24 blocks and no attn2)
        variant = "large-turbo" if "turbo" in hints else "large"
    else:
        variant = ""
    return _Guess("checkpoint", Family.SD3, variant=variant)


def _zimage(t, hints) -> _Guess:
    width = _width(t, "cap_embedder.1.weight", axis=0)
    if "x_pad_token" not in t and not any(k.startswith("all_x_embedder.") for k in t) and width != 3840:
        return _Guess("checkpoint", note=_unsupported("a Lumina Image 2.0 model"))  # Z-Image's ancestor, no pads
    return _Guess("checkpoint", Family.ZIMAGE, variant=_zimage_variant(hints))


def _zimage_variant(hints: set[str], official_base: bool = False) -> str:
    """Turbo only when its name says so, base when its name says so or it is the Hub's Tongyi-MAI/Z-Image (the base
    model's id, as ComfyUI's z_image_bf16 is its file); "" when nothing tells (a finetune of either)."""
    if "turbo" in hints:
        return "turbo"
    return "base" if "base" in hints or official_base else ""


def _identify_gguf(path: Path) -> _Guess:
    header = read_gguf_header(path)
    shapes = {k: t.shape for k, t in header.tensors.items()}
    texts = {k: v for k, v in header.metadata.items() if isinstance(v, str)}
    guess = _classify(shapes, texts, path.name)
    if guess.family in FLOW_FAMILIES:
        guess.note = _join(f"GGUF {header.quantisation}".strip(), guess.note)
    elif guess.kind == "unknown" and header.metadata.get("general.architecture") in GGUF_TEXT_ENCODERS:
        guess = _Guess("text encoder", note=_join(TEXT_ENCODER_NOTE, f"GGUF {header.quantisation}".strip()))
    elif guess.kind == "unknown" and "token_embd.weight" in shapes:
        guess.note = "a language model (perhaps a text encoder), not an image model"
    return guess


def flow_parts(path) -> set[str]:
    """What a flow-matching model file or folder holds, of "transformer", "text_encoders" and "vae": a ComfyUI
    checkpoint all three, a diffusion_models file or a GGUF the transformer only. Raises ModelFileError."""
    path = Path(path)
    if path.is_dir():
        index = _read_json(path, "model_index.json")
        names = {"transformer": ("transformer",), "text_encoders": ("text_encoder", "text_encoder_2"),
                 "vae": ("vae",)}
        return {part for part, keys in names.items()
                if any(isinstance(index.get(k), list) and any(index[k]) for k in keys)}
    if path.suffix.lower() == ".gguf":
        return _parts(read_gguf_header(path).tensors)
    return _parts(read_safetensors_header(path).tensors)


def _classify_checkpoint(shapes, metadata, has) -> _Guess:
    guess = _Guess("checkpoint", prediction=_prediction(shapes, metadata))
    if has("conditioner.embedders.1.model.") and has("conditioner.embedders.0.transformer."):
        guess.family = Family.SDXL  # CLIP ViT-L + OpenCLIP bigG
    elif has("conditioner.embedders.0.model.") and not has("conditioner.embedders.1."):
        guess.family = Family.SDXL_REFINER  # OpenCLIP bigG only
    elif has("cond_stage_model.model."):
        guess.family = Family.SD2  # OpenCLIP ViT-H
    elif has("cond_stage_model.transformer."):
        guess.family = Family.SD1  # CLIP ViT-L
    else:
        guess.note = "has a UNet but no text encoder Sfumato knows, so its family can't be told"
    if "edm_mean" in shapes:  # SDXL layout, but made for an EDM sampler
        guess.family, guess.note = Family.UNKNOWN, _unsupported("Playground v2.5")
    shape = shapes.get(CONV_IN)
    channels = shape[1] if shape and len(shape) == 4 else None
    guess.inpaint = channels == 9  # 4 latent + 4 masked-image latent + 1 mask
    if channels not in (None, 4, 9):
        what = {8: "an instruct-pix2pix model", 7: "an upscaler", 5: "a depth-to-image model"}
        guess.family = Family.UNKNOWN
        guess.note = _unsupported(f"{what.get(channels, 'an unusual model')} ({channels} input channels)")
    return guess


def _prediction(shapes, metadata) -> str | None:
    if "v_pred" in shapes:  # a marker tensor some v-prediction checkpoints carry
        return "v_prediction"
    spec = metadata.get("modelspec.prediction_type", "").lower()
    if spec in ("v", "v_prediction"):
        return "v_prediction"
    if spec in ("epsilon", "eps"):
        return "epsilon"
    if metadata.get("modelspec.architecture", "").endswith("-768-v"):
        return "v_prediction"
    return None


def _classify_lora(shapes, metadata, has, contains) -> _Guess:
    guess = _Guess("lora")
    base = " ".join(metadata.get(k, "") for k in ("ss_base_model_version", "modelspec.architecture")).lower()
    width = next(
        (s[1] for k, s in shapes.items()
         if s and len(s) == 2 and "attn2" in k and "to_k" in k and ("lora_down" in k or "lora_A" in k)),
        None,
    )  # fmt: skip
    flow = _flow_lora_family(shapes.keys(), base)
    if flow is not None:
        guess.family = flow
    elif "flux" in base or contains("double_blocks"):
        guess.note = _unsupported("a LoRA for Flux")
    elif "refiner" in base:
        guess.family = Family.SDXL_REFINER
    elif "sdxl" in base or "stable-diffusion-xl" in base:
        guess.family = Family.SDXL
    elif "sd_v2" in base or "stable-diffusion-v2" in base or metadata.get("ss_v2") == "True":
        guess.family = Family.SD2
    elif "sd_v1" in base or "stable-diffusion-v1" in base:
        guess.family = Family.SD1
    elif has("lora_te1_", "lora_te2_", "lora_unet_input_blocks_", "lora_unet_output_blocks_",
             "lora_unet_middle_block_", "text_encoder_2."):
        guess.family = Family.SDXL  # kohya names SDXL blocks in the original (SGM) layout
    elif width in (768, 1024):  # cross-attention context width: real sizes only
        guess.family = Family.SD1 if width == 768 else Family.SD2
    else:
        guess.note = "the LoRA does not say which model family it was trained for"
    return guess


# Layer names only one flow-matching family has, in any layout (kohya's '_' or diffusers' '.'), as
# desktop/engine/flow_lora.py converts them: Z-Image's refiners and feed-forward, FLUX.2's fused single-block
# projection and shared modulation, SD 3.5's joint blocks (and, below, its second attention), FLUX.1's per-block
# modulation and (below) its single blocks' own attention layers. FLUX.1, FLUX.2 and SD 3.5 name their double
# blocks alike in diffusers' layout: a LoRA of only those, without metadata, does not tell.
_FLOW_LORA_MARKERS = (
    (Family.ZIMAGE, ("noise_refiner", "context_refiner", "_attention_to_", "_attention_qkv", "feed_forward_w",
                     "adaln_modulation")),
    (Family.FLUX2_KLEIN, ("to_qkv_mlp_proj", "stream_modulation", "_ff_linear_in", "_ff_context_linear_in")),
    (Family.SD3, ("joint_blocks", "context_block")),
    (Family.FLUX1, ("_img_mod_lin", "_txt_mod_lin", "_modulation_lin", "_proj_mlp")),
)
_SD_LORA_MARKERS = ("down_blocks", "up_blocks", "mid_block", "input_blocks", "output_blocks", "middle_block")


def _flow_lora_family(keys: Iterable[str], base: str) -> Family | None:
    """The flow-matching family a LoRA is for, from its metadata's base model or its layer names; None when
    it is an SD LoRA or does not tell."""
    if "klein" in base or "flux-2" in base or "flux2" in base or "flux.2" in base:
        return Family.FLUX2_KLEIN
    if "flux" in base:
        return Family.FLUX1
    if "sd3" in base or "stable-diffusion-3" in base or "stable-diffusion-v3" in base:
        return Family.SD3
    if "z-image" in base or "zimage" in base or "z_image" in base:
        return Family.ZIMAGE
    names = [k.replace(".", "_").lower() for k in keys]
    if any(m in n for n in names for m in _SD_LORA_MARKERS):
        return None
    if any("_attn2_" in n and "transformer_blocks" in n for n in names) and not any("single_" in n for n in names):
        return Family.SD3  # SD 3.5 Medium's blocks have a second self-attention; FLUX's have none
    for family, markers in _FLOW_LORA_MARKERS:
        if any(m in n for n in names for m in markers):
            return family
    flux1_single = ("_attn_to_q_", "_attn_to_k_", "_attn_to_v_", "_proj_out_", "_norm_linear_")
    if any("single_transformer_blocks" in n and any(m in n for m in flux1_single) for n in names):
        return Family.FLUX1  # FLUX.2's single blocks have one fused projection and a shared modulation
    return None


def _classify_embedding(shapes) -> _Guess:
    if "clip_g" in shapes:
        return _Guess("embedding", Family.SDXL)
    shape = shapes.get("emb_params") or shapes.get("string_to_param")
    width = shape[-1] if shape else None
    family = {768: Family.SD1, 1024: Family.SD2}.get(width, Family.UNKNOWN)
    note = "" if family is not Family.UNKNOWN else "the embedding's width does not tell its model family"
    return _Guess("embedding", family, note=note)


def _identify_pickle(path: Path) -> _Guess:
    """Family of a pickle checkpoint from the strings in its pickle, never unpickling it."""
    try:
        with open_regular(path) as f:
            head = f.read(64)
            f.seek(0)
            if zipfile.is_zipfile(f):
                with zipfile.ZipFile(f) as z:
                    member = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                    if member is None:
                        raise ModelFileError(path, "it is a ZIP archive but not a PyTorch checkpoint.")
                    with z.open(member) as pkl:
                        data = pkl.read(MAX_PICKLE_BYTES)
            elif head[:1] == b"\x80":
                f.seek(0)
                data = f.read(MAX_PICKLE_BYTES)
            else:
                sniffed = sniff(head)
                what = f"it is actually {sniffed[0]}" if sniffed else "it is not a PyTorch checkpoint"
                raise ModelFileError(path, f"{what}. Download it again.")
    except (OSError, zipfile.BadZipFile) as e:
        raise ModelFileError(path, f"it could not be read ({e}).") from e

    strings = _pickle_strings(data)
    if not strings:
        return _Guess(note="its pickle could not be read, so its family is unknown")
    guess = _classify(dict.fromkeys(strings), {})
    if guess.kind == "checkpoint" and guess.family is not Family.UNKNOWN:
        # Shapes are not known without unpickling, so the 9-channel inpaint UNet
        # can't be seen: the file name is the only hint.
        guess.inpaint = "inpaint" in path.name.lower()
        if guess.inpaint:
            guess.note = "inpainting guessed from the file name"
    return guess


def _pickle_strings(data: bytes) -> set[str]:
    """Every text string in the pickle(s) in data. genops parses, it executes nothing.

    Legacy (non-zip) torch files hold several pickles in a row, so keep going
    after each STOP. A truncated or damaged pickle keeps what was found so far.
    """
    strings: set[str] = set()
    stream = io.BytesIO(data)
    for _ in range(8):
        start = stream.tell()
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                if isinstance(arg, str) and ("UNICODE" in opcode.name or "STRING" in opcode.name):
                    strings.add(arg)
        except Exception:  # noqa: BLE001 - any parse error just ends the scan
            break
        if stream.tell() in (start, len(data)):
            break
    return strings


def _identify_diffusers(folder: Path) -> ModelInfo:
    index = _read_json(folder, "model_index.json")
    cls = str(index.get("_class_name", ""))
    if cls in FLOW_PIPELINES:
        family, variant, inpaint = _identify_flow_folder(folder, cls, index)
        return ModelInfo(folder, "diffusers", "checkpoint", family, inpaint, _folder_size(folder), variant=variant)
    try:
        unet = _read_json(folder, "unet/config.json")
    except ModelFileError:
        if cls in SD_PIPELINES | SDXL_PIPELINES:
            raise
        unet = {}  # a transformer pipeline Sfumato does not know (FLUX.2 [dev], PixArt, ...): said below
    try:
        scheduler = _read_json(folder, "scheduler/scheduler_config.json")
    except ModelFileError:
        scheduler = {}
    channels = unet.get("in_channels", 4)
    family, note = Family.UNKNOWN, ""
    if cls in SDXL_PIPELINES:
        text_encoder = index.get("text_encoder")  # [null, null] in a refiner
        has_text_encoder = isinstance(text_encoder, list) and any(text_encoder)
        family = Family.SDXL if has_text_encoder else Family.SDXL_REFINER
    elif cls in SD_PIPELINES:
        # OpenCLIP ViT-H is 1024 wide; anything else (CLIP ViT-L, tiny test models) is SD1.
        family = Family.SD2 if unet.get("cross_attention_dim") == 1024 else Family.SD1
    else:
        note = f"is a {cls or 'diffusers'} model, which Sfumato does not support"
    if channels not in (4, 9) and family is not Family.UNKNOWN:
        family, note = Family.UNKNOWN, f"has an unusual UNet with {channels} input channels"
    if family is not Family.UNKNOWN:
        _check_parts(folder, cls, family, index, unet)
    # LCM and TCD distillations ship their own scheduler (SimianLuo/LCM_Dreamshaper_v7's is an LCMScheduler)
    few_step = {"LCMScheduler": fewstep.LCM, "TCDScheduler": fewstep.TCD}.get(str(scheduler.get("_class_name")), "")
    embedded = unet.get("time_cond_proj_dim") is not None  # a full LCM checkpoint's guidance embedding
    few_step = few_step or _few_step(folder, _Guess("checkpoint", family), {}) or (fewstep.LCM if embedded else "")
    return ModelInfo(folder, "diffusers", "checkpoint", family, channels == 9, _folder_size(folder), note,
                     scheduler.get("prediction_type"), few_step=few_step, guidance_embedded=embedded)


def _folder_size(folder: Path) -> int:
    """The bytes of a diffusers folder's files; refuses a folder holding a named pipe or a device."""
    size = 0
    for part in folder.rglob("*"):
        if part.is_file():
            size += part.stat().st_size
        elif part.exists() and not part.is_dir():  # a named pipe or device would hang the loader
            raise ModelFileError(folder, f"its {part.relative_to(folder).as_posix()} is not a regular file "
                                         "(a named pipe or a device), so Sfumato does not load it.")
    return size


def _tasks(*names: str) -> set[str]:
    return {name.format(task) for name in names for task in ("", "Img2Img", "Inpaint")}


FLOW_PIPELINES = {
    **dict.fromkeys(_tasks("ZImage{}Pipeline"), Family.ZIMAGE),
    **dict.fromkeys(("Flux2KleinPipeline", "Flux2KleinInpaintPipeline"), Family.FLUX2_KLEIN),
    **dict.fromkeys(_tasks("Flux{}Pipeline") | {"FluxFillPipeline", "FluxKontextPipeline",
                                                 "FluxKontextInpaintPipeline"}, Family.FLUX1),
    **dict.fromkeys(_tasks("StableDiffusion3{}Pipeline"), Family.SD3),
}
# The transformer each family's pipeline takes, and the text encoder whose width its text input has:
# (transformer class, its config key, text encoder folder, that config's key, how many of its layers are stacked).
FLOW_TRANSFORMERS = {
    Family.ZIMAGE: ("ZImageTransformer2DModel", "cap_feat_dim", "text_encoder", "hidden_size", 1),
    Family.FLUX2_KLEIN: ("Flux2Transformer2DModel", "joint_attention_dim", "text_encoder", "hidden_size", 3),
    Family.FLUX1: ("FluxTransformer2DModel", "joint_attention_dim", "text_encoder_2", "d_model", 1),
    Family.SD3: ("SD3Transformer2DModel", "joint_attention_dim", "text_encoder_3", "d_model", 1),
}
# The VAE each family's transformer works in: (class, latent channels).
FLOW_VAES = {Family.ZIMAGE: ("AutoencoderKL", 16), Family.FLUX2_KLEIN: ("AutoencoderKLFlux2", 32),
             Family.FLUX1: ("AutoencoderKL", 16), Family.SD3: ("AutoencoderKL", 16)}
FLOW_NAMES = {Family.ZIMAGE: "a Z-Image", Family.FLUX2_KLEIN: "a FLUX.2 [klein]", Family.FLUX1: "a FLUX.1",
              Family.SD3: "a Stable Diffusion 3"}


def _identify_flow_folder(folder: Path, cls: str, index: dict) -> tuple[Family, str, bool]:
    """(family, variant, inpaint) of a flow-matching diffusers folder, from model_index.json and the transformer's
    config; a folder whose transformer does not fit its pipeline is refused with a sentence, as _check_parts does."""
    family = FLOW_PIPELINES[cls]
    expected, key, encoder, encoder_key, layers = FLOW_TRANSFORMERS[family]
    start = f"its model_index.json names {cls}, {FLOW_NAMES[family]} pipeline, but"
    try:
        transformer = _read_json(folder, "transformer/config.json")
    except ModelFileError as e:
        raise ModelFileError(folder, f"{start} {e.reason.rstrip('.')}. Download the model again.") from None
    problem = ""
    found = transformer.get("_class_name")
    width, text = transformer.get(key), _config_int(folder, encoder, encoder_key)
    if found not in (None, expected):
        problem = f"its transformer is a {found}, not the {expected} it needs"
    elif isinstance(width, int) and text is not None and width != text * layers:
        problem = f"its transformer takes text features {width} wide but its {encoder} gives {text * layers}"
    else:
        problem = _flow_vae_problem(folder, family)
    if problem:
        raise ModelFileError(folder, f"{start} {problem}: its parts come from different models. "
                                     "Download the model again.")
    hints = _hints({}, " ".join([folder.name, *(p for p in folder.parts if p.startswith("models--"))]))
    channels = transformer.get("in_channels")
    if family is Family.FLUX1:
        if cls == "FluxFillPipeline" or channels == 384:
            return family, "fill", True
        if cls.startswith("FluxKontext"):
            return family, "kontext", False
        return family, "dev" if transformer.get("guidance_embeds") else "schnell", False
    if family is Family.SD3:
        if transformer.get("dual_attention_layers"):
            return family, "medium", False
        if transformer.get("num_layers") == 38:
            return family, "large-turbo" if "turbo" in hints else "large", False
        return family, "", False
    if family is Family.FLUX2_KLEIN:
        heads, head = transformer.get("num_attention_heads"), transformer.get("attention_head_dim")
        size = {3072: "4b", 4096: "9b"}.get(heads * head if isinstance(heads, int) and isinstance(head, int) else 0, "")
        distilled = index.get("is_distilled")
        base = distilled is False or distilled is None and "base" in hints
        return family, f"base-{size}" if size and base else size, False
    official = any(part.lower() == "models--tongyi-mai--z-image" for part in folder.parts)
    return family, _zimage_variant(hints, official), False


def _flow_vae_problem(folder: Path, family: Family) -> str:
    """What is wrong with a flow folder's VAE for its family (another family's: SD's 4 latent channels, FLUX.1's 16
    where klein needs FLUX.2's 32); "" when it fits or its config does not say."""
    expected, channels = FLOW_VAES[family]
    try:
        vae = _read_json(folder, "vae/config.json")
    except ModelFileError:
        return ""  # a missing part is the loader's to report
    found, latent = vae.get("_class_name"), vae.get("latent_channels")
    if found not in (None, expected):
        return f"its VAE is {found}, not the {expected} it needs"
    if isinstance(latent, int) and latent != channels:
        return f"its VAE has {latent} latent channels, not the {channels} it needs"
    return ""


def _config_int(folder: Path, name: str, key: str) -> int | None:
    """An integer of a part's config.json (None when it can't be read)."""
    try:
        value = _read_json(folder, f"{name}/config.json").get(key)
    except ModelFileError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_parts(folder: Path, cls: str, family: Family, index: dict, unet: dict) -> None:
    """Refuse a folder whose parts do not fit the pipeline its model_index.json names.

    diffusers loads an SDXL pipeline without its second text encoder (a refiner has
    none of the first), so SD 1.x parts under an SDXL name load, then fail at the
    first prompt. Only what the folder says is compared; a part it omits is the
    loader's to report.
    """
    xl = family in (Family.SDXL, Family.SDXL_REFINER)
    problem = ""
    listed = [name for name in ("text_encoder", "text_encoder_2")
              if isinstance(index.get(name), list) and any(index[name])]
    missing = [name for name in ("text_encoder_2", "tokenizer_2")
               if not (isinstance(index.get(name), list) and any(index[name]))]
    if xl and missing:
        problem = f"it has no {' or '.join(missing)}, which SDXL needs"
    elif xl and unet.get("addition_embed_type") != "text_time":
        problem = "its UNet is not an SDXL UNet"
    elif not xl and unet.get("addition_embed_type") is not None:
        problem = "its UNet is an SDXL UNet"
    elif not xl and "text_encoder_2" in listed:
        problem = "it has a second text encoder, which only SDXL has"
    else:
        widths = [_text_width(folder, name) for name in listed]
        cross = unet.get("cross_attention_dim")
        if listed and None not in widths and isinstance(cross, int) and cross != sum(widths):
            problem = (f"its UNet takes text features {cross} wide but its text encoder"
                       f"{'s give' if len(widths) > 1 else ' gives'} {sum(widths)}")
    if problem:
        what = "an SDXL" if xl else "a Stable Diffusion 1.x/2.x"
        raise ModelFileError(folder, f"its model_index.json names {cls}, {what} pipeline, but {problem}: "
                                     "its parts come from different models. Download the model again.")


def _text_width(folder: Path, name: str) -> int | None:
    """The width of a text encoder's output, from its config (None when it can't be read)."""
    try:
        width = _read_json(folder, f"{name}/config.json").get("hidden_size")
    except ModelFileError:
        return None
    return width if isinstance(width, int) else None


def _read_json(folder: Path, name: str) -> dict:
    try:
        with open_regular(folder / name) as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ValueError("it is too large to be a config file")
        value = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ModelFileError(folder, f"it has no {name}.") from None
    except ModelFileError as e:
        raise ModelFileError(folder, f"its {name} {e.reason.removeprefix('it ')}") from None
    except RecursionError:
        raise ModelFileError(folder, f"its {name} is nested too deeply to be a config file.") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelFileError(folder, f"its {name} could not be read ({e}).") from e
    if not isinstance(value, dict):
        raise ModelFileError(folder, f"its {name} is not a JSON object.")
    return value


def sidecar_config(path) -> Path | None:
    """The diffusers config folder beside a single-file checkpoint (x/name.config)."""
    path = Path(path)
    config = path.with_name(path.stem + ".config")
    return config if (config / "model_index.json").is_file() else None


# ------------------------------------------------------------------- scanning


def scan(folders: Iterable[Path]) -> list[ModelInfo]:
    """Every model under the folders. Never raises for a bad file: it is listed
    with kind "unknown" and the reason in its note."""
    found: dict[Path, Path] = {}  # resolved -> as found, so links keep their names
    for folder in folders:
        folder = Path(folder)
        if (folder / "model_index.json").is_file():
            found.setdefault(folder.resolve(), folder)
        else:
            _walk(folder, SCAN_DEPTH, found)
    models = [identify_or_explain(p) for p in found.values()]
    return sorted(models, key=lambda m: (m.name.lower(), str(m.path)))


def _walk(folder: Path, depth: int, found: dict[Path, Path]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir:
            if entry.name.endswith(".config"):
                continue
            if (path / "model_index.json").is_file():
                found.setdefault(path.resolve(), path)
            elif depth > 0:
                _walk(path, depth - 1, found)
        elif path.suffix.lower() in MODEL_SUFFIXES and _is_regular(entry):
            found.setdefault(path.resolve(), path)


def _is_regular(entry: os.DirEntry) -> bool:
    """A regular file (through links): pipes and devices are never read, so never listed."""
    try:
        return entry.is_file()
    except OSError:
        return False


def identify_or_explain(path: Path) -> ModelInfo:
    try:
        return identify(path)
    except Exception as e:  # noqa: BLE001 - one bad file must not break a scan
        if not isinstance(e, ModelFileError):
            log.warning("could not identify %s", path, exc_info=True)
        try:
            size = path.stat().st_size if path.is_file() else 0
        except OSError:
            size = 0
        if path.is_dir():
            fmt = "diffusers"
        else:
            suffix = path.suffix.lower()
            fmt = "ckpt" if suffix in PICKLE_SUFFIXES else "gguf" if suffix == ".gguf" else "safetensors"
        return ModelInfo(path, fmt, "unknown", Family.UNKNOWN, size_bytes=size, note=str(e))


# -------------------------------------------------------------------- hashing


def model_hash(path, *, cache: MutableMapping[str, str] | str | os.PathLike | None = None) -> str:
    """AUTOMATIC1111's "Model hash" (AutoV2): the first 10 hex digits of the file's sha256.

    ``cache`` is a dict-like or a JSON file path; it stores the full sha256 under
    (resolved path, size, mtime_ns), so a file is hashed once until it changes.
    For a diffusers folder the UNet weights file is hashed.
    """
    path = Path(path)
    target = _unet_weights(path) if path.is_dir() else path
    try:
        st = target.stat()
    except OSError as e:
        raise ModelFileError(path, f"it could not be read ({e.strerror or e}).") from e
    key = f"{target.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    file = Path(cache) if isinstance(cache, (str, os.PathLike)) else None
    store = _load_cache(file) if file is not None else cache
    if store is not None and isinstance(store.get(key), str):
        return store[key][:10]
    digest = _sha256_file(target)
    if store is not None:
        store[key] = digest
        if file is not None:
            _save_cache(file, store)
    return digest[:10]


def known_hash(path, cache: Mapping[str, str] | str | os.PathLike) -> str:
    """`model_hash`'s answer when the cache (the file, or its contents as hash_cache read them) holds it for the file
    as it is now, else "" (nothing is hashed)."""
    path = Path(path)
    try:
        target = _unet_weights(path) if path.is_dir() else path
        st = target.stat()
        key = f"{target.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    except (OSError, ModelFileError):
        return ""
    value = (cache if isinstance(cache, Mapping) else _load_cache(Path(cache))).get(key)
    return value[:10] if isinstance(value, str) else ""


def hash_cache(file: str | os.PathLike) -> dict[str, str]:
    """The hash cache file's contents, read once for many known_hash lookups."""
    return _load_cache(Path(file))


def _sha256_file(path: Path, chunk: int = 2**20) -> str:
    sha = hashlib.sha256()
    with open_regular(path) as f:
        while block := f.read(chunk):
            sha.update(block)
    return sha.hexdigest()


def _unet_weights(folder: Path) -> Path:
    names = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
             "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")
    for name in names:
        if (folder / "unet" / name).is_file():
            return folder / "unet" / name
    raise ModelFileError(folder, "it has no UNet weights to hash.")


def _load_cache(file: Path) -> dict[str, str]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _save_cache(file: Path, data: Mapping[str, str]) -> None:
    try:
        atomic.write_json(file, dict(data))
    except OSError:
        log.warning("could not write the model hash cache %s", file, exc_info=True)
