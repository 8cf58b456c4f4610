"""The tiny flow-matching models: each family's real diffusers pipeline, small, offline and deterministic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from desktop.core import families
from desktop.engine import tiny

PIPELINES = {
    "flux1": ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"),
    "sd3": ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline"),
    "zimage": ("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"),
    "flux2-klein": ("Flux2KleinPipeline", None, "Flux2KleinInpaintPipeline"),
}
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".gguf"}
MAX_FOLDER_BYTES = 8_000_000


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-flow-models")


@pytest.fixture(scope="module")
def built(root) -> dict[str, tuple[tiny.TinyModel, float]]:
    """kind -> (model, seconds its build took), each kind built once."""
    found = {}
    for kind in tiny.FLOW_KINDS:
        start = time.perf_counter()
        found[kind] = (tiny.build(root, kind), time.perf_counter() - start)
    return found


@pytest.fixture(scope="module")
def pipes(built) -> dict:
    import diffusers

    loaded = {}
    for kind, (model, _) in built.items():
        cls = getattr(diffusers, PIPELINES[kind][0])
        pipe = cls.from_pretrained(model.folder, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        loaded[kind] = pipe
    return loaded


def _files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def _guidance(kind: str) -> dict:
    """The guidance the family's makers recommend (desktop/core/families.py), as its pipeline takes it."""
    variant = families.SPECS[families.DEMO_KINDS[kind]].variant()
    if variant.distilled_cfg is not None:  # FLUX.1 dev: guidance_scale is the distilled guidance
        return dict(guidance_scale=variant.distilled_cfg)
    return dict(guidance_scale=variant.cfg_scale)


def _run(pipe, kind: str, **extra) -> np.ndarray:
    args = dict(
        _guidance(kind),
        prompt="a painting of a cat in a garden",
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator("cpu").manual_seed(1234),
        output_type="np",
    )
    return pipe(**args, **extra).images


