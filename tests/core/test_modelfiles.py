import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from desktop.core import modelfiles
from desktop.core.errors import SfumatoError
from desktop.core.modelfiles import (
    Family,
    ModelFileError,
    identify,
    model_hash,
    read_safetensors_header,
    scan,
    sidecar_config,
)

DTYPE_SIZE = {"F16": 2, "F32": 4, "BF16": 2, "I64": 8, "U8": 1}


def write_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    """tensors: name -> shape (F16) or (dtype, shape). Data is zeros."""
    header, offset = {}, 0
    for name, spec in tensors.items():
        dtype, shape = spec if isinstance(spec[0], str) else ("F16", spec)
        n = DTYPE_SIZE[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata is not None:
        header["__metadata__"] = metadata
    write_raw(path, json.dumps(header).encode(), b"\0" * offset)
    return path


def write_raw(path: Path, header: bytes, data: bytes = b"", n: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    size = len(header) if n is None else n
    path.write_bytes(struct.pack("<Q", size) + header + data)
    return path


# Tiny shapes with the real key names of each layout.
UNET = {
    "model.diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (32, 32),
    "model.diffusion_model.out.2.weight": (4, 32, 3, 3),
}
VAE_IN_CKPT = {"first_stage_model.encoder.conv_in.weight": (8, 3, 3, 3)}
CLIP_L = {"cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 32)}
OPENCLIP_H = {
    "cond_stage_model.model.token_embedding.weight": (100, 32),
    "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (96, 32),
}
XL_CLIP_L = {"conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 32)}
XL_BIGG = {"conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (32,)}
REFINER_BIGG = {"conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": (32,)}
LABEL_EMB = {"model.diffusion_model.label_emb.0.0.weight": (64, 48)}


def inpaint(unet: dict, channels: int = 9) -> dict:
    return {**unet, "model.diffusion_model.input_blocks.0.0.weight": (32, channels, 3, 3)}


SD1 = {**UNET, **VAE_IN_CKPT, **CLIP_L}
SD2 = {**UNET, **VAE_IN_CKPT, **OPENCLIP_H}
SDXL = {**UNET, **LABEL_EMB, **VAE_IN_CKPT, **XL_CLIP_L, **XL_BIGG}
SDXL_REFINER = {**UNET, **LABEL_EMB, **VAE_IN_CKPT, **REFINER_BIGG}
LORA_SD1 = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": (320, 4),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 768),
}
LORA_SDXL = {
    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 32),
    "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 32),
    "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 32),
}
LORA_PEFT = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (4, 1024)}
VAE = {
    "encoder.conv_in.weight": (8, 3, 3, 3),
    "decoder.conv_out.weight": (3, 8, 3, 3),
    "quant_conv.weight": (8, 8, 1, 1),
}
FLUX = {
    "double_blocks.0.img_attn.norm.key_norm.scale": (8,),
    "single_blocks.0.linear1.weight": (8, 8),
}


@pytest.mark.parametrize(
    "tensors, kind, family, is_inpaint",
    [
        (SD1, "checkpoint", Family.SD1, False),
        (inpaint(SD1), "checkpoint", Family.SD1, True),
        (SD2, "checkpoint", Family.SD2, False),
        (inpaint(SD2), "checkpoint", Family.SD2, True),
        (SDXL, "checkpoint", Family.SDXL, False),
        (inpaint(SDXL), "checkpoint", Family.SDXL, True),
        (SDXL_REFINER, "checkpoint", Family.SDXL_REFINER, False),
        (LORA_SD1, "lora", Family.SD1, False),
        (LORA_SDXL, "lora", Family.SDXL, False),
        (LORA_PEFT, "lora", Family.SD2, False),
        (VAE, "vae", Family.UNKNOWN, False),
        ({"emb_params": (2, 768)}, "embedding", Family.SD1, False),
        ({"clip_l": (2, 32), "clip_g": (2, 64)}, "embedding", Family.SDXL, False),
    ],
)
def test_identify_safetensors(tmp_path, tensors, kind, family, is_inpaint):
    path = write_safetensors(tmp_path / "model.safetensors", tensors)
    info = identify(path)
    assert (info.format, info.kind, info.family, info.inpaint) == ("safetensors", kind, family, is_inpaint)
    assert info.size_bytes == path.stat().st_size
    assert info.name == "model"
    assert info.prediction is None


@pytest.mark.parametrize(
    "tensors, words",
    [
        (FLUX, "Flux"),
        ({f"model.diffusion_model.{k}": s for k, s in FLUX.items()}, "Flux"),
        ({**FLUX, "single_stream_modulation.lin.weight": (8, 8), "guidance_in.in_layer.weight": (8, 8)},
         "FLUX.2 [dev]"),
        ({**FLUX, "distilled_guidance_layer.in_proj.bias": (8,)}, "Chroma"),
        (inpaint(SD1, 8), "pix2pix"),
        (inpaint(SD2, 7), "upscaler"),
        ({**SDXL, "edm_mean": (4,), "edm_std": (4,)}, "Playground"),
        ({"model.diffusion_model.layers.0.adaLN_modulation.0.weight": (8, 8), **CLIP_L}, "not SD 1.x, 2.x or SDXL"),
        (LORA_SD1 | {"lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": (4, 8)}, "LoRA for Flux"),
        (UNET, "no text encoder"),
        ({"something.else": (2,)}, "does not look like"),
    ],
)
def test_unsupported_models_are_unknown_with_a_note(tmp_path, tensors, words):
    info = identify(write_safetensors(tmp_path / "odd.safetensors", tensors))
    assert info.family is Family.UNKNOWN
    assert words in info.note
    assert not info.inpaint


def test_lora_family_from_metadata(tmp_path):
    tiny = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 32)}
    unknown = identify(write_safetensors(tmp_path / "a.safetensors", tiny))
    assert (unknown.kind, unknown.family) == ("lora", Family.UNKNOWN) and unknown.note
    for base, family in [("sdxl_base_v1-0", Family.SDXL), ("sd_v1", Family.SD1), ("sd_v2", Family.SD2)]:
        path = write_safetensors(tmp_path / "b.safetensors", tiny, {"ss_base_model_version": base})
        assert identify(path).family is family


