"""The bundled diffusers config folders: complete, offline, and true to the real models.

No weights are involved: models are instantiated on the meta device, and the
checkpoint given to from_single_file is a one-tensor dummy.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from desktop.core import paths
from desktop.engine import bundled_configs
from desktop.engine.bundled_configs import FLOW_FAMILIES, UNET_FAMILIES, assemble_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "resources" / "configs"

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat"


# family -> what must hold (published facts of the original models)
FACTS = {
    "sd1": dict(
        pipeline="StableDiffusionPipeline", in_channels=4, cross=768, sample=64, prediction="epsilon",
        scaling=0.18215, vae_sample=512, linear=False, head_dim=8, text=[("CLIPTextModel", 768, 12)],
        pads=["<|endoftext|>"],
    ),
    "sd1-inpaint": dict(
        pipeline="StableDiffusionInpaintPipeline", in_channels=9, cross=768, sample=64, prediction="epsilon",
        scaling=0.18215, vae_sample=512, linear=False, head_dim=8, text=[("CLIPTextModel", 768, 12)],
        pads=["<|endoftext|>"],
    ),
    "sd2": dict(
        pipeline="StableDiffusionPipeline", in_channels=4, cross=1024, sample=96, prediction="v_prediction",
        scaling=0.18215, vae_sample=768, linear=True, head_dim=[5, 10, 20, 20], text=[("CLIPTextModel", 1024, 23)],
        pads=["!"],
    ),
    "sd2-inpaint": dict(
        pipeline="StableDiffusionInpaintPipeline", in_channels=9, cross=1024, sample=64, prediction="epsilon",
        scaling=0.18215, vae_sample=512, linear=True, head_dim=[5, 10, 20, 20], text=[("CLIPTextModel", 1024, 23)],
        pads=["!"],
    ),
    "sdxl": dict(
        pipeline="StableDiffusionXLPipeline", in_channels=4, cross=2048, sample=128, prediction="epsilon",
        scaling=0.13025, vae_sample=1024, linear=True, head_dim=[5, 10, 20],
        text=[("CLIPTextModel", 768, 12), ("CLIPTextModelWithProjection", 1280, 32)],
        pads=["<|endoftext|>", "!"],
    ),
    "sdxl-inpaint": dict(
        pipeline="StableDiffusionXLInpaintPipeline", in_channels=9, cross=2048, sample=128, prediction="epsilon",
        scaling=0.13025, vae_sample=1024, linear=True, head_dim=[5, 10, 20],
        text=[("CLIPTextModel", 768, 12), ("CLIPTextModelWithProjection", 1280, 32)],
        pads=["<|endoftext|>", "!"],
    ),
}

# Known parameter counts of the released models (UNet, VAE, text encoders).
# Inpainting UNets have 5 more input channels: 5 * 320 * 3 * 3 = 14,400 more.
PARAMETERS = {
    "sd1": (859_520_964, 83_653_863, [123_060_480]),
    "sd1-inpaint": (859_535_364, 83_653_863, [123_060_480]),
    "sd2": (865_910_724, 83_653_863, [340_387_840]),
    "sd2-inpaint": (865_925_124, 83_653_863, [340_387_840]),
    "sdxl": (2_567_463_684, 83_653_863, [123_060_480, 694_659_840]),
    "sdxl-inpaint": (2_567_478_084, 83_653_863, [123_060_480, 694_659_840]),
}


def _suffix(i: int) -> str:
    return f"_{i + 1}" if i else ""


pytestmark = pytest.mark.usefixtures("network_off")  # tests/engine/conftest.py


@pytest.fixture(scope="module")
def assembled(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("configs")
    return {family: assemble_config(family, root / family) for family in UNET_FAMILIES}


def test_every_family_is_bundled():
    assert set(bundled_configs.FAMILIES) == set(FACTS) | set(FLOW_FAMILIES)  # flow ones: test_bundled_flow_configs
    for family in bundled_configs.FAMILIES:
        assert (CONFIGS / family / "model_index.json").is_file()
    for name in ("vocab.json", "merges.txt", "LICENSE"):
        assert (CONFIGS / "clip-tokenizer" / name).is_file()
    # the vocabulary is stored once, not per family
    assert not list(CONFIGS.glob("*/tokenizer*/vocab.json"))


@pytest.mark.parametrize("family", UNET_FAMILIES)
def test_model_index(assembled, family):
    index = json.loads((assembled[family] / "model_index.json").read_text())
    facts = FACTS[family]
    assert index["_class_name"] == facts["pipeline"]
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    for i, (encoder_class, _, _) in enumerate(facts["text"]):
        assert index[f"text_encoder{_suffix(i)}"] == ["transformers", encoder_class]
        assert index[f"tokenizer{_suffix(i)}"] == ["transformers", "CLIPTokenizer"]
    if family.startswith("sd1") or family.startswith("sd2"):
        assert index["safety_checker"] == [None, None]
        assert index["feature_extractor"] == [None, None]
        assert index["requires_safety_checker"] is False
    else:
        assert "text_encoder_2" in index
        assert index["force_zeros_for_empty_prompt"] is True
    if family == "sdxl-inpaint":
        assert index["requires_aesthetics_score"] is False


@pytest.mark.parametrize("family", UNET_FAMILIES)
def test_unet_vae_scheduler_configs(assembled, family):
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    folder, facts = assembled[family], FACTS[family]

    unet = UNet2DConditionModel.load_config(folder, subfolder="unet", local_files_only=True)
    assert unet["in_channels"] == facts["in_channels"]
    assert unet["out_channels"] == 4
    assert unet["cross_attention_dim"] == facts["cross"]
    assert unet["sample_size"] == facts["sample"]
    assert unet["use_linear_projection"] is facts["linear"]
    assert unet["attention_head_dim"] == facts["head_dim"]
    if family.startswith("sdxl"):
        assert unet["addition_embed_type"] == "text_time"
        assert unet["addition_time_embed_dim"] == 256
        assert unet["projection_class_embeddings_input_dim"] == 2816
        assert unet["transformer_layers_per_block"] == [1, 2, 10]
        assert unet["block_out_channels"] == [320, 640, 1280]
    else:
        assert unet["block_out_channels"] == [320, 640, 1280, 1280]
        assert unet["addition_embed_type"] is None
    if family == "sd2":
        assert unet["upcast_attention"] is True

    vae = AutoencoderKL.load_config(folder, subfolder="vae", local_files_only=True)
    assert vae["scaling_factor"] == facts["scaling"]
    assert vae["sample_size"] == facts["vae_sample"]
    assert vae["latent_channels"] == 4
    assert vae["block_out_channels"] == [128, 256, 512, 512]
    if family.startswith("sdxl"):
        assert vae["force_upcast"] is True

    index = json.loads((folder / "model_index.json").read_text())
    scheduler = getattr(diffusers, index["scheduler"][1]).from_pretrained(
        folder, subfolder="scheduler", local_files_only=True
    )
    assert scheduler.config.prediction_type == facts["prediction"]
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_start == 0.00085
    assert scheduler.config.beta_end == 0.012
    assert scheduler.config.num_train_timesteps == 1000
    assert scheduler.config.steps_offset == 1
    assert scheduler.config.timestep_spacing == "leading"


@pytest.mark.parametrize("family", UNET_FAMILIES)
def test_text_encoders_and_tokenizers(assembled, family):
    from transformers import CLIPTextConfig, CLIPTokenizer

    folder, facts = assembled[family], FACTS[family]
    for i, ((encoder_class, hidden, layers), pad) in enumerate(zip(facts["text"], facts["pads"])):
        config = CLIPTextConfig.from_pretrained(folder / f"text_encoder{_suffix(i)}", local_files_only=True)
        assert config.architectures == [encoder_class]
        assert config.hidden_size == hidden
        assert config.num_hidden_layers == layers
        assert config.vocab_size == 49408
        assert config.max_position_embeddings == 77
        if encoder_class == "CLIPTextModelWithProjection":
            assert config.projection_dim == 1280

        tokenizer = CLIPTokenizer.from_pretrained(folder / f"tokenizer{_suffix(i)}", local_files_only=True)
        assert len(tokenizer) == 49408
        assert tokenizer.model_max_length == 77
        assert tokenizer.bos_token_id == 49406
        assert tokenizer.eos_token_id == 49407
        assert tokenizer.pad_token == pad
        assert tokenizer("a photo of a cat").input_ids == CAT_IDS
        padded = tokenizer("a photo of a cat", padding="max_length", max_length=77).input_ids
        assert len(padded) == 77
        assert padded[7] == tokenizer.convert_tokens_to_ids(pad)


@pytest.mark.parametrize("family", UNET_FAMILIES)
def test_full_size_parameter_counts(assembled, family):
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    import transformers

    folder = assembled[family]
    unet_size, vae_size, text_sizes = PARAMETERS[family]

    def count(model) -> int:
        return sum(p.numel() for p in model.parameters())

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        assert count(unet) == unet_size
        assert count(vae) == vae_size
        for i, (size, (encoder_class, _, _)) in enumerate(zip(text_sizes, FACTS[family]["text"])):
            config = transformers.CLIPTextConfig.from_pretrained(folder / f"text_encoder{_suffix(i)}")
            assert count(getattr(transformers, encoder_class)(config)) == size


@pytest.mark.parametrize("family", UNET_FAMILIES)
def test_from_single_file_uses_the_bundled_folder(assembled, family, tmp_path):
    """diffusers' own single-file loader reads model_index, scheduler and tokenizers from the folder.

    The models are passed in (built on the meta device from the same configs), so
    the checkpoint only has to exist.
    """
    import diffusers
    import torch
    import transformers
    from accelerate import init_empty_weights
    from safetensors.torch import save_file

    folder = assembled[family]
    checkpoint = tmp_path / "dummy.safetensors"
    save_file({"dummy": torch.zeros(1)}, str(checkpoint))
    index = json.loads((folder / "model_index.json").read_text())

    models = {}
    with init_empty_weights():
        for name in ("unet", "vae"):
            cls = getattr(diffusers, index[name][1])
            models[name] = cls.from_config(cls.load_config(folder / name))
        for name in ("text_encoder", "text_encoder_2"):
            if name in index:
                config = transformers.CLIPTextConfig.from_pretrained(folder / name, local_files_only=True)
                models[name] = getattr(transformers, index[name][1])(config)

    pipeline_class = getattr(diffusers, FACTS[family]["pipeline"])
    pipe = pipeline_class.from_single_file(str(checkpoint), config=str(folder), local_files_only=True, **models)

    assert type(pipe) is pipeline_class
    assert type(pipe.scheduler).__name__ == index["scheduler"][1]
    assert pipe.scheduler.config.prediction_type == FACTS[family]["prediction"]
    assert pipe.tokenizer("a photo of a cat").input_ids == CAT_IDS
    if family.startswith("sdxl"):
        assert pipe.tokenizer_2.pad_token == "!"
    else:
        assert pipe.safety_checker is None


# ---------------------------------------------------------------- assembly


def test_assembled_folder_is_complete(assembled):
    for family, folder in assembled.items():
        for tokenizer in [p for p in folder.iterdir() if p.name.startswith("tokenizer")]:
            for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
                assert (tokenizer / name).is_file(), (family, tokenizer.name, name)
        assert not list(folder.parent.glob(f".{family}.*")), "staging folder left behind"


def test_assemble_is_idempotent(tmp_path):
    dest = assemble_config("sd1", tmp_path / "sd1")
    vocab = dest / "tokenizer" / "vocab.json"
    before = vocab.stat()
    assert assemble_config("sd1", dest) == dest
    after = vocab.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_assemble_replaces_a_stale_copy(tmp_path):
    dest = assemble_config("sd2", tmp_path / "sd2")
    (dest / bundled_configs.STAMP).write_text("old")
    (dest / "scheduler" / "scheduler_config.json").write_text("{}")
    assemble_config("sd2", dest)
    scheduler = json.loads((dest / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == "v_prediction"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd2"]


def test_assemble_fills_an_empty_folder(tmp_path):
    (tmp_path / "sdxl").mkdir()
    dest = assemble_config("sdxl", tmp_path / "sdxl")
    assert (dest / "tokenizer_2" / "vocab.json").is_file()


def test_assemble_never_replaces_a_foreign_folder(tmp_path):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        assemble_config("sd1", dest)
    assert (dest / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_unknown_family_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown model family"):
        assemble_config("sd3", tmp_path / "sd3")


def test_cached_config_lives_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    folder = bundled_configs.cached_config("sd1-inpaint")
    assert folder == paths.cache_dir() / "configs" / "sd1-inpaint"
    assert (folder / "unet" / "config.json").is_file()


# ---------------------------------------------------------------- generator


@pytest.fixture
def make_configs(monkeypatch):
    """installer/make_configs.py, imported from its path (installer/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_configs", REPO / "installer" / "make_configs.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_configs", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_vocab_derivation_matches_the_stored_tokenizer(make_configs):
    merges = (CONFIGS / "clip-tokenizer" / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2"
    assert len(merges) == 1 + 48894
    # The original file: a header line, the merges, then more merges CLIP does not use.
    original = "\n".join(["bpe_simple_vocab_16e6.txt#version: 0.2", *merges[1:], "x y", "z w"])
    vocab, derived_merges = make_configs.clip_vocab_and_merges(original)
    assert derived_merges == merges[1:]
    stored = json.loads((CONFIGS / "clip-tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    assert vocab == stored
    assert len(vocab) == 49408
    assert vocab["<|startoftext|>"] == 49406
    assert vocab["<|endoftext|>"] == 49407
    assert vocab["!"] == 0
    assert vocab["cat</w>"] == 2368


def test_stored_configs_are_what_the_generator_writes(make_configs, tmp_path):
    make_configs.build(tmp_path / "configs", bpe=None)
    # Lenient: a newer diffusers/transformers may add keys with defaults; the values must agree.
    assert make_configs.differences(tmp_path / "configs", CONFIGS, strict=False) == []
