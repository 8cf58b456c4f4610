"""Telling the flow-matching families (FLUX.1, FLUX.2 klein, SD3.x, Z-Image) and their variants apart from
safetensors headers, GGUF headers and diffusers folders, without reading a tensor."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from desktop.core import families, model_sources
from desktop.core.modelfiles import Family, ModelFileError, flow_parts, identify, identify_or_explain, scan

SIZES = {"F16": 2, "BF16": 2, "F32": 4, "F8_E4M3": 1, "F8_E5M2": 1}


def write_safetensors(path: Path, tensors: dict, metadata: dict | None = None, dtype: str = "F16") -> Path:
    """tensors: name -> shape; the data is zeros (a 0 in a shape keeps a real width without its bytes)."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        n = SIZES[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    return path


def prefixed(tensors: dict, prefix: str = "model.diffusion_model.") -> dict:
    return {prefix + k: s for k, s in tensors.items()}


# Tiny shapes with the real key names (diffusers' CHECKPOINT_KEY_NAMES and convert_*_to_diffusers); a width that
# tells a variant has its real size.
FLUX1_SCHNELL = {
    "img_in.weight": (8, 64),
    "txt_in.weight": (8, 16),
    "time_in.in_layer.weight": (8, 256),
    "vector_in.in_layer.weight": (8, 12),
    "double_blocks.0.img_attn.qkv.weight": (24, 8),
    "double_blocks.0.img_attn.norm.key_norm.scale": (4,),
    "double_blocks.0.img_mod.lin.weight": (48, 8),
    "single_blocks.0.linear1.weight": (56, 8),
    "single_blocks.0.modulation.lin.weight": (24, 8),
    "final_layer.linear.weight": (64, 8),
}
FLUX1_DEV = {**FLUX1_SCHNELL, "guidance_in.in_layer.weight": (8, 256), "guidance_in.in_layer.bias": (8,)}
FLUX1_FILL = {**FLUX1_DEV, "img_in.weight": (8, 384)}
FLUX1_DIFFUSERS_SCHNELL = {
    "x_embedder.weight": (8, 64),
    "context_embedder.weight": (8, 16),
    "time_text_embed.timestep_embedder.linear_1.weight": (8, 256),
    "transformer_blocks.0.attn.to_q.weight": (8, 8),
    "transformer_blocks.0.norm1.linear.weight": (48, 8),
    "single_transformer_blocks.0.proj_mlp.weight": (32, 8),
    "proj_out.weight": (64, 8),
}
FLUX1_DIFFUSERS_DEV = {**FLUX1_DIFFUSERS_SCHNELL, "time_text_embed.guidance_embedder.linear_1.weight": (8, 256)}
COMFY_FLUX_EXTRAS = {  # a ComfyUI full checkpoint: its text encoders and VAE beside the transformer
    "text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight": (77, 8),
    "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.k.weight": (8, 8),
    "vae.encoder.conv_in.weight": (8, 3, 3, 3),
}

KLEIN = {
    "img_in.weight": (8, 128),
    "txt_in.weight": (8, 24),
    "time_in.in_layer.weight": (8, 256),
    "double_stream_modulation_img.lin.weight": (48, 8),
    "double_stream_modulation_txt.lin.weight": (48, 8),
    "single_stream_modulation.lin.weight": (24, 8),
    "double_blocks.0.img_attn.qkv.weight": (24, 8),
    "single_blocks.0.linear1.weight": (56, 8),
    "final_layer.linear.weight": (128, 8),
}
KLEIN_4B = {**KLEIN, "img_in.weight": (3072, 0)}  # 24 heads of 128
KLEIN_9B = {**KLEIN, "img_in.weight": (4096, 0)}  # 32 heads of 128
FLUX2_DEV = {**KLEIN, "guidance_in.in_layer.weight": (8, 256)}

SD3_BLOCK = {"x_block.attn.qkv.weight": (24, 8), "context_block.adaLN_modulation.1.bias": (48,),
             "x_block.mlp.fc1.weight": (32, 8)}
SD3_BASE = {"x_embedder.proj.weight": (8, 16, 2, 2), "pos_embed": (1, 64, 8), "context_embedder.weight": (8, 16),
            "t_embedder.mlp.0.weight": (8, 256), "y_embedder.mlp.0.weight": (8, 12),
            "final_layer.linear.weight": (64, 8)}