def test_prediction_hints(tmp_path):
    vpred = identify(write_safetensors(tmp_path / "v.safetensors", {**SD2, "v_pred": ("F32", ())}))
    assert (vpred.family, vpred.prediction) == (Family.SD2, "v_prediction")
    spec = write_safetensors(tmp_path / "e.safetensors", SD2, {"modelspec.prediction_type": "epsilon"})
    assert identify(spec).prediction == "epsilon"


def test_header_is_parsed(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", {"a": ("F32", (2, 3)), "b": ("U8", (5,))}, {"k": "v"})
    header = read_safetensors_header(path)
    assert header.metadata == {"k": "v"}
    assert header.tensors["a"].dtype == "F32"
    assert header.tensors["a"].shape == (2, 3)
    assert header.tensors["a"].data_offsets == (0, 24)
    assert header.tensors["b"].data_offsets == (24, 29)


def test_empty_model_is_valid(tmp_path):
    header = read_safetensors_header(write_raw(tmp_path / "e.safetensors", b"{}"))
    assert header.tensors == {} and header.metadata == {}


def entry(dtype="F16", shape=(2,), offsets=(0, 4)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def header_bytes(entries: dict) -> bytes:
    return json.dumps(entries).encode()


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p.write_bytes(b"\0\0\0"), "too short"),
        (lambda p: write_raw(p, b"{}", n=2**40), "limit"),
        (lambda p: write_raw(p, b'{"a":', n=500), "truncated"),
        (lambda p: write_raw(p, b"{not json at all}"), "not valid JSON"),
        (lambda p: write_raw(p, b"{\xff\xfe}"), "not valid JSON"),
        (lambda p: write_raw(p, b'{"a": 1, "a": 2}'), "not valid JSON"),
        (lambda p: write_raw(p, b"[1, 2]"), "does not start"),
        (lambda p: write_raw(p, b"{} is not an object"), "not valid JSON"),
        (lambda p: write_raw(p, b'{"__metadata__": {"k": 1}}'), "__metadata__"),
        (lambda p: write_raw(p, b'{"a": [1]}'), "not a JSON object"),
        (lambda p: write_raw(p, header_bytes({"a": {"shape": [2], "data_offsets": [0, 4]}}), b"\0" * 4), "no dtype"),
        (lambda p: write_raw(p, header_bytes({"a": {"dtype": "F16", "data_offsets": [0, 4]}}), b"\0" * 4), "no shape"),
        (lambda p: write_raw(p, header_bytes({"a": {"dtype": "F16", "shape": [2]}}), b"\0" * 4), "no data_offsets"),
        (lambda p: write_raw(p, header_bytes({"a": entry(dtype="F13")}), b"\0" * 4), "unknown dtype"),
        (lambda p: write_raw(p, header_bytes({"a": entry(shape=(-2,))}), b"\0" * 4), "invalid shape"),
        (lambda p: write_raw(p, header_bytes({"a": entry(offsets=(4, 0))}), b"\0" * 4), "invalid data_offsets"),
        (lambda p: write_raw(p, header_bytes({"a": entry(shape=(3,))}), b"\0" * 4), "should take 6 bytes"),
        (lambda p: write_raw(p, header_bytes({"a": entry(shape=(2, 2, 2), offsets=(0, 16))}), b"\0" * 4), "truncated"),
        (
            lambda p: write_raw(p, header_bytes({"a": entry(offsets=(0, 4)), "b": entry(offsets=(2, 6))}), b"\0" * 6),
            "overlap",
        ),
        (lambda p: write_raw(p, header_bytes({"a": entry(offsets=(2, 6))}), b"\0" * 6), "gap"),
        (lambda p: write_raw(p, header_bytes({"a": entry()}), b"\0" * 9), "unexpected bytes"),
    ],
)
def test_corrupt_files_raise_a_clear_error(tmp_path, make, words):
    path = tmp_path / "broken.safetensors"
    make(path)
    with pytest.raises(ModelFileError) as caught:
        read_safetensors_header(path)
    message = str(caught.value)
    assert message.startswith("broken.safetensors is not a valid model file: ")
    assert words in message
    assert caught.value.path == path
    assert isinstance(caught.value, SfumatoError)  # the UI shows str(error) as it is
    with pytest.raises(ModelFileError):
        identify(path)


