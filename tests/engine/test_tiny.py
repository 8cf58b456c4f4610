"""The tiny models: one weight set, three ways to load it, all equal."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from desktop.engine import tiny
from desktop.engine.ldm_layout import to_original_layout

PIPELINES = {
    "sd1": "StableDiffusionPipeline",
    "sd1-inpaint": "StableDiffusionInpaintPipeline",
    "sdxl": "StableDiffusionXLPipeline",
}
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".gguf"}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="module")
def models(root) -> dict[str, tiny.TinyModel]:
    return {kind: tiny.build(root, kind) for kind in tiny.UNET_KINDS}


def _files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def _mtimes(model: tiny.TinyModel) -> dict[Path, int]:
    found = [model.checkpoint, *model.folder.rglob("*"), *model.config.rglob("*")]
    return {p: p.stat().st_mtime_ns for p in found}


def _pipeline_class(kind: str):
    import diffusers

    return getattr(diffusers, PIPELINES[kind])


def _generate(pipe, kind: str) -> np.ndarray:
    args = dict(
        prompt="a painting of a cat in a garden",
        negative_prompt="blurry",
        height=64,
        width=64,
        num_inference_steps=2,
        generator=torch.Generator("cpu").manual_seed(1234),
        output_type="np",
    )
    if kind == "sd1-inpaint":
        rng = np.random.default_rng(0)
        args["image"] = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[16:48, 16:48] = 255
        args["mask_image"] = Image.fromarray(mask)
    pipe.set_progress_bar_config(disable=True)
    return pipe(**args).images


def test_layout_on_disk(models, root):
    for kind, model in models.items():
        assert model.kind == kind
        assert model.folder == root / f"tiny-{kind}"
        assert model.checkpoint == root / f"tiny-{kind}.safetensors"
        assert model.config == root / f"tiny-{kind}.config"
        components = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]
        if kind == "sdxl":
            components += ["text_encoder_2", "tokenizer_2"]
        index = json.loads((model.folder / "model_index.json").read_text())
        assert index["_class_name"] == PIPELINES[kind]
        for name in components:
            assert (model.folder / name).is_dir()
            assert (model.config / name).is_dir()
        for name in ("unet", "vae", "text_encoder"):
            assert list((model.folder / name).glob("*.safetensors"))
        if kind != "sdxl":
            assert index["safety_checker"] == [None, None]
            assert index["feature_extractor"] == [None, None]
            assert index["requires_safety_checker"] is False

        # The sidecar is the folder without its weights, file for file.
        config_files = _files(model.config)
        assert not [f for f in config_files if Path(f).suffix in WEIGHT_SUFFIXES]
        folder_files = {k: v for k, v in _files(model.folder).items() if Path(k).suffix not in WEIGHT_SUFFIXES}
        assert config_files == folder_files


def test_vae_and_scheduler_are_like_real_sd(models):
    from diffusers import AutoencoderKL

    for kind, model in models.items():
        vae = AutoencoderKL.from_pretrained(model.folder / "vae", local_files_only=True)
        assert 2 ** (len(vae.config.block_out_channels) - 1) == 8
        assert vae.config.latent_channels == 4
        assert vae.config.scaling_factor == (0.13025 if kind == "sdxl" else 0.18215)
        scheduler = json.loads((model.folder / "scheduler" / "scheduler_config.json").read_text())
        assert scheduler["beta_start"] == 0.00085
        assert scheduler["beta_end"] == 0.012
        assert scheduler["beta_schedule"] == "scaled_linear"
        assert scheduler["num_train_timesteps"] == 1000
        assert scheduler["steps_offset"] == 1


@pytest.mark.parametrize("kind", tiny.UNET_KINDS)
def test_single_file_loads_the_same_model_as_the_folder(models, kind, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = models[kind]
    cls = _pipeline_class(kind)
    from_folder = cls.from_pretrained(model.folder, local_files_only=True)
    from_file = cls.from_single_file(str(model.checkpoint), config=str(model.config), local_files_only=True)

    modules = {k: v for k, v in from_folder.components.items() if isinstance(v, torch.nn.Module)}
    expected = {"unet", "vae", "text_encoder"} | ({"text_encoder_2"} if kind == "sdxl" else set())
    assert set(modules) == expected
    for name, module in modules.items():
        a, b = module.state_dict(), getattr(from_file, name).state_dict()
        assert a.keys() == b.keys(), name
        for key in a:
            assert a[key].device.type == "cpu" and b[key].device.type == "cpu", (name, key)
            assert torch.equal(a[key], b[key]), (name, key)
    assert dict(from_folder.scheduler.config) == dict(from_file.scheduler.config)
    assert from_folder.tokenizer.get_vocab() == from_file.tokenizer.get_vocab()

    image = _generate(from_folder, kind)
    assert image.shape == (1, 64, 64, 3)
    assert np.isfinite(image).all()
    assert image.std() > 0.01  # random weights, but not a flat image
    np.testing.assert_array_equal(image, _generate(from_file, kind))


def test_checkpoint_keys_follow_the_original_layout(models):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors.torch import load_file

    expected_type = {"sd1": "v1", "sd1-inpaint": "inpainting", "sdxl": "xl_base"}
    for kind, model in models.items():
        state = load_file(model.checkpoint)
        assert infer_diffusers_model_type(state) == expected_type[kind]
        assert state["model.diffusion_model.input_blocks.0.0.weight"].shape[1] == (9 if kind == "sd1-inpaint" else 4)
        assert state["first_stage_model.decoder.mid.attn_1.q.weight"].ndim == 4
        if kind == "sdxl":
            assert "model.diffusion_model.label_emb.0.0.weight" in state
            assert "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight" in state
            assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in state
            assert not [k for k in state if k.startswith("cond_stage_model.")]
        else:
            # output block 2 upsamples without attention, output block 5 after attention
            assert "model.diffusion_model.output_blocks.2.1.conv.weight" in state
            assert "model.diffusion_model.output_blocks.5.2.conv.weight" in state
            assert "model.diffusion_model.input_blocks.3.0.op.weight" in state
            assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in state
            assert not [k for k in state if k.startswith("conditioner.")]


def test_layout_details(models):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = models["sdxl"].folder
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True)
    te1 = CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True)
    te2 = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2", local_files_only=True)
    state = to_original_layout(unet, vae, [te1, te2], "sdxl")

    # the decoder's up blocks are numbered the other way round
    assert torch.equal(
        state["first_stage_model.decoder.up.3.block.0.conv1.weight"],
        vae.decoder.up_blocks[0].resnets[0].conv1.weight,
    )
    layer = te2.text_model.encoder.layers[3].self_attn
    in_proj = state["conditioner.embedders.1.model.transformer.resblocks.3.attn.in_proj_weight"]
    assert torch.equal(in_proj, torch.cat([layer.q_proj.weight, layer.k_proj.weight, layer.v_proj.weight]))
    assert torch.equal(state["conditioner.embedders.1.model.text_projection"], te2.text_projection.weight.T)

    with pytest.raises(ValueError):
        to_original_layout(unet, vae, [te1], "sdxl")
    with pytest.raises(ValueError):
        to_original_layout(unet, vae, [te1, te2], "sd3")


def test_tokenizer_handles_any_text(models):
    from transformers import CLIPTextConfig, CLIPTokenizer

    folder = models["sdxl"].folder
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    tokenizer_2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True)
    assert tokenizer.model_max_length == tokenizer_2.model_max_length == 77
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer_2.pad_token == "!"

    text = "a painting of a cat 🐱🎨, café, 東京, ∑ \u200b \x00 " + "word " * 100
    ids = tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    short = tokenizer("a cat 🐱").input_ids
    assert tokenizer.decode(short, skip_special_tokens=True) == "a cat 🐱"
    assert len(tokenizer("a painting").input_ids) == 4  # merges turn common words into single tokens

    for name in ("text_encoder", "text_encoder_2"):
        config = CLIPTextConfig.from_pretrained(folder / name, local_files_only=True)
        assert config.vocab_size == len(tokenizer)
        assert config.eos_token_id == tokenizer.eos_token_id
        assert config.max_position_embeddings == 77


def test_build_is_deterministic_and_idempotent(models, tmp_path, monkeypatch):
    reference = models["sd1"]
    again = tiny.build(tmp_path, "sd1")
    assert again == tiny.paths(tmp_path, "sd1")
    assert again.checkpoint.read_bytes() == reference.checkpoint.read_bytes()
    assert _files(again.folder) == _files(reference.folder)
    assert _files(again.config) == _files(reference.config)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []

    before = _mtimes(again)
    start = time.perf_counter()
    assert tiny.build(tmp_path, "sd1") == again
    assert time.perf_counter() - start < 0.5
    assert _mtimes(again) == before

    # A new VERSION rebuilds, in place.
    monkeypatch.setattr(tiny, "VERSION", tiny.VERSION + 1)
    tiny.build(tmp_path, "sd1")
    assert again.checkpoint.stat().st_mtime_ns != before[again.checkpoint]
    assert again.checkpoint.read_bytes() == reference.checkpoint.read_bytes()

    # A damaged build (here: a truncated checkpoint) is not taken for a finished one.
    with open(again.checkpoint, "r+b") as f:
        f.truncate(100)
    tiny.build(tmp_path, "sd1")
    assert again.checkpoint.read_bytes() == reference.checkpoint.read_bytes()


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def crash(staged):
        staged.folder.mkdir(parents=True)
        (staged.folder / "model_index.json").write_text("{}")
        raise RuntimeError("power cut")

    monkeypatch.setattr(tiny, "_write_model", crash)
    with pytest.raises(RuntimeError):
        tiny.build(tmp_path, "sd1")
    assert list(tmp_path.iterdir()) == []


def test_inpaint_variant_shares_weights_with_base(models):
    from safetensors.torch import load_file

    base = load_file(models["sd1"].checkpoint)
    inpaint = load_file(models["sd1-inpaint"].checkpoint)
    assert base.keys() == inpaint.keys()
    differing = [k for k in base if base[k].shape != inpaint[k].shape or not torch.equal(base[k], inpaint[k])]
    assert differing == ["model.diffusion_model.input_blocks.0.0.weight"]


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError):
        tiny.build(tmp_path, "sd4")