def sd3(depth: int, attn2: bool = False) -> dict:
    blocks = {f"joint_blocks.{i}.{k}": s for i in range(depth) for k, s in SD3_BLOCK.items()}
    if attn2:
        blocks["joint_blocks.0.x_block.attn2.qkv.weight"] = (24, 8)
    return {**SD3_BASE, **blocks}


SD3_TEXT = {
    "text_encoders.clip_g.transformer.text_model.embeddings.position_embedding.weight": (77, 8),
    "text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight": (77, 8),
    "text_encoders.t5xxl.transformer.encoder.block.0.layer.0.SelfAttention.k.weight": (8, 8),
    "first_stage_model.decoder.conv_in.weight": (8, 16, 3, 3),
}
SD3_DIFFUSERS = {"pos_embed.proj.weight": (8, 16, 2, 2), "context_embedder.weight": (8, 16),
                 "time_text_embed.timestep_embedder.linear_1.weight": (8, 256),
                 "transformer_blocks.0.attn.to_q.weight": (8, 8), "transformer_blocks.0.attn2.to_q.weight": (8, 8),
                 "proj_out.weight": (64, 8)}

ZIMAGE = {
    "x_pad_token": (1, 8),
    "cap_pad_token": (1, 8),
    "x_embedder.weight": (8, 64),
    "cap_embedder.0.weight": (16,),
    "cap_embedder.1.weight": (8, 16),
    "t_embedder.mlp.0.weight": (8, 256),
    "layers.0.attention.qkv.weight": (24, 8),
    "layers.0.adaLN_modulation.0.weight": (32, 8),
    "noise_refiner.0.attention.qkv.weight": (24, 8),
    "context_refiner.0.attention.qkv.weight": (24, 8),
    "final_layer.linear.weight": (64, 8),
}
ZIMAGE_DIFFUSERS = {"all_x_embedder.2-1.weight": (8, 64), "layers.0.attention.to_q.weight": (8, 8),
                    "cap_embedder.1.weight": (8, 16), "x_pad_token": (1, 8), "cap_pad_token": (1, 8)}
LUMINA2 = {k: s for k, s in ZIMAGE.items() if "pad_token" not in k} | {"cap_embedder.1.weight": (2304, 0)}


@pytest.mark.parametrize(
    "name, tensors, family, variant, inpaint",
    [
        ("flux1-dev", FLUX1_DEV, Family.FLUX1, "dev", False),
        ("flux1-schnell", FLUX1_SCHNELL, Family.FLUX1, "schnell", False),
        ("flux1-fill-dev", FLUX1_FILL, Family.FLUX1, "fill", True),
        ("flux1-kontext-dev", FLUX1_DEV, Family.FLUX1, "kontext", False),
        ("my-flux", prefixed(FLUX1_DEV) | COMFY_FLUX_EXTRAS, Family.FLUX1, "dev", False),
        ("my-flux", prefixed(FLUX1_SCHNELL) | COMFY_FLUX_EXTRAS, Family.FLUX1, "schnell", False),
        ("transformer", FLUX1_DIFFUSERS_DEV, Family.FLUX1, "dev", False),
        ("transformer", FLUX1_DIFFUSERS_SCHNELL, Family.FLUX1, "schnell", False),
        ("flux-2-klein-4b", KLEIN_4B, Family.FLUX2_KLEIN, "4b", False),
        ("flux-2-klein-9b", prefixed(KLEIN_9B), Family.FLUX2_KLEIN, "9b", False),
        ("flux-2-klein-base-4b", KLEIN_4B, Family.FLUX2_KLEIN, "base-4b", False),
        ("flux-2-klein-base-9b", KLEIN_9B, Family.FLUX2_KLEIN, "base-9b", False),
        ("tiny-klein", KLEIN, Family.FLUX2_KLEIN, "", False),  # tiny widths: the family's default
        ("sd3.5_medium", sd3(4, attn2=True), Family.SD3, "medium", False),
        ("sd3.5_medium_incl_clips", prefixed(sd3(4, attn2=True)) | SD3_TEXT, Family.SD3, "medium", False),
        ("sd3.5_large", prefixed(sd3(38)) | SD3_TEXT, Family.SD3, "large", False),
        ("sd3.5_large_turbo", sd3(38), Family.SD3, "large-turbo", False),
        ("sd3_medium", sd3(24), Family.SD3, "", False),  # SD 3.0 Medium: neither 3.5 Medium nor Large
        ("transformer", SD3_DIFFUSERS, Family.SD3, "medium", False),
        ("z_image_turbo_bf16", ZIMAGE, Family.ZIMAGE, "turbo", False),
        ("z_image_bf16", ZIMAGE, Family.ZIMAGE, "", False),  # ComfyUI's file of the base model: turbo not named
        ("z-image", prefixed(ZIMAGE), Family.ZIMAGE, "", False),
        ("z_image_base", ZIMAGE, Family.ZIMAGE, "base", False),
        ("transformer", ZIMAGE_DIFFUSERS, Family.ZIMAGE, "", False),
    ],
)
def test_flow_checkpoints_give_family_and_variant(tmp_path, name, tensors, family, variant, inpaint):
    info = identify(write_safetensors(tmp_path / f"{name}.safetensors", tensors))
    assert (info.format, info.kind, info.family, info.variant, info.inpaint) == (
        "safetensors", "checkpoint", family, variant, inpaint)