def test_truncated_message_gives_sizes(tmp_path):
    path = write_raw(tmp_path / "big.safetensors", header_bytes({"a": entry("U8", (2**20,), (0, 2**20))}), b"\0" * 10)
    with pytest.raises(ModelFileError, match=r"truncated \(the header says 1 MB but the file has \d+ bytes\)"):
        read_safetensors_header(path)


def test_truncated_message_gives_bytes_when_the_sizes_round_the_same(tmp_path):
    """A file a few bytes short: "the header says 6.8 MB but the file has 6.8 MB" would say nothing."""
    size = 7_130_000
    path = write_raw(tmp_path / "cut.safetensors", header_bytes({"a": entry("U8", (size,), (0, size))}),
                     b"\0" * (size - 100))
    with pytest.raises(ModelFileError) as caught:
        read_safetensors_header(path)
    header = len(header_bytes({"a": entry("U8", (size,), (0, size))}))
    assert f"the header says {8 + header + size:,} bytes but the file has {8 + header + size - 100:,} bytes" \
        in str(caught.value)


def test_header_limit_is_respected(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", SD1)
    with pytest.raises(ModelFileError, match="64 bytes limit"):
        read_safetensors_header(path, max_header_bytes=64)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "it is actually a PNG image"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "it is actually a web page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", "Git LFS pointer"),
        (pickle.dumps({"a": 1}), "pickle (.ckpt) checkpoint"),
    ],
)
def test_files_that_are_something_else_say_so(tmp_path, content, words):
    path = tmp_path / "download.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="download.safetensors") as caught:
        identify(path)
    assert words in str(caught.value)


def test_only_the_header_is_read(tmp_path, monkeypatch):
    path = write_safetensors(tmp_path / "m.safetensors", {"a": ("U8", (4 * 2**20,))})
    reads = []
    real_open = Path.open

    class CountingFile:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, *a):
            return self.f.seek(*a)

        def read(self, n=-1):
            assert n >= 0
            data = self.f.read(n)
            reads.append(len(data))
            return data

    monkeypatch.setattr(Path, "open", lambda self, *a, **k: CountingFile(real_open(self, *a, **k)))
    read_safetensors_header(path)
    assert sum(reads) < 1000


# ------------------------------------------------------------------ pickles


