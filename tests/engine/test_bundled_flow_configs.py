"""The bundled configs of the flow-matching families: true to the released models, loadable offline.

Models are instantiated on the meta device (no weights); the checkpoint given to
from_single_file is a one-tensor dummy. The T5 and Qwen3 vocabularies are not
bundled, so the tokenizers they need are named, and the user's copies go in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from desktop.engine import bundled_configs
from desktop.engine.bundled_configs import FLOW_FAMILIES, assemble_config

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat" in CLIP's vocabulary
B = 1_000_000_000
M = 1_000_000

# family -> (transformer, VAE, [text encoders]) parameter counts, with the published sizes they match:
# FLUX.1 12 B, SD3.5 Medium 2.5 B (2.2 B of it the transformer), SD3.5 Large 8.1 B, Z-Image 6 B,
# FLUX.2 klein 4 B / 9 B; CLIP-L 123 M, OpenCLIP bigG 695 M, T5-XXL encoder 4.76 B, Qwen3 4.0 B / 8.2 B.
PARAMETERS = {
    "flux1-dev": (11_901_408_320, 83_819_683, [123_060_480, 4_762_310_656]),
    "flux1-schnell": (11_891_178_560, 83_819_683, [123_060_480, 4_762_310_656]),
    "flux1-fill": (11_902_391_360, 83_819_683, [123_060_480, 4_762_310_656]),
    "sd3.5-medium": (2_243_171_520, 83_819_683, [123_650_304, 694_659_840, 4_762_310_656]),
    "sd3.5-large": (8_056_627_520, 83_819_683, [123_650_304, 694_659_840, 4_762_310_656]),
    "zimage-turbo": (6_154_908_736, 83_819_683, [4_022_468_096]),
    "flux2-klein-4b": (3_875_544_576, 84_046_115, [4_022_468_096]),
    "flux2-klein-9b": (9_078_581_248, 84_046_115, [8_190_735_360]),
}

FACTS = {
    "flux1-dev": dict(pipeline="FluxPipeline", shift=3.0, dynamic=True, latents=16, scaling=0.3611, guidance=True,
                      missing=["tokenizer_2"]),
    "flux1-schnell": dict(pipeline="FluxPipeline", shift=1.0, dynamic=False, latents=16, scaling=0.3611,
                          guidance=False, missing=["tokenizer_2"]),
    "flux1-fill": dict(pipeline="FluxFillPipeline", shift=3.0, dynamic=True, latents=16, scaling=0.3611,
                       guidance=True, missing=["tokenizer_2"]),
    "sd3.5-medium": dict(pipeline="StableDiffusion3Pipeline", shift=3.0, dynamic=False, latents=16, scaling=1.5305,
                         missing=["tokenizer_3"]),
    "sd3.5-large": dict(pipeline="StableDiffusion3Pipeline", shift=3.0, dynamic=False, latents=16, scaling=1.5305,
                        missing=["tokenizer_3"]),
    "zimage-turbo": dict(pipeline="ZImagePipeline", shift=3.0, dynamic=False, latents=16, scaling=0.3611,
                         missing=["tokenizer"]),
    "flux2-klein-4b": dict(pipeline="Flux2KleinPipeline", shift=3.0, dynamic=True, latents=32, scaling=None,
                           missing=["tokenizer"]),
    "flux2-klein-9b": dict(pipeline="Flux2KleinPipeline", shift=3.0, dynamic=True, latents=32, scaling=None,
                           missing=["tokenizer"]),
}


pytestmark = pytest.mark.usefixtures("network_off")  # tests/engine/conftest.py


@pytest.fixture(scope="module")
def assembled(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flow-configs")
    return {family: assemble_config(family, root / family) for family in FLOW_FAMILIES}


def _models(folder: Path) -> dict:
    """Every model of the folder, built from its configs on the meta device."""
    import diffusers
    import torch
    import transformers

    index = json.loads((folder / "model_index.json").read_text())
    models = {}
    with torch.device("meta"):  # (accelerate's init_empty_weights leaves tied embeddings untied)
        for name in ("transformer", "vae"):
            cls = getattr(diffusers, index[name][1])
            models[name] = cls.from_config(cls.load_config(folder / name))
        for name in index:
            if name.startswith("text_encoder"):
                config = transformers.AutoConfig.from_pretrained(folder / name, local_files_only=True)
                models[name] = getattr(transformers, index[name][1])(config)
    return models


def test_every_flow_family_is_bundled_as_json_only():
    root = bundled_configs.configs_root()
    for family in FLOW_FAMILIES:
        files = [p for p in (root / family).rglob("*") if p.is_file()]
        assert (root / family / "model_index.json") in files
        assert all(p.suffix == ".json" for p in files), family
        assert sum(p.stat().st_size for p in files) < 64_000, family


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_parameter_counts_are_the_released_models(assembled, family):
    transformer, vae, texts = PARAMETERS[family]
    models = _models(assembled[family])
    count = {name: sum(p.numel() for p in model.parameters()) for name, model in models.items()}
    assert count["transformer"] == transformer
    assert count["vae"] == vae
    assert [count[name] for name in sorted(count) if name.startswith("text_encoder")] == texts


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_scheduler_vae_and_guidance(assembled, family):
    import diffusers

    folder, facts = assembled[family], FACTS[family]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == facts["pipeline"]
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    assert scheduler.config.shift == facts["shift"]
    assert scheduler.config.use_dynamic_shifting is facts["dynamic"]
    vae = json.loads((folder / "vae" / "config.json").read_text())
    assert vae["latent_channels"] == facts["latents"]
    if facts["scaling"] is not None:
        assert vae["scaling_factor"] == facts["scaling"]
    if "guidance" in facts:
        assert json.loads((folder / "transformer" / "config.json").read_text())["guidance_embeds"] is facts["guidance"]
    if family.startswith("flux2-klein"):
        assert index["is_distilled"] is True


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_the_missing_tokenizers_are_named_with_what_they_need(family):
    assert bundled_configs.missing_tokenizers(family) == FACTS[family]["missing"]
    for name in bundled_configs.missing_tokenizers(family):
        need = bundled_configs.tokenizer_need(family, name)
        assert need.files and "/" in need.source and need.label.startswith("the ")
    assert bundled_configs.missing_tokenizers("sdxl") == []


def test_the_clip_tokenizers_of_flux_and_sd3_are_complete(assembled):
    from transformers import CLIPTokenizer

    for family, pads in (("flux1-dev", ["<|endoftext|>"]), ("sd3.5-large", ["<|endoftext|>", "!"])):
        for i, pad in enumerate(pads):
            tokenizer = CLIPTokenizer.from_pretrained(assembled[family] / f"tokenizer{f'_{i + 1}' if i else ''}")
            assert tokenizer("a photo of a cat").input_ids == CAT_IDS
            assert tokenizer.pad_token == pad
    # T5's folder holds its settings only: the CLIP vocabulary is not copied into it
    t5 = assembled["flux1-dev"] / "tokenizer_2"
    assert sorted(p.name for p in t5.iterdir()) == ["special_tokens_map.json", "tokenizer_config.json"]
    assert not (assembled["zimage-turbo"] / "tokenizer").exists()


def test_supplied_tokenizer_files_are_copied_in(tmp_path):
    mine = tmp_path / "t5"
    mine.mkdir()
    (mine / "spiece.model").write_bytes(b"not really sentencepiece")
    assert bundled_configs.lacking("flux1-dev") == ["tokenizer_2"]
    assert bundled_configs.lacking("flux1-dev", {"tokenizer_2": tmp_path}) == ["tokenizer_2"]
    assert bundled_configs.lacking("flux1-dev", {"tokenizer_2": mine}) == []

    bare = assemble_config("flux1-dev", tmp_path / "cfg")
    assert not (bare / "tokenizer_2" / "spiece.model").exists()
    done = assemble_config("flux1-dev", tmp_path / "cfg", {"tokenizer_2": mine})
    assert (done / "tokenizer_2" / "spiece.model").read_bytes() == b"not really sentencepiece"
    assert (done / "tokenizer_2" / "tokenizer_config.json").is_file()
    with pytest.raises(ValueError, match="bundled"):
        assemble_config("flux1-dev", tmp_path / "other", {"tokenizer": mine})


@pytest.mark.parametrize("family", [f for f in FLOW_FAMILIES if not f.startswith("flux2-klein")])
def test_from_single_file_uses_the_bundled_folder(assembled, family, tmp_path):
    """diffusers' single-file loader takes model_index, scheduler and the CLIP tokenizers from the folder.

    (diffusers has no from_single_file for Flux2KleinPipeline; its components load one by one.)
    """
    import diffusers
    import torch
    from safetensors.torch import save_file

    folder = assembled[family]
    checkpoint = tmp_path / "dummy.safetensors"
    save_file({"dummy": torch.zeros(1)}, str(checkpoint))
    models = _models(folder)
    models.update({name: None for name in bundled_configs.missing_tokenizers(family)})
    pipeline_class = getattr(diffusers, FACTS[family]["pipeline"])
    pipe = pipeline_class.from_single_file(str(checkpoint), config=str(folder), local_files_only=True, **models)
    assert type(pipe) is pipeline_class
    assert pipe.scheduler.config.shift == FACTS[family]["shift"]
    if family != "zimage-turbo":
        assert pipe.tokenizer("a photo of a cat").input_ids == CAT_IDS