def test_a_variant_the_layout_cannot_tell_comes_from_the_metadata(tmp_path):
    kontext = write_safetensors(tmp_path / "a.safetensors", FLUX1_DEV, {"modelspec.title": "FLUX.1 Kontext [dev]"})
    turbo = write_safetensors(tmp_path / "b.safetensors", sd3(38), {"modelspec.architecture": "sd3.5-large-turbo"})
    base = write_safetensors(tmp_path / "c.safetensors", ZIMAGE, {"modelspec.title": "Z-Image Base"})
    assert [identify(p).variant for p in (kontext, turbo, base)] == ["kontext", "large-turbo", "base"]


@pytest.mark.parametrize(
    "tensors, words",
    [
        (FLUX2_DEV, "FLUX.2 [dev], which Sfumato does not support"),
        ({**FLUX1_DEV, "img_in.weight": (8, 128)}, "FLUX.1 Depth or Canny [dev]"),
        ({**FLUX1_SCHNELL, "distilled_guidance_layer.in_proj.bias": (8,)}, "Chroma"),
        (LUMINA2, "Lumina Image 2.0"),
    ],
)
def test_relatives_the_flow_families_do_not_cover_say_what_they_are(tmp_path, tensors, words):
    info = identify(write_safetensors(tmp_path / "odd.safetensors", tensors))
    assert info.family is Family.UNKNOWN and words in info.note
    assert model_sources.problem_of(info) == info.note


@pytest.mark.parametrize(
    "tensors",
    [
        {**FLUX1_DIFFUSERS_DEV, "controlnet_blocks.0.weight": (8, 8), "controlnet_x_embedder.weight": (8, 64)},
        {**SD3_DIFFUSERS, "controlnet_blocks.0.weight": (8, 8)},
        {**ZIMAGE, "control_all_x_embedder.2-1.weight": (8, 64), "control_layers.0.attention.qkv.weight": (24, 8)},
    ],
)
def test_flow_controlnets_are_not_taken_for_models(tmp_path, tensors):
    info = identify(write_safetensors(tmp_path / "controlnet.safetensors", tensors))
    assert (info.kind, info.family) == ("controlnet", Family.UNKNOWN)
    assert "ControlNet for a flow-matching model" in info.note


def test_what_a_file_holds(tmp_path):
    full = write_safetensors(tmp_path / "full.safetensors", prefixed(FLUX1_DEV) | COMFY_FLUX_EXTRAS)
    bare = write_safetensors(tmp_path / "bare.safetensors", FLUX1_DEV)
    assert flow_parts(full) == {"transformer", "text_encoders", "vae"}
    assert flow_parts(bare) == {"transformer"}
    assert "transformer only" in identify(bare).note
    assert "transformer only" not in identify(full).note
    assert flow_parts(write_safetensors(tmp_path / "sd3.safetensors", prefixed(sd3(2)) | SD3_TEXT)) == {
        "transformer", "text_encoders", "vae"}


@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2"])
def test_fp8_files_are_identified_and_say_fp8(tmp_path, dtype):
    info = identify(write_safetensors(tmp_path / "flux1-dev-fp8.safetensors", FLUX1_DEV, dtype=dtype))
    assert (info.family, info.variant) == (Family.FLUX1, "dev")
    assert "fp8" in info.note


