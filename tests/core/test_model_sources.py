"""Finding other apps' model folders, and listing models as the Models window shows them."""

import json
import os
from pathlib import Path

import pytest

from desktop.core import model_sources, paths
from desktop.core.model_sources import (
    Source,
    detect_other_apps,
    human_size,
    list_models,
    parse_repo_id,
)
from desktop.core.modelfiles import Family


@pytest.fixture(autouse=True)
def no_invokeai_root(monkeypatch):
    monkeypatch.delenv("INVOKEAI_ROOT", raising=False)


def make(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


def test_nothing_is_found_in_an_empty_home(tmp_path):
    assert detect_other_apps(home=tmp_path, system_roots=[]) == []
    assert detect_other_apps(home=tmp_path / "missing", system_roots=[tmp_path / "no-opt"]) == []


def test_nothing_is_found_when_the_apps_have_no_models_folder(tmp_path):
    make(tmp_path / "stable-diffusion-webui" / "extensions")
    make(tmp_path / "ComfyUI" / "custom_nodes")
    (tmp_path / "invokeai").write_text("not a folder")
    assert detect_other_apps(home=tmp_path, system_roots=[]) == []


def test_finds_automatic1111_forge_comfyui_and_invokeai(tmp_path):
    a1111 = make(tmp_path / "stable-diffusion-webui" / "models" / "Stable-diffusion")
    forge = make(tmp_path / "Documents" / "stable-diffusion-webui-forge" / "models" / "Stable-diffusion")
    comfy = make(tmp_path / "AI" / "ComfyUI" / "models" / "checkpoints")
    invoke = make(tmp_path / "invokeai" / "models")
    make(tmp_path / "Documents" / "notes")  # unrelated folders are ignored

    found = detect_other_apps(home=tmp_path, system_roots=[])

    assert set(found) == {
        Source("AUTOMATIC1111", a1111),
        Source("Forge", forge),
        Source("ComfyUI", comfy),
        Source("InvokeAI", invoke),
    }


def test_finds_the_comfyui_portable_package_on_the_desktop(tmp_path):
    comfy = make(tmp_path / "Desktop" / "ComfyUI_windows_portable" / "ComfyUI" / "models" / "checkpoints")
    assert detect_other_apps(home=tmp_path, system_roots=[]) == [Source("ComfyUI", comfy)]


def test_invokeai_root_from_the_environment(tmp_path, monkeypatch):
    models = make(tmp_path / "elsewhere" / "invoke-root" / "models")
    monkeypatch.setenv("INVOKEAI_ROOT", str(models.parent))
    assert detect_other_apps(home=tmp_path / "home", system_roots=[]) == [Source("InvokeAI", models)]


def test_system_roots_are_searched_like_home(tmp_path):
    opt = tmp_path / "opt"
    comfy = make(opt / "ComfyUI" / "models" / "checkpoints")
    assert detect_other_apps(home=tmp_path / "home", system_roots=[opt]) == [Source("ComfyUI", comfy)]


def test_the_same_folder_reached_twice_is_listed_once(tmp_path):
    comfy = make(tmp_path / "ComfyUI" / "models" / "checkpoints")
    (tmp_path / "AI").symlink_to(tmp_path, target_is_directory=True)  # home/AI is home again
    assert detect_other_apps(home=tmp_path, system_roots=[]) == [Source("ComfyUI", comfy)]


def test_the_search_does_not_walk_deep(tmp_path):
    make(tmp_path / "projects" / "stable-diffusion-webui" / "models" / "Stable-diffusion")
    make(tmp_path / "Documents" / "old" / "ComfyUI" / "models" / "checkpoints")
    assert detect_other_apps(home=tmp_path, system_roots=[]) == []


def test_hub_cache_dir_is_where_downloads_land():
    from desktop.core import hub

    assert model_sources.hub_cache_dir() == hub.cache_dir()


@pytest.mark.parametrize(
    ("text", "repo"),
    [
        ("acme/tiny-model", "acme/tiny-model"),
        ("  Acme/Tiny_Model.v2 ", "Acme/Tiny_Model.v2"),
        ("https://huggingface.co/acme/tiny-model", "acme/tiny-model"),
        ("https://huggingface.co/acme/tiny-model/tree/main", "acme/tiny-model"),
        ("hf.co/acme/tiny-model", "acme/tiny-model"),
        ("acme", None),
        ("acme/", None),
        ("/tiny", None),
        ("acme/tiny/extra", None),
        ("acme/ti ny", None),
        ("acme/..", None),
        ("acme/a--b", None),
        ("", None),
    ],
)
def test_parse_repo_id(text, repo):
    assert parse_repo_id(text) == repo


def test_human_size():
    assert [human_size(n) for n in (0, 512, 2048, 5 * 2**20, 2 * 2**30 + 2**29)] == [
        "", "512 bytes", "2 KB", "5 MB", "2.5 GB"
    ]


# ----------------------------------------------------------------- list_models


def write_safetensors(path: Path, names: list[str], metadata: dict | None = None) -> Path:
    header = {name: {"dtype": "F16", "shape": [1], "data_offsets": [2 * i, 2 * i + 2]} for i, name in enumerate(names)}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"\0" * (2 * len(names)))
    return path