def _picture(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _mask() -> Image.Image:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    return Image.fromarray(mask)


@pytest.mark.parametrize("kind", tiny.FLOW_KINDS)
def test_each_family_builds_a_small_diffusers_folder_and_its_configs(built, kind):
    model, seconds = built[kind]
    index = json.loads((model.folder / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == PIPELINES[kind][0]
    # Tokenizer classes any transformers version loads from the files written (no spiece.model, no vocab.json).
    tokenizers = {entry[1] for name, entry in index.items() if name.startswith("tokenizer")}
    assert tokenizers <= {"CLIPTokenizer", "T5TokenizerFast", "Qwen2TokenizerFast"}
    weights = [p for p in model.folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in model.folder.rglob("*") if p.is_file()) < MAX_FOLDER_BYTES
    assert seconds < 30

    # The sidecar: every config and tokenizer file of the folder, no weights.
    config_files = _files(model.config)
    assert config_files == {
        name: data for name, data in _files(model.folder).items() if Path(name).suffix not in WEIGHT_SUFFIXES
    }
    assert "model_index.json" in config_files


@pytest.mark.parametrize("kind", tiny.FLOW_KINDS)
def test_a_second_build_finds_the_first(built, root, kind):
    model, _ = built[kind]
    before = {p: p.stat().st_mtime_ns for p in model.folder.rglob("*")}
    assert tiny.build(root, kind) == model
    assert {p: p.stat().st_mtime_ns for p in model.folder.rglob("*")} == before


def test_rebuilding_gives_byte_identical_files(built, tmp_path):
    for kind in tiny.FLOW_KINDS:
        model, _ = built[kind]
        again = tiny.build(tmp_path, kind)
        assert _files(again.folder) == _files(model.folder), kind
        assert _files(again.config) == _files(model.config), kind


def test_the_families_keep_their_real_vae_and_scheduler_settings(pipes):
    flux, sd3, zimage, klein = (pipes[k] for k in ("flux1", "sd3", "zimage", "flux2-klein"))
    for pipe in (flux, zimage):
        assert (pipe.vae.config.scaling_factor, pipe.vae.config.shift_factor) == (0.3611, 0.1159)
        assert pipe.vae.config.latent_channels == 16
    assert (sd3.vae.config.scaling_factor, sd3.vae.config.shift_factor) == (1.5305, 0.0609)
    assert klein.vae.config.latent_channels == 32
    for pipe in pipes.values():
        assert pipe.vae_scale_factor == 8

    assert flux.transformer.config.guidance_embeds  # dev takes the distilled guidance
    assert flux.scheduler.config.use_dynamic_shifting
    assert (flux.scheduler.config.base_shift, flux.scheduler.config.max_shift) == (0.5, 1.15)
    assert sd3.scheduler.config.shift == 3.0 and not sd3.scheduler.config.use_dynamic_shifting
    assert zimage.scheduler.config.shift == 3.0 and not zimage.scheduler.config.use_dynamic_shifting
    assert klein.config.is_distilled and not klein.transformer.config.guidance_embeds


def test_zimage_and_klein_read_the_same_tiny_qwen3_as_the_real_ones_do(pipes):
    zimage = pipes["zimage"].text_encoder.state_dict()
    klein = pipes["flux2-klein"].text_encoder.model.state_dict()
    assert zimage.keys() == klein.keys()
    assert all(torch.equal(zimage[name], klein[name]) for name in zimage)
    # FLUX.2 klein reads the encoder's layers 9, 18 and 27 side by side; Z-Image its last but one.
    encoder = pipes["flux2-klein"].text_encoder.config
    assert encoder.num_hidden_layers > 27
    assert pipes["flux2-klein"].transformer.config.joint_attention_dim == 3 * encoder.hidden_size
    assert pipes["zimage"].transformer.config.cap_feat_dim == encoder.hidden_size


def test_the_qwen_tokenizer_applies_the_chat_template_the_pipelines_ask_for(pipes):
    tokenizer = pipes["zimage"].tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a cat"}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert text == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    ids = tokenizer(text).input_ids
    assert tokenizer.convert_ids_to_tokens(ids[0]) == "<|im_start|>"
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("kind", tiny.FLOW_KINDS)
def test_the_tokenizers_take_any_text(pipes, kind):
    pipe = pipes[kind]
    odd = "Ünïcødé ☃ 東京 " + "very long prompt " * 300
    for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        tokenizer = getattr(pipe, name, None)
        if tokenizer is None:
            continue
        ids = tokenizer(odd, truncation=True, max_length=77).input_ids
        assert 0 < len(ids) <= 77
        assert all(0 <= i < len(tokenizer) for i in ids)


@pytest.mark.parametrize("kind", tiny.FLOW_KINDS)
def test_txt2img_makes_the_same_finite_picture_twice(pipes, kind):
    first = _run(pipes[kind], kind)
    second = _run(pipes[kind], kind)
    assert first.shape == (1, 64, 64, 3)
    assert np.isfinite(first).all()
    assert np.array_equal(first, second)


@pytest.mark.parametrize("kind", tiny.FLOW_KINDS)
def test_img2img_and_inpaint_pipelines_share_the_loaded_model(pipes, kind):
    import diffusers

    _, img2img_name, inpaint_name = PIPELINES[kind]
    if img2img_name:
        img2img = getattr(diffusers, img2img_name).from_pipe(pipes[kind])
        img2img.set_progress_bar_config(disable=True)
        out = _run(img2img, kind, image=_picture(1), strength=0.9)
        assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()
    inpaint = getattr(diffusers, inpaint_name).from_pipe(pipes[kind])
    inpaint.set_progress_bar_config(disable=True)
    assert inpaint.transformer is pipes[kind].transformer
    out = _run(inpaint, kind, image=_picture(2), mask_image=_mask(), strength=0.9)
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()