@pytest.mark.parametrize(
    "name, tensors",
    [
        ("clip_l", {"text_model.encoder.layers.0.self_attn.q_proj.weight": (8, 8),
                    "text_model.embeddings.token_embedding.weight": (16, 8)}),
        ("t5xxl_fp16", {"encoder.block.0.layer.0.SelfAttention.q.weight": (8, 8), "shared.weight": (16, 8)}),
        ("qwen_3_4b", {"model.embed_tokens.weight": (16, 8), "model.layers.0.self_attn.q_proj.weight": (8, 8)}),
    ],
)
def test_comfyui_text_encoder_files_say_what_they_are(tmp_path, name, tensors):
    info = identify(write_safetensors(tmp_path / f"{name}.safetensors", tensors))
    assert (info.kind, info.family) == ("text encoder", Family.UNKNOWN)
    assert model_sources.problem_of(info) == "a text encoder, not a full model"


# ---------------------------------------------------------------------- GGUF

GGUF_TYPES = {"F32": 0, "F16": 1, "Q8_0": 8, "Q4_K": 12, "BF16": 30}


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def gguf_value(value) -> bytes:
    """A metadata value with its type: str, bool, int (u32), float (f32) or a list of str."""
    if isinstance(value, str):
        return struct.pack("<I", 8) + gguf_string(value)
    if isinstance(value, bool):
        return struct.pack("<I?", 7, value)
    if isinstance(value, int):
        return struct.pack("<II", 4, value)
    if isinstance(value, float):
        return struct.pack("<If", 6, value)
    return struct.pack("<IIQ", 9, 8, len(value)) + b"".join(gguf_string(v) for v in value)


def write_gguf(path: Path, tensors: dict, metadata: dict | None = None, quant: str = "Q4_K",
               version: int = 3) -> Path:
    """A GGUF file per ggml's gguf.md: tensors name -> torch shape (written innermost first); 32 bytes of data each."""
    metadata = {"general.architecture": "flux", **(metadata or {})}
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, value in metadata.items():
        out += gguf_string(key) + gguf_value(value)
    for i, (name, shape) in enumerate(tensors.items()):
        kind = GGUF_TYPES[quant] if len(shape) >= 2 else GGUF_TYPES["F32"]
        out += gguf_string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d)
                                                                             for d in reversed(shape))
        out += struct.pack("<IQ", kind, 32 * i)
    out += b"\0" * (-len(out) % metadata.get("general.alignment", 32)) + b"\0" * (32 * len(tensors))
    path.write_bytes(out)
    return path


@pytest.mark.parametrize(
    "name, tensors, family, variant",
    [
        ("flux1-dev-Q4_K_S", FLUX1_DEV, Family.FLUX1, "dev"),
        ("flux1-schnell-Q4_K_S", FLUX1_SCHNELL, Family.FLUX1, "schnell"),
        ("flux1-fill-dev-Q4_K_S", FLUX1_FILL, Family.FLUX1, "fill"),
        ("flux-2-klein-4b-Q4_K", {**KLEIN, "img_in.weight": (3072, 128)}, Family.FLUX2_KLEIN, "4b"),
        ("sd3.5_large-Q4_K", sd3(38), Family.SD3, "large"),
        ("z_image_turbo-Q4_K", ZIMAGE, Family.ZIMAGE, "turbo"),
    ],
)
def test_gguf_files_give_family_and_variant(tmp_path, name, tensors, family, variant):
    path = write_gguf(tmp_path / f"{name}.gguf", tensors)
    info = identify(path)
    assert (info.format, info.kind, info.family, info.variant) == ("gguf", "checkpoint", family, variant)
    assert "GGUF Q4_K" in info.note
    assert info.size_bytes == path.stat().st_size
    assert flow_parts(path) == {"transformer"}


def test_gguf_metadata_and_version_2(tmp_path):
    metadata = {"general.name": "FLUX.1 Kontext dev", "general.alignment": 64, "ok": True, "scale": 0.5,
                "tags": ["a", "b"]}
    path = write_gguf(tmp_path / "model.gguf", FLUX1_DEV, metadata, version=2)
    info = identify(path)
    assert (info.family, info.variant) == (Family.FLUX1, "kontext")


@pytest.mark.parametrize("name, architecture",
                         [("Qwen3-4B-Q4_K_M", "qwen3"), ("t5-v1_1-xxl-encoder-Q8_0", "t5encoder")])