SD1_KEYS = ["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"]
LORA_KEYS = ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"]


def write_diffusers(folder: Path, with_weights: bool = True) -> Path:
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "unet" / "config.json").write_text(json.dumps({"in_channels": 4, "cross_attention_dim": 768}))
    if with_weights:
        (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 10)
    return folder


def test_list_models_searches_own_folders_and_added_ones_and_skips_the_demo(tmp_path):
    own = write_safetensors(paths.models_dir() / "mine.safetensors", SD1_KEYS)
    write_diffusers(paths.demo_model_dir())
    added = tmp_path / "added"
    lora = write_safetensors(added / "style.safetensors", LORA_KEYS)
    broken = added / "broken.safetensors"
    broken.write_bytes(b"\x10\x00")
    write_diffusers(model_sources.hub_cache_dir() / "models--acme--tiny" / "snapshots" / "abc123")
    write_diffusers(model_sources.hub_cache_dir() / "models--acme--half" / "snapshots" / "def456", False)

    entries = {e.name: e for e in list_models([str(added)])}

    assert set(entries) == {"mine", "style", "broken", "acme/tiny", "acme/half"}
    assert [e.name for e in list_models([str(added)])][:2] == ["acme/tiny", "mine"]  # usable first
    mine = entries["mine"]
    assert (mine.usable, mine.own, mine.folder, mine.path) == (True, True, paths.models_dir(), own)
    assert (mine.family_label, mine.info.format, mine.info.family) == ("SD 1.x", "safetensors", Family.SD1)
    assert entries["style"].problem == "a LoRA, not a full model" and entries["style"].path == lora
    assert not entries["style"].own and entries["style"].folder == added
    assert entries["broken"].problem.startswith("not a valid model file: ")
    assert entries["acme/tiny"].usable and entries["acme/tiny"].info.format == "diffusers"
    assert entries["acme/tiny"].folder == model_sources.hub_cache_dir()
    assert entries["acme/half"].problem.startswith("the download did not finish (unet has no weights)")


def test_list_models_copes_with_missing_folders(tmp_path):
    assert list_models([str(tmp_path / "gone"), str(tmp_path / "also-gone")]) == []
    assert not os.path.exists(paths.models_dir())


def test_model_sources_imports_neither_qt_nor_torch():
    import subprocess
    import sys

    probe = "import sys, desktop.core.model_sources; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
            "('torch', 'diffusers', 'transformers', 'PySide6', 'huggingface_hub')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


UPSCALER_LAYOUTS = {
    "ESRGAN-old": ["model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight", "model.10.weight"],
    "RealESRGAN_x4plus": ["conv_first.weight", "body.0.rdb1.conv1.weight", "conv_up1.weight", "conv_last.weight"],
    "realesr-general-x4v3": ["body.0.weight", "body.1.weight", "body.2.weight", "body.3.weight"],
    "SwinIR-M": ["conv_first.weight", "layers.0.residual_group.blocks.0.norm1.weight", "conv_after_body.weight"],
}


def test_upscalers_are_listed_as_upscalers_not_checkpoints(tmp_path):
    for name, keys in UPSCALER_LAYOUTS.items():
        write_safetensors(tmp_path / "ESRGAN" / f"{name}.safetensors", keys)
    write_safetensors(tmp_path / "ESRGAN" / "style.safetensors", LORA_KEYS)
    entries = {e.name: e for e in list_models([str(tmp_path)])}
    for name in UPSCALER_LAYOUTS:
        assert entries[name].info.kind == "upscaler", name
        assert not entries[name].usable
        assert entries[name].problem == "an upscaler (for Upscale and `sfumato upscale`), not a full model"
    assert entries["style"].info.kind == "lora"
