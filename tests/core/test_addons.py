"""LoRA and embedding files: where they are found, their previews and trigger words, A1111's hashes."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from desktop.core import addons, paths
from desktop.core.modelfiles import Family
from tests.support.addon_files import write_embedding, write_lora


def a1111(root):
    """An A1111 install: its checkpoint folder is the model folder the person added."""
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    return root / "models" / "Stable-diffusion"


def names(kind, folders):
    return [a.name for a in addons.list_addons(kind, folders)]


# -- where they are ------------------------------------------------------------------------------------


def test_loras_and_embeddings_of_each_app_layout_are_found(tmp_path):
    sd = a1111(tmp_path / "webui")
    write_lora(tmp_path / "webui/models/Lora/sub/add_detail.safetensors")
    write_lora(tmp_path / "webui/models/LyCORIS/locon.safetensors")
    write_embedding(tmp_path / "webui/embeddings/easynegative.safetensors")
    comfy = tmp_path / "ComfyUI/models/checkpoints"
    comfy.mkdir(parents=True)
    write_lora(tmp_path / "ComfyUI/models/loras/comfy_lora.safetensors")
    write_embedding(tmp_path / "ComfyUI/models/embeddings/comfy_emb.pt")
    invoke = tmp_path / "invokeai/models"
    (tmp_path / "invokeai/invokeai.yaml").parent.mkdir(parents=True)
    (tmp_path / "invokeai/invokeai.yaml").write_text("")
    write_lora(invoke / "sdxl/lora/invoke_lora.safetensors", "sdxl")
    write_embedding(invoke / "sd-1/embedding/invoke_emb.safetensors")
    write_lora(paths.models_dir() / "loras/own.safetensors")
    folders = [sd, comfy, invoke]
    assert names("lora", folders) == ["add_detail", "comfy_lora", "invoke_lora", "locon", "own"]
    assert names("embedding", folders) == ["comfy_emb", "easynegative", "invoke_emb"]


def test_a_lora_in_a_model_folder_is_told_by_its_header_and_checkpoints_are_not_listed(tmp_path):
    folder = tmp_path / "my models"
    write_lora(folder / "deep/a/b/styled.safetensors", "sdxl")
    write_embedding(folder / "bad_hands.safetensors")
    (folder / "broken.safetensors").write_bytes(b"not a model")
    found = addons.list_addons("lora", [folder])
    assert [(a.name, a.family) for a in found] == [("styled", Family.SDXL)]
    assert names("embedding", [folder]) == ["bad_hands"]


def test_the_demo_model_and_diffusers_parts_are_not_add_ons(tmp_path):
    write_lora(paths.demo_model_dir() / "unet/not_mine.safetensors")
    diffusers = tmp_path / "models/sd15"
    (diffusers / "model_index.json").parent.mkdir(parents=True)
    (diffusers / "model_index.json").write_text("{}")
    write_lora(diffusers / "unet/part.safetensors")
    assert names("lora", [tmp_path / "models"]) == []


def test_own_folders_are_made_only_when_asked():
    assert not addons.own_folder("lora").exists()
    assert names("lora", []) == []
    assert addons.ensure_own_folder("lora") == paths.models_dir() / "loras"
    assert addons.ensure_own_folder("embedding").is_dir()


def test_a_file_found_twice_through_a_link_is_listed_once(tmp_path):
    sd = a1111(tmp_path / "webui")
    write_lora(tmp_path / "webui/models/Lora/x.safetensors")
    os.symlink(tmp_path / "webui/models/Lora", tmp_path / "webui/models/LyCORIS")
    assert names("lora", [sd, sd]) == ["x"]


# -- find ------------------------------------------------------------------------------------------------


def test_find_matches_the_stem_ignoring_case_and_prefers_the_exact_one(tmp_path):
    sd = a1111(tmp_path / "webui")
    upper = write_lora(tmp_path / "webui/models/Lora/Add_Detail.safetensors")
    assert addons.find("lora", "add_detail", [sd]) == upper
    exact = write_lora(tmp_path / "webui/models/LyCORIS/add_detail.safetensors", seed=1)
    assert addons.find("lora", "add_detail", [sd]) == exact
    assert addons.find("lora", "missing", [sd]) is None
    assert addons.find("lora", "../webui/models/Lora/Add_Detail", [sd]) is None


def test_find_prefers_safetensors_then_the_first_folder(tmp_path):
    sd = a1111(tmp_path / "webui")
    write_lora(tmp_path / "webui/models/Lora/a/style.pt")  # taken by suffix in a LoRA folder
    safe = write_lora(tmp_path / "webui/models/Lora/b/style.safetensors")
    own = write_lora(paths.models_dir() / "loras/style.safetensors", seed=3)
    assert addons.find("lora", "style", [sd]) == own
    own.unlink()
    assert addons.find("lora", "style", [sd]) == safe


def test_an_embedding_is_not_found_as_a_lora(tmp_path):
    folder = tmp_path / "models"
    write_embedding(folder / "easynegative.safetensors")
    assert addons.find("lora", "easynegative", [folder]) is None
    assert addons.find("embedding", "EasyNegative", [folder]) == folder / "easynegative.safetensors"


# -- previews and trigger words ------------------------------------------------------------------------------


def test_preview_beside_the_file_as_a1111_and_civitai_helper_store_it(tmp_path):
    sd = a1111(tmp_path / "webui")
    lora = tmp_path / "webui/models/Lora"
    write_lora(lora / "plain.safetensors")
    write_lora(lora / "helper.safetensors")
    write_lora(lora / "both.safetensors")
    (lora / "helper.preview.png").write_bytes(b"png")
    (lora / "both.jpg").write_bytes(b"jpg")
    (lora / "both.preview.webp").write_bytes(b"webp")
    previews = {a.name: a.preview for a in addons.list_addons("lora", [sd])}
    assert previews == {"plain": None, "helper": lora / "helper.preview.png", "both": lora / "both.jpg"}


def test_trigger_words_from_sidecars_then_metadata(tmp_path):
    sd = a1111(tmp_path / "webui")
    lora = tmp_path / "webui/models/Lora"
    frequency = {"10_cat": {"cat": 30, "orange fur": 12, "1girl": 2}, "5_dog": {"cat": 5, "dog": 20}}
    write_lora(lora / "cats.safetensors", metadata={"ss_tag_frequency": json.dumps(frequency),
                                                     "modelspec.trigger_phrase": "catstyle"})
    (lora / "cats.json").write_text(json.dumps({"activation text": "my cat, best"}))
    (lora / "cats.civitai.info").write_text(json.dumps({"trainedWords": ["meow", "CATSTYLE"], "images": []}))
    [cats] = addons.list_addons("lora", [sd])
    assert cats.trigger_words == ("my cat, best", "meow", "CATSTYLE", "cat", "dog", "orange fur", "1girl")


def test_listing_reads_a_header_once_until_the_file_changes(tmp_path, monkeypatch):
    sd = a1111(tmp_path / "webui")
    path = write_lora(tmp_path / "webui/models/Lora/once.safetensors")
    calls = []
    real = addons.modelfiles.identify
    monkeypatch.setattr(addons.modelfiles, "identify", lambda p: calls.append(p) or real(p))
    addons.list_addons("lora", [sd])
    addons.list_addons("lora", [sd])
    assert len(calls) == 1
    write_lora(path, "sdxl")
    assert [a.family for a in addons.list_addons("lora", [sd])] == [Family.SDXL]
    assert len(calls) == 2


# -- hashes ----------------------------------------------------------------------------------------------------


def test_lora_hash_is_a1111s_addnet_hash_of_the_bytes_after_the_header(tmp_path):
    path = write_lora(tmp_path / "x.safetensors", metadata={"note": "metadata does not change the hash"})
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert addons.short_hash("lora", path) == hashlib.sha256(data[8 + n:]).hexdigest()[:12]
    other = write_lora(tmp_path / "y.safetensors", metadata={"note": "another"})
    assert addons.short_hash("lora", other) == addons.short_hash("lora", path)
    pt = tmp_path / "z.pt"
    pt.write_bytes(b"\x80\x02pickled")
    assert addons.short_hash("lora", pt) == hashlib.sha256(b"\x80\x02pickled").hexdigest()[:12]


def test_lora_hash_takes_kohyas_sshs_model_hash_as_a1111_does(tmp_path):
    given = "ab" * 32
    path = write_lora(tmp_path / "x.safetensors", metadata={"sshs_model_hash": given.upper()})
    assert addons.short_hash("lora", path) == given[:12]
    bad = write_lora(tmp_path / "y.safetensors", metadata={"sshs_model_hash": "<script>"})
    data = bad.read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert addons.short_hash("lora", bad) == hashlib.sha256(data[8 + n:]).hexdigest()[:12]


def test_embedding_hash_is_the_whole_files_sha256(tmp_path):
    path = write_embedding(tmp_path / "e.safetensors")
    assert addons.short_hash("embedding", path) == hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_hashes_are_cached_in_the_data_folder_until_the_file_changes(tmp_path, monkeypatch):
    path = write_embedding(tmp_path / "e.safetensors")
    first = addons.short_hash("embedding", path)
    assert addons.hash_cache_file().parent == paths.data_dir()
    assert any(v.startswith(first) for v in json.loads(addons.hash_cache_file().read_text()).values())
    monkeypatch.setattr(addons, "_sha256", lambda *a: pytest.fail("hashed again"))
    assert addons.short_hash("embedding", path) == first
    monkeypatch.undo()
    write_embedding(path, seed=5)
    assert addons.short_hash("embedding", path) != first


def test_find_by_hash(tmp_path):
    sd = a1111(tmp_path / "webui")
    path = write_lora(tmp_path / "webui/models/Lora/renamed_here.safetensors", seed=7)
    write_lora(tmp_path / "webui/models/Lora/other.safetensors", seed=8)
    short = addons.short_hash("lora", path)
    addons.hash_cache_file().unlink()
    assert addons.find_by_hash("lora", short.upper(), [sd]) == path
    assert addons.find_by_hash("lora", "0" * 12, [sd]) is None
    assert addons.find_by_hash("lora", "abc", [sd]) is None  # too short to mean one file
    assert addons.find_by_hash("embedding", short, [sd]) is None


# -- "Use all parameters" ---------------------------------------------------------------------------------------


def test_check_prompts_renames_what_is_found_by_hash_and_lists_what_is_missing(tmp_path):
    sd = a1111(tmp_path / "webui")
    write_lora(tmp_path / "webui/models/Lora/add_detail.safetensors")
    local = write_lora(tmp_path / "webui/models/Lora/detail_tweaker_v2.safetensors", seed=2)
    emb = write_embedding(tmp_path / "webui/embeddings/easyneg_local.safetensors")
    lora_hash, ti_hash = addons.short_hash("lora", local), addons.short_hash("embedding", emb)
    params = {"Lora hashes": f"add_detail: 111111111111, detailer: {lora_hash}, gone: 222222222222",
              "TI hashes": f"EasyNegative: {ti_hash}, badhands: 333333333333"}
    prompt = "a cat <lora:add_detail:0.7>, <lora:detailer:0.5:0.2> <lyco:gone:1> <lora:nohash>"
    check = addons.check_prompts(prompt, params, [sd])
    assert check.missing_loras == ("gone", "nohash")
    assert check.missing_embeddings == ("badhands",)
    assert check.rename(prompt) == ("a cat <lora:add_detail:0.7>, <lora:detail_tweaker_v2:0.5:0.2> "
                                    "<lyco:gone:1> <lora:nohash>")
    assert check.rename("EasyNegative, badhands, notEasyNegative") == "easyneg_local, badhands, notEasyNegative"
    message = check.message()
    assert message.startswith("Missing LoRAs: gone, nohash — put them in ")
    assert str(paths.models_dir() / "loras") in message
    assert "Missing embeddings: badhands" in message


def test_check_prompts_with_everything_here_says_nothing(tmp_path):
    sd = a1111(tmp_path / "webui")
    write_lora(tmp_path / "webui/models/Lora/a.safetensors")
    check = addons.check_prompts("<lora:a:1>", {"Lora hashes": "not a list"}, [sd])
    assert check.message() == "" and check.rename("<lora:a:1>") == "<lora:a:1>"