def test_a_gguf_text_encoder_is_a_text_encoder_as_its_safetensors_is(tmp_path, name, architecture):
    path = write_gguf(tmp_path / f"{name}.gguf", {"token_embd.weight": (8, 32), "blk.0.attn_q.weight": (8, 8)},
                      {"general.architecture": architecture, "tokenizer.ggml.tokens": [f"t{i}" for i in range(2000)]})
    info = identify(path)
    assert (info.kind, info.family, info.format) == ("text encoder", Family.UNKNOWN, "gguf")
    assert model_sources.problem_of(info) == "a text encoder, not a full model"


def test_another_language_model_gguf_says_so(tmp_path):
    path = write_gguf(tmp_path / "Llama-3-8B-Q4_K_M.gguf",
                      {"token_embd.weight": (8, 32), "blk.0.attn_q.weight": (8, 8)}, {"general.architecture": "llama"})
    info = identify(path)
    assert (info.kind, info.family) == ("unknown", Family.UNKNOWN)
    assert "language model" in info.note


def test_scan_lists_gguf_files(tmp_path):
    write_gguf(tmp_path / "flux1-schnell-Q8_0.gguf", FLUX1_SCHNELL, quant="Q8_0")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF\x03\0\0\0")
    found = {m.path.name: m for m in scan([tmp_path])}
    assert (found["flux1-schnell-Q8_0.gguf"].family, found["flux1-schnell-Q8_0.gguf"].note) == (
        Family.FLUX1, "GGUF Q8_0; the transformer only: its text encoders and VAE are separate files")
    assert (found["broken.gguf"].kind, found["broken.gguf"].format) == ("unknown", "gguf")
    assert "truncated" in found["broken.gguf"].note


# ------------------------------------------------------------ diffusers folders