class Boom:
    """Unpickling this creates the marker folder."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def pickled_checkpoint(keys: dict, marker: Path) -> bytes:
    return pickle.dumps({"state_dict": {k: Boom(marker) for k in keys}, "global_step": 1})


def test_plain_pickle_is_identified_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "old.ckpt"
    path.write_bytes(pickled_checkpoint(SD2, marker))
    info = identify(path)
    assert (info.format, info.kind, info.family, info.inpaint) == ("ckpt", "checkpoint", Family.SD2, False)
    assert not marker.exists()


def test_zip_pickle_like_torch_save(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "sd_xl-Inpainting.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickled_checkpoint(SDXL, marker))
        z.writestr("archive/data/0", b"\0" * 16)
        z.writestr("archive/version", b"3\n")
    info = identify(path)
    assert (info.format, info.family, info.inpaint) == ("ckpt", Family.SDXL, True)
    assert "file name" in info.note
    assert not marker.exists()


def test_pickle_embedding_and_torch_protocol_2(tmp_path):
    path = tmp_path / "style.pt"
    path.write_bytes(pickle.dumps({"string_to_param": {"*": Boom(tmp_path / "m")}, "name": "style"}, protocol=2))
    info = identify(path)
    assert (info.kind, info.family) == ("embedding", Family.UNKNOWN)
    assert not (tmp_path / "m").exists()


def test_truncated_pickle_still_gives_what_it_can(tmp_path):
    path = tmp_path / "cut.ckpt"
    data = pickled_checkpoint(SD1, tmp_path / "m")
    path.write_bytes(data[: data.index(b"global_step") + 4])
    assert identify(path).family is Family.SD1


def test_pickle_that_is_not_one(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"<html><body>404</body></html>")
    with pytest.raises(ModelFileError, match="model.ckpt is not a valid model file: it is actually a web page"):
        identify(path)
    zipped = tmp_path / "photos.ckpt"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("a.txt", "hello")
    with pytest.raises(ModelFileError, match="not a PyTorch checkpoint"):
        identify(zipped)


# ----------------------------------------------------------------- diffusers


def make_diffusers(folder: Path, cls="StableDiffusionPipeline", in_channels=4, cross=32, text_encoder=True):
    index = {"_class_name": cls, "unet": ["diffusers", "UNet2DConditionModel"]}
    index["text_encoder"] = ["transformers", "CLIPTextModel"] if text_encoder else [None, None]
    unet = {"_class_name": "UNet2DConditionModel", "in_channels": in_channels, "cross_attention_dim": cross}
    if "XL" in cls:  # the second text encoder and the size-conditioned UNet of SDXL
        index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
        index["tokenizer_2"] = ["transformers", "CLIPTokenizer"]
        unet["addition_embed_type"] = "text_time"
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet" / "config.json").write_text(json.dumps(unet))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": "epsilon"}))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"unet weights")
    return folder


@pytest.mark.parametrize(
    "kwargs, family, is_inpaint",
    [
        ({}, Family.SD1, False),
        ({"cross": 768}, Family.SD1, False),
        ({"cross": 1024}, Family.SD2, False),
        ({"cls": "StableDiffusionInpaintPipeline", "in_channels": 9}, Family.SD1, True),
        ({"cls": "StableDiffusionXLPipeline", "cross": 2048}, Family.SDXL, False),
        ({"cls": "StableDiffusionXLInpaintPipeline", "in_channels": 9}, Family.SDXL, True),
        ({"cls": "StableDiffusionXLImg2ImgPipeline", "text_encoder": False}, Family.SDXL_REFINER, False),
        ({"cls": "PixArtSigmaPipeline"}, Family.UNKNOWN, False),  # (flow families: test_modelfiles_flow.py)
        ({"in_channels": 8}, Family.UNKNOWN, False),
    ],
)
def test_identify_diffusers_folder(tmp_path, kwargs, family, is_inpaint):
    folder = make_diffusers(tmp_path / "pipe", **kwargs)
    info = identify(folder)
    assert (info.format, info.kind, info.family, info.inpaint) == ("diffusers", "checkpoint", family, is_inpaint)
    assert info.name == "pipe"
    assert info.prediction == "epsilon"
    assert info.size_bytes > 0
    assert (info.family is Family.UNKNOWN) == bool(info.note)


def test_broken_diffusers_folder(tmp_path):
    folder = make_diffusers(tmp_path / "pipe")
    (folder / "unet" / "config.json").write_text("{oops")
    with pytest.raises(ModelFileError, match="pipe is not a valid model file: its unet/config.json"):
        identify(folder)
    (folder / "unet" / "config.json").unlink()
    with pytest.raises(ModelFileError, match="no unet/config.json"):
        identify(folder)
    (folder / "model_index.json").write_text("[]")
    with pytest.raises(ModelFileError, match="model_index.json is not a JSON object"):
        identify(folder)


@pytest.mark.parametrize(
    "cls, change, problem",
    [
        ("StableDiffusionXLPipeline", {"index": {"text_encoder_2": None}}, "it has no text_encoder_2, which SDXL needs"),
        ("StableDiffusionXLPipeline", {"unet": {"addition_embed_type": None}}, "its UNet is not an SDXL UNet"),
        ("StableDiffusionPipeline", {"unet": {"addition_embed_type": "text_time"}}, "its UNet is an SDXL UNet"),
        ("StableDiffusionPipeline", {"index": {"text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}},
         "it has a second text encoder, which only SDXL has"),
        ("StableDiffusionPipeline", {"width": 64}, "its UNet takes text features 32 wide but its text encoder gives 64"),
    ],
)
def test_a_diffusers_folder_whose_parts_do_not_fit_its_pipeline_is_refused(tmp_path, cls, change, problem):
    folder = make_diffusers(tmp_path / "mixed", cls=cls, cross=32)
    index = json.loads((folder / "model_index.json").read_text())
    unet = json.loads((folder / "unet" / "config.json").read_text())
    index.update(change.get("index", {}))
    unet.update(change.get("unet", {}))
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "unet" / "config.json").write_text(json.dumps(unet))
    (folder / "text_encoder").mkdir()
    (folder / "text_encoder" / "config.json").write_text(json.dumps({"hidden_size": change.get("width", 32)}))
    with pytest.raises(ModelFileError, match=f"its model_index.json names {cls}, .* pipeline, but {problem}: "
                                             "its parts come from different models. Download the model again."):
        identify(folder)
    (listed,) = scan([tmp_path])
    assert listed.kind == "unknown" and problem in listed.note


def test_parts_that_fit_their_pipeline_pass_with_their_widths(tmp_path):
    folder = make_diffusers(tmp_path / "xl", cls="StableDiffusionXLPipeline", cross=96)
    for name, width in (("text_encoder", 32), ("text_encoder_2", 64)):
        (folder / name).mkdir()
        (folder / name / "config.json").write_text(json.dumps({"hidden_size": width}))
    assert identify(folder).family is Family.SDXL


# ------------------------------------------------------------ sidecar, scan


def make_sidecar(checkpoint: Path, **kwargs) -> Path:
    config = checkpoint.with_name(checkpoint.stem + ".config")
    make_diffusers(config, **kwargs)
    (config / "unet" / "diffusion_pytorch_model.safetensors").unlink()  # configs only, no weights
    return config


def test_sidecar_config(tmp_path):
    ckpt = write_safetensors(tmp_path / "custom.safetensors", SD1)
    assert sidecar_config(ckpt) is None
    (tmp_path / "custom.config").mkdir()
    assert sidecar_config(ckpt) is None  # no model_index.json
    (tmp_path / "custom.config" / "model_index.json").write_text("{}")
    assert sidecar_config(ckpt) == tmp_path / "custom.config"
    assert identify(ckpt).config_dir == tmp_path / "custom.config"


def test_sidecar_tells_the_family_the_header_cannot(tmp_path):
    ckpt = write_safetensors(tmp_path / "unet-only.safetensors", UNET)
    make_sidecar(ckpt, cls="StableDiffusionXLInpaintPipeline", in_channels=9)
    info = identify(ckpt)
    assert (info.family, info.inpaint) == (Family.SDXL, True)
    assert "unet-only.config" in info.note


def test_scan(tmp_path):
    root = tmp_path / "models"
    write_safetensors(root / "sd1.safetensors", SD1)
    write_safetensors(root / "Loras" / "detail.safetensors", LORA_SD1)
    (root / "Loras" / "bad.safetensors").write_bytes(b"\x89PNG\r\n\x1a\n....")
    write_safetensors(root / "custom.safetensors", SDXL)
    make_sidecar(root / "custom.safetensors")
    write_safetensors(root / "custom.config" / "text_encoder" / "stray.safetensors", SD1)
    make_diffusers(root / "a" / "Pipe")
    write_safetensors(root / "a" / "Pipe" / "unet" / "other.safetensors", SD1)
    write_safetensors(root / ".trash" / "hidden.safetensors", SD1)
    write_safetensors(root / "1" / "2" / "3" / "4" / "depth4.safetensors", SD1)
    write_safetensors(root / "1" / "2" / "3" / "4" / "5" / "depth5.safetensors", SD1)
    (root / "old.ckpt").write_bytes(pickled_checkpoint(SD1, tmp_path / "m"))
    (root / "notes.txt").write_text("hi")
    second = tmp_path / "more"
    write_safetensors(second / "xl.safetensors", SDXL)

    models = scan([root, tmp_path / "missing", second, root])
    names = [m.path.name for m in models]
    assert names == [
        "bad.safetensors", "custom.safetensors", "depth4.safetensors", "detail.safetensors",
        "old.ckpt", "Pipe", "sd1.safetensors", "xl.safetensors",
    ]  # fmt: skip
    by_name = {m.path.name: m for m in models}
    bad = by_name["bad.safetensors"]
    assert (bad.kind, bad.family) == ("unknown", Family.UNKNOWN)
    assert "bad.safetensors is not a valid model file" in bad.note and "PNG" in bad.note
    assert by_name["custom.safetensors"].config_dir == root / "custom.config"
    assert by_name["Pipe"].format == "diffusers"
    assert by_name["detail.safetensors"].kind == "lora"
    assert by_name["old.ckpt"].family is Family.SD1
    assert not (tmp_path / "m").exists()


def test_scan_of_a_diffusers_folder_itself(tmp_path):
    folder = make_diffusers(tmp_path / "demo")
    assert [m.path for m in scan([folder])] == [folder]
    assert scan([]) == []


def test_scan_never_raises(tmp_path, monkeypatch):
    write_safetensors(tmp_path / "a.safetensors", SD1)

    def explode(path):
        raise RuntimeError("surprise")

    monkeypatch.setattr(modelfiles, "_classify", lambda *a: explode(None))
    [info] = scan([tmp_path])
    assert info.kind == "unknown" and "surprise" in info.note


# ------------------------------------------------------------------- hashing


def test_model_hash_is_a1111_autov2(tmp_path):
    data = bytes(range(256)) * 5000  # more than one read chunk
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    assert model_hash(path) == hashlib.sha256(data).hexdigest()[:10]


def test_model_hash_cache_dict(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"one")
    cache = {}
    expected = hashlib.sha256(b"one").hexdigest()
    assert model_hash(path, cache=cache) == expected[:10]
    assert list(cache.values()) == [expected]

    def fail(_path, *a):
        raise AssertionError("hashed again")

    monkeypatch.setattr(modelfiles, "_sha256_file", fail)
    assert model_hash(path, cache=cache) == expected[:10]

    monkeypatch.undo()
    path.write_bytes(b"two, longer")  # size and mtime change: the cache no longer applies
    assert model_hash(path, cache=cache) == hashlib.sha256(b"two, longer").hexdigest()[:10]


def test_model_hash_cache_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"data")
    cache_file = tmp_path / "cache" / "hashes.json"
    expected = hashlib.sha256(b"data").hexdigest()[:10]
    assert model_hash(path, cache=cache_file) == expected
    assert expected in cache_file.read_text()
    monkeypatch.setattr(modelfiles, "_sha256_file", lambda *a: pytest.fail("hashed again"))
    assert model_hash(path, cache=str(cache_file)) == expected


def test_model_hash_survives_a_corrupt_cache_file(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"data")
    cache_file = tmp_path / "hashes.json"
    cache_file.write_text("{broken")
    assert model_hash(path, cache=cache_file) == hashlib.sha256(b"data").hexdigest()[:10]
    assert json.loads(cache_file.read_text())


def test_model_hash_of_diffusers_folder_is_its_unet(tmp_path):
    folder = make_diffusers(tmp_path / "pipe")
    assert model_hash(folder) == hashlib.sha256(b"unet weights").hexdigest()[:10]
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelFileError, match="no UNet weights"):
        model_hash(folder)


def test_model_hash_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="gone.safetensors"):
        model_hash(tmp_path / "gone.safetensors")


def test_core_module_imports_no_heavy_libraries():
    code = (
        "import sys, desktop.core.modelfiles; "
        "bad = {'torch', 'diffusers', 'transformers', 'PySide6', 'safetensors'} & set(sys.modules); "
        "sys.exit(str(bad) if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