def make_flow_folder(folder: Path, cls: str, transformer: dict | None, encoder: tuple[str, dict] | None = None,
                     **index) -> Path:
    """A diffusers folder of a flow pipeline: model_index.json, transformer/config.json (None: none), one text
    encoder config, and a weights file so it has a size."""
    parts = {"transformer": ["diffusers", "X"], "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["t", "X"]}
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": cls, **parts, **index}))
    (folder / "transformer").mkdir()
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights")
    if transformer is not None:
        (folder / "transformer" / "config.json").write_text(json.dumps(transformer))
    if encoder is not None:
        (folder / encoder[0]).mkdir()
        (folder / encoder[0] / "config.json").write_text(json.dumps(encoder[1]))
    return folder


FLUX_T = {"_class_name": "FluxTransformer2DModel", "in_channels": 64, "joint_attention_dim": 4096}
KLEIN_T = {"_class_name": "Flux2Transformer2DModel", "num_attention_heads": 24, "attention_head_dim": 128,
           "joint_attention_dim": 7680}
SD3_T = {"_class_name": "SD3Transformer2DModel", "num_layers": 24, "joint_attention_dim": 4096}
ZIMAGE_T = {"_class_name": "ZImageTransformer2DModel", "cap_feat_dim": 2560}


@pytest.mark.parametrize(
    "name, cls, transformer, index, family, variant, inpaint",
    [
        ("FLUX.1-dev", "FluxPipeline", {**FLUX_T, "guidance_embeds": True}, {}, Family.FLUX1, "dev", False),
        ("FLUX.1-schnell", "FluxPipeline", {**FLUX_T, "guidance_embeds": False}, {}, Family.FLUX1, "schnell", False),
        ("pipe", "FluxImg2ImgPipeline", {**FLUX_T, "guidance_embeds": True}, {}, Family.FLUX1, "dev", False),
        ("FLUX.1-Fill-dev", "FluxFillPipeline", {**FLUX_T, "in_channels": 384, "guidance_embeds": True}, {},
         Family.FLUX1, "fill", True),
        ("pipe", "FluxPipeline", {**FLUX_T, "in_channels": 384, "guidance_embeds": True}, {}, Family.FLUX1, "fill",
         True),
        ("FLUX.1-Kontext-dev", "FluxKontextPipeline", {**FLUX_T, "guidance_embeds": True}, {}, Family.FLUX1,
         "kontext", False),
        ("FLUX.2-klein-4B", "Flux2KleinPipeline", KLEIN_T, {"is_distilled": True}, Family.FLUX2_KLEIN, "4b", False),
        ("klein-a", "Flux2KleinPipeline", KLEIN_T, {"is_distilled": False}, Family.FLUX2_KLEIN, "base-4b", False),
        ("klein-base-b", "Flux2KleinPipeline", KLEIN_T, {"is_distilled": True}, Family.FLUX2_KLEIN, "4b", False),
        ("pipe", "Flux2KleinInpaintPipeline", {**KLEIN_T, "num_attention_heads": 32, "joint_attention_dim": 12288},
         {"is_distilled": True}, Family.FLUX2_KLEIN, "9b", False),
        ("FLUX.2-klein-base-9B", "Flux2KleinPipeline", {**KLEIN_T, "num_attention_heads": 32,
                                                        "joint_attention_dim": 12288}, {}, Family.FLUX2_KLEIN,
         "base-9b", False),
        ("tiny", "Flux2KleinPipeline", {**KLEIN_T, "num_attention_heads": 2, "joint_attention_dim": None}, {},
         Family.FLUX2_KLEIN, "", False),
        ("stable-diffusion-3.5-medium", "StableDiffusion3Pipeline", {**SD3_T, "dual_attention_layers": [0, 1]}, {},
         Family.SD3, "medium", False),
        ("stable-diffusion-3.5-large", "StableDiffusion3Pipeline", {**SD3_T, "num_layers": 38}, {}, Family.SD3,
         "large", False),
        ("stable-diffusion-3.5-large-turbo", "StableDiffusion3Img2ImgPipeline", {**SD3_T, "num_layers": 38}, {},
         Family.SD3, "large-turbo", False),
        ("Z-Image-Turbo", "ZImagePipeline", ZIMAGE_T, {}, Family.ZIMAGE, "turbo", False),
        ("Z-Image-Base", "ZImageInpaintPipeline", ZIMAGE_T, {}, Family.ZIMAGE, "base", False),
    ],
)
def test_flow_diffusers_folders(tmp_path, name, cls, transformer, index, family, variant, inpaint):
    info = identify(make_flow_folder(tmp_path / name, cls, transformer, **index))
    assert (info.format, info.kind, info.family, info.variant, info.inpaint) == (
        "diffusers", "checkpoint", family, variant, inpaint)
    assert info.size_bytes > 0 and info.name == name


@pytest.mark.parametrize("cls", ["Flux2Pipeline", "QwenImagePipeline", ""])
def test_a_transformer_pipeline_sfumato_does_not_know_says_so(tmp_path, cls):
    folder = make_flow_folder(tmp_path / "FLUX.2-dev", cls, {"_class_name": "Flux2Transformer2DModel"})
    info = identify(folder)
    assert (info.kind, info.family) == ("checkpoint", Family.UNKNOWN)
    assert model_sources.problem_of(info) == f"is a {cls or 'diffusers'} model, which Sfumato does not support"


@pytest.mark.parametrize("repo, variant", [("models--Tongyi-MAI--Z-Image", "base"),  # the base model's Hub id
                                           ("models--Tongyi-MAI--Z-Image-Turbo", "turbo"),
                                           ("models--Tongyi-MAI--Z-Image-Base", "base"),
                                           ("models--someone--Z-Image-finetune", "")])
def test_a_hub_snapshot_is_named_by_its_repo(tmp_path, repo, variant):
    snapshot = tmp_path / "hub" / repo / "snapshots" / "5f0c1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f"
    assert identify(make_flow_folder(snapshot, "ZImagePipeline", ZIMAGE_T)).variant == variant


@pytest.mark.parametrize(
    "cls, transformer, encoder, words",
    [
        ("FluxPipeline", None, None, "its model_index.json names FluxPipeline, a FLUX.1 pipeline, but it has no "
                                     "transformer/config.json. Download the model again."),
        ("FluxPipeline", {**SD3_T}, None, "its transformer is a SD3Transformer2DModel, not the "
                                          "FluxTransformer2DModel it needs: its parts come from different models"),
        ("FluxPipeline", FLUX_T, ("text_encoder_2", {"d_model": 2048}),
         "its transformer takes text features 4096 wide but its text_encoder_2 gives 2048"),
        ("Flux2KleinPipeline", KLEIN_T, ("text_encoder", {"hidden_size": 4096}),
         "its transformer takes text features 7680 wide but its text_encoder gives 12288"),
        ("ZImagePipeline", ZIMAGE_T, ("text_encoder", {"hidden_size": 4096}), "text features 2560 wide"),
        ("StableDiffusion3Pipeline", SD3_T, ("text_encoder_3", {"d_model": 32}), "text features 4096 wide"),
        ("FluxPipeline", FLUX_T, ("vae", {"_class_name": "AutoencoderKL", "latent_channels": 4}),  # SD 1.x's VAE
         "its VAE has 4 latent channels, not the 16 it needs: its parts come from different models"),
        ("Flux2KleinPipeline", KLEIN_T, ("vae", {"_class_name": "AutoencoderKL", "latent_channels": 16}),  # FLUX.1's
         "its VAE is AutoencoderKL, not the AutoencoderKLFlux2 it needs: its parts come from different models"),
        ("Flux2KleinPipeline", KLEIN_T, ("vae", {"_class_name": "AutoencoderKLFlux2", "latent_channels": 16}),
         "its VAE has 16 latent channels, not the 32 it needs"),
        ("ZImagePipeline", ZIMAGE_T, ("vae", {"_class_name": "AutoencoderKLFlux2", "latent_channels": 32}),
         "its VAE is AutoencoderKLFlux2, not the AutoencoderKL it needs"),
    ],
)
def test_flow_folders_whose_parts_do_not_fit_are_refused(tmp_path, cls, transformer, encoder, words):
    folder = make_flow_folder(tmp_path / "pipe", cls, transformer, encoder)
    with pytest.raises(ModelFileError, match="pipe is not a valid model file") as caught:
        identify(folder)
    assert words in str(caught.value)
    assert identify_or_explain(folder).kind == "unknown"


def test_fitting_text_encoders_pass(tmp_path):
    folder = make_flow_folder(tmp_path / "pipe", "FluxPipeline", FLUX_T, ("text_encoder_2", {"d_model": 4096}))
    assert identify(folder).family is Family.FLUX1
    folder = make_flow_folder(tmp_path / "klein", "Flux2KleinPipeline", KLEIN_T,
                              ("text_encoder", {"hidden_size": 2560}))
    assert identify(folder).variant == "4b"
    assert flow_parts(folder) == {"transformer", "text_encoders", "vae"}


# ---------------------------------------------------------------- model list


def test_the_model_list_shows_flow_models_by_variant(tmp_path):
    write_safetensors(tmp_path / "flux1-schnell.safetensors", FLUX1_SCHNELL)
    write_safetensors(tmp_path / "flux1-fill-dev.safetensors", FLUX1_FILL)
    write_safetensors(tmp_path / "tiny-klein.safetensors", KLEIN)
    write_gguf(tmp_path / "z_image_turbo-Q4_K.gguf", ZIMAGE)
    make_flow_folder(tmp_path / "stable-diffusion-3.5-large", "StableDiffusion3Pipeline", {**SD3_T, "num_layers": 38})
    rows = {e.name: e for e in model_sources.list_models([tmp_path])}
    assert {name: (e.family_label, e.usable) for name, e in rows.items()} == {
        "flux1-schnell": ("FLUX.1 [schnell]", True),
        "flux1-fill-dev": ("FLUX.1 Fill [dev]", True),
        "tiny-klein": ("FLUX.2 [klein]", True),
        "z_image_turbo-Q4_K": ("Z-Image Turbo", True),
        "stable-diffusion-3.5-large": ("SD 3.5 Large", True),
    }


# ----------------------------------------------------------- the tiny models

TINY_FAMILIES = {kind: family for kind, family in families.DEMO_KINDS.items() if families.is_flow(family)}


@pytest.mark.parametrize("kind", sorted(TINY_FAMILIES))
def test_the_tiny_flow_models_are_identified(tiny_models, kind):
    """desktop/engine/tiny_flow.py's folders: the real pipelines' configs with tiny widths."""
    assert len(TINY_FAMILIES) == 4
    model = tiny_models[kind]
    info = identify(model.folder)
    assert (info.format, info.kind, info.family) == ("diffusers", "checkpoint", TINY_FAMILIES[kind])
    assert info.variant == {"flux1": "dev", "sd3": "medium", "zimage": "", "flux2-klein": ""}[kind]
    assert flow_parts(model.folder) == {"transformer", "text_encoders", "vae"}
    if model.checkpoint.exists():  # the single file in the original layout, once written (flow_layout)
        single = identify(model.checkpoint)
        assert (single.kind, single.family) == ("checkpoint", TINY_FAMILIES[kind])
