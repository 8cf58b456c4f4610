"""The gallery store: add, search, favourite, delete and undo, rebuild, refresh, import, export."""

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from desktop.core.gallery import export as exporting
from desktop.core.gallery.index import Query
from desktop.core.gallery.metadata import read_image_meta
from desktop.core.gallery.store import HOLDING_NAME, INDEX_NAME, GalleryStore
from desktop.core.infotext import parse_infotext

from tests.support.requests import make_request


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "outputs"


def open_store(folder, tmp_path, trashed=None):
    trash = (lambda p: (trashed.append(p.name), p.unlink())) if trashed is not None else None
    kwargs = {"trash": trash} if trash else {}
    return GalleryStore(folder, tmp_path / "thumbs", **kwargs)


def picture(seed=0, w=64, h=48):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def add(store, prompt, seed, model="tiny", **fields):
    request = make_request(prompt=prompt, seed=seed, width=64, height=64, **fields).resolved()
    return store.index.by_path(store.relative(store.add_result(picture(seed), request, seed, model)))


def test_a_result_is_saved_indexed_and_found_by_its_words(folder, tmp_path):
    store = open_store(folder, tmp_path)
    lighthouse = add(store, "a lighthouse at dusk, oil painting", 11, negative_prompt="blurry")
    add(store, "a red barn in snow", 12, model="other")
    assert store.path(lighthouse).is_file() and lighthouse.path.startswith(f"{lighthouse.path[:10]}/")
    assert (lighthouse.prompt, lighthouse.seed, lighthouse.model, lighthouse.width) == (
        "a lighthouse at dusk, oil painting", 11, "tiny", 64)
    assert lighthouse.source == "sfumato" and "Seed: 11" in lighthouse.parameters
    assert store.search(Query("lighth")) == [lighthouse.id], "words match as prefixes"
    assert store.search(Query("blurry")) == [lighthouse.id], "the negative prompt is searched too"
    assert store.search(Query("other")) != [] and store.search(Query('"; DROP TABLE images; --')) == []
    assert len(store.search(Query())) == 2
    assert store.search(Query(model="other"))[0] != lighthouse.id
    assert store.search(Query(sort="oldest"))[0] == lighthouse.id
    assert store.search(Query(sort="newest"))[-1] == lighthouse.id


def test_favourites_survive_a_rebuild_of_the_index(folder, tmp_path):
    store = open_store(folder, tmp_path)
    keep = add(store, "keeper", 1)
    add(store, "other", 2)
    store.set_favourite([keep.id], True)
    assert store.search(Query(favourites=True)) == [keep.id]
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{folder / INDEX_NAME}{suffix}").unlink(missing_ok=True)
    again = open_store(folder, tmp_path)
    assert len(again.search(Query())) == 2
    favourites = again.records(again.search(Query(favourites=True)))
    assert [r.prompt for r in favourites.values()] == ["keeper"]


def test_a_corrupt_index_is_set_aside_and_rebuilt_with_a_notice(folder, tmp_path):
    store = open_store(folder, tmp_path)
    add(store, "survivor", 5)
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{folder / INDEX_NAME}{suffix}").unlink(missing_ok=True)
    (folder / INDEX_NAME).write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    again = open_store(folder, tmp_path)
    assert "rebuilt" in again.notice and "1 pictures" in again.notice
    assert [r.prompt for r in again.records(again.search(Query())).values()] == ["survivor"]
    assert list(folder.glob(f"{INDEX_NAME}.bad-*")), "the damaged file is kept aside, not deleted"


def test_refresh_picks_up_files_added_and_removed_by_hand(folder, tmp_path):
    store = open_store(folder, tmp_path)
    gone = add(store, "to be removed", 1)
    (folder / "by-hand").mkdir(parents=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a hand-made cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 77, Size: 64x48")
    Image.fromarray(picture(3)).save(folder / "by-hand" / "cat.png", pnginfo=info)
    (folder / "by-hand" / "notes.txt").write_text("not a picture")
    store.path(gone).unlink()
    assert store.refresh() == (1, 1)
    records = list(store.records(store.search(Query())).values())
    assert [(r.prompt, r.seed, r.path) for r in records] == [("a hand-made cat", 77, "by-hand/cat.png")]
    assert store.refresh() == (0, 0)


def test_delete_can_be_undone_then_goes_to_the_trash_on_close(folder, tmp_path):
    trashed = []
    store = open_store(folder, tmp_path, trashed)
    first, second = add(store, "first", 1), add(store, "second", 2)
    store.set_favourite([first.id], True)
    assert store.delete([first.id, second.id]) == (2, [])
    assert not store.path(first).exists() and store.search(Query()) == []
    restored = store.undo_delete()
    assert sorted(r.prompt for r in restored) == ["first", "second"] and store.path(first).is_file()
    assert [r.prompt for r in restored if r.favourite] == ["first"]
    store.delete([r.id for r in restored if r.prompt == "second"])
    store.close()
    assert trashed == [Path(second.path).name]
    assert not any((folder / HOLDING_NAME).rglob("*.png"))


def test_deletions_a_crash_left_behind_reach_the_trash_at_the_next_start(folder, tmp_path):
    trashed = []
    store = open_store(folder, tmp_path, trashed)
    record = add(store, "doomed", 1)
    store.delete([record.id])
    store.index.close()  # the app died: close() never ran
    open_store(folder, tmp_path, trashed)
    assert trashed == [Path(record.path).name]


def test_real_send2trash_moves_the_file_to_the_system_trash(folder, tmp_path):
    store = open_store(folder, tmp_path)
    record = add(store, "binned", 1)
    store.delete([record.id])
    store.close()
    trash = Path(os.environ["XDG_DATA_HOME"]) / "Trash" / "files"
    assert any(p.name.startswith(Path(record.path).stem) for p in trash.iterdir())


def test_thumbnails_are_small_and_cached(folder, tmp_path):
    store = open_store(folder, tmp_path)
    path = store.add_result(np.zeros((600, 1000, 3), np.uint8), make_request(width=1000, height=600).resolved(),
                            1, "m")
    big = store.index.by_path(store.relative(path))
    path = store.thumbnail(big)
    assert max(Image.open(path).size) == 256 and store.thumbnail(big) == path


# -- imports from other tools ----------------------------------------------------------------------

A1111 = ("masterpiece, a cat wearing a hat\nNegative prompt: lowres, bad hands\nSteps: 28, Sampler: DPM++ 2M, "
         "Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, Model hash: 6ce0161689, "
         "Model: dreamshaper_8, Denoising strength: 0.4, Version: v1.9.4")
FOOOCUS = json.dumps({"prompt": "a fox in a forest", "negative_prompt": "ugly", "steps": 30, "guidance_scale": 4.0,
                      "seed": "42", "resolution": "(1024, 1024)", "sampler": "dpmpp_2m_sde_gpu",
                      "base_model": "juggernautXL_v8Rundiffusion"})
COMFY = json.dumps({
    "3": {"class_type": "KSampler", "inputs": {"seed": 99, "steps": 25, "cfg": 8.0, "sampler_name": "euler_ancestral",
                                               "scheduler": "karras", "model": ["4", 0], "positive": ["6", 0],
                                               "negative": ["7", 0], "latent_image": ["5", 0], "denoise": 1}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle on a hill", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark", "clip": ["4", 1]}},
})
INVOKE = json.dumps({"positive_prompt": "an astronaut riding a horse", "negative_prompt": "blurry", "seed": 3141,
                     "steps": 30, "cfg_scale": 7.5, "scheduler": "dpmpp_2m_k", "width": 768, "height": 512,
                     "model": {"name": "stable-diffusion-v1-5", "base": "sd-1"}, "generation_mode": "txt2img"})


@pytest.mark.parametrize("key, text, expected", [
    ("parameters", A1111, ("masterpiece, a cat wearing a hat", "lowres, bad hands", 1234567, "dreamshaper_8", 28)),
    ("parameters", FOOOCUS, ("a fox in a forest", "ugly", 42, "juggernautXL_v8Rundiffusion", 30)),
    ("prompt", COMFY, ("a castle on a hill", "watermark", 99, "sd_xl_base_1.0", 25)),
    ("invokeai_metadata", INVOKE, ("an astronaut riding a horse", "blurry", 3141, "stable-diffusion-v1-5", 30)),
])
def test_imports_read_the_parameters_of_other_tools(folder, tmp_path, key, text, expected):
    source = tmp_path / "elsewhere" / "made there.png"
    source.parent.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text(key, text)
    Image.fromarray(picture(1)).save(source, pnginfo=info)
    store = open_store(folder, tmp_path)
    (record,), problems = store.import_files([source])
    assert problems == [] and store.path(record).read_bytes() == source.read_bytes()
    assert (record.prompt, record.negative_prompt, record.seed, record.model, record.steps) == expected
    parsed = parse_infotext(record.parameters)
    assert parsed.prompt == expected[0] and parsed.params["Seed"] == str(expected[2])


def test_comfyui_sampler_and_size_and_invokeai_scheduler_names_are_translated(tmp_path):
    comfy = tmp_path / "c.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", COMFY)
    Image.new("RGB", (8, 8)).save(comfy, pnginfo=info)
    meta, width, height = read_image_meta(comfy)
    assert (meta.sampler, meta.schedule, meta.width, meta.height, meta.cfg_scale) == ("Euler a", "Karras", 1024, 768, 8.0)
    assert meta.source == "comfyui" and (width, height) == (8, 8)


def test_imports_refuse_what_is_not_a_picture(folder, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"hello")
    text = tmp_path / "notes.txt"
    text.write_text("x")
    records, problems = open_store(folder, tmp_path).import_files([fake, text])
    assert records == [] and len(problems) == 2 and "fake.png" in problems[0]


# -- export ------------------------------------------------------------------------------------------


def png_chunks(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.append(kind.decode("ascii"))
        at += 12 + length
    return chunks


def jpeg_segments(path):
    data = Path(path).read_bytes()
    segments, at = [], 2
    while at < len(data):
        marker = data[at + 1]
        if marker == 0xDA:  # start of scan: compressed data follows
            segments.append("SOS")
            break
        length = struct.unpack(">H", data[at + 2:at + 4])[0]
        segments.append(f"APP{marker - 0xE0}" if 0xE0 <= marker <= 0xEF else "COM" if marker == 0xFE else hex(marker))
        at += 2 + length
    return segments


def webp_chunks(path):
    data = Path(path).read_bytes()
    chunks, at = [], 12
    while at < len(data):
        kind, length = data[at:at + 4].decode("ascii"), struct.unpack("<I", data[at + 4:at + 8])[0]
        chunks.append(kind)
        at += 8 + length + (length & 1)
    return chunks


@pytest.fixture
def one_export(folder, tmp_path):
    store = open_store(folder, tmp_path)
    record = add(store, "a lighthouse, at dusk: gold", 31, negative_prompt="fog")
    # A stray ICC profile and an EXIF block in the source must not leak into a stripped export.
    path = store.path(record)
    with Image.open(path) as image:
        text = dict(image.text)
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    exif = Image.Exif()
    exif[0x010E] = "description"
    Image.fromarray(picture(31)).save(path, pnginfo=info, icc_profile=b"\0" * 200, exif=exif.tobytes())
    store.refresh()
    return store, store.record(record.id), text["parameters"]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_stripped_export_carries_no_metadata_at_all(one_export, tmp_path, fmt):
    store, record, _ = one_export
    out = exporting.export([(record, store.path(record))], exporting.ExportOptions(
        tmp_path / "out", format=fmt, keep_metadata=False, keep_mark=False))[0]  # the mark: tests/core/test_marking.py
    if fmt == "PNG":
        assert set(png_chunks(out)) <= {"IHDR", "IDAT", "IEND"}
    elif fmt == "JPEG":
        assert [s for s in jpeg_segments(out) if s.startswith(("APP", "COM"))] == ["APP0"]  # JFIF only
    else:
        assert set(webp_chunks(out)) <= {"VP8 ", "VP8L", "VP8X", "ALPH"}
        assert "EXIF" not in webp_chunks(out) and "ICCP" not in webp_chunks(out) and "XMP " not in webp_chunks(out)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_kept_export_reads_back_the_same_parameters(one_export, tmp_path, fmt):
    store, record, parameters = one_export
    out = exporting.export([(record, store.path(record))],
                           exporting.ExportOptions(tmp_path / "out", format=fmt, keep_metadata=True))[0]
    meta, _, _ = read_image_meta(out)
    assert meta.parameters == parameters
    assert parse_infotext(meta.parameters) == parse_infotext(parameters)
    if fmt == "JPEG":
        assert "APP1" in jpeg_segments(out)


def test_export_resizes_and_names_by_template(one_export, tmp_path):
    store, record, _ = one_export
    options = exporting.ExportOptions(tmp_path / "out", format="JPEG", max_side=32, template="{seed}_{prompt}")
    first, second = exporting.export([(record, store.path(record)), (record, store.path(record))], options)
    assert first.name == "31_a lighthouse, at dusk_ gold.jpg" and second.name == "31_a lighthouse, at dusk_ gold-2.jpg"
    assert max(Image.open(first).size) == 32
    with pytest.raises(ValueError, match="unknown fields"):
        exporting.check_template("{seed}-{colour}")


def test_a_stripped_export_leaves_the_prompt_out_of_the_default_file_name(one_export, tmp_path):
    store, record, _ = one_export
    stripped = exporting.export([(record, store.path(record))],
                                exporting.ExportOptions(tmp_path / "stripped", keep_metadata=False))[0]
    kept = exporting.export([(record, store.path(record))], exporting.ExportOptions(tmp_path / "kept"))[0]
    assert "lighthouse" not in stripped.name and stripped.name.endswith("-31.png")
    assert "lighthouse" in kept.name
    own = exporting.ExportOptions(tmp_path / "own", template="{prompt}", keep_metadata=False)
    assert exporting.export([(record, store.path(record))], own)[0].name == "a lighthouse, at dusk_ gold.png"


@pytest.mark.parametrize("hostile, expected", [
    ("../x", "x"), ("..\\..\\windows", "windows"), ("CON", "_CON"), ("aux.txt", "_aux.txt"), ("lpt9", "_lpt9"),
    ("a/b\\c:d*e?f\"g<h>i|j", "a_b_c_d_e_f_g_h_i_j"), ("tab\there\nnew", "tab_here_new"), ("   ", "picture"),
    ("x" * 300, "x" * 120), ("trailing dots...", "trailing dots"), (".hidden", "hidden"),
])
def test_hostile_names_are_made_safe(hostile, expected):
    assert exporting.safe_name(hostile) == expected


def test_a_template_cannot_climb_out_of_the_folder(one_export, tmp_path):
    store, record, _ = one_export
    from dataclasses import replace

    evil = replace(record, prompt="../../etc/passwd", seed=1)
    out = exporting.export([(evil, store.path(record))],
                           exporting.ExportOptions(tmp_path / "out", template="{prompt}"))[0]
    assert out.parent == tmp_path / "out" and ".." not in out.name


# -- what a review found ---------------------------------------------------------------------------------


def test_undo_never_loses_a_picture_whose_name_was_taken_meanwhile(folder, tmp_path):
    store = open_store(folder, tmp_path, [])
    record = add(store, "the original", 42)
    original = store.path(record).read_bytes()
    store.delete([record.id])
    again = add(store, "made again with the same seed", 42)  # the same name, 00001-42.png
    assert again.path == record.path
    restored = store.undo_delete()
    assert len(restored) == 1 and restored[0].path != record.path
    assert store.path(restored[0]).read_bytes() == original and store.path(again).is_file()


def test_a_multi_delete_goes_on_past_a_missing_or_locked_file(folder, tmp_path, monkeypatch):
    store = open_store(folder, tmp_path, [])
    records = [add(store, f"p{i}", i) for i in range(4)]
    store.path(records[1]).unlink()  # deleted by hand
    real_replace = os.replace
    locked = store.path(records[2])

    def replace(source, target):
        if Path(source) == locked:
            raise PermissionError(13, "Permission denied")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    count, problems = store.delete([r.id for r in records])
    monkeypatch.undo()
    assert count == 3 and len(problems) == 1 and locked.name in problems[0]
    assert [r.path for r in store.records(store.search(Query())).values()] == [records[2].path], "the locked one stays"
    assert sorted(r.prompt for r in store.undo_delete()) == ["p0", "p3"]


def test_favourites_survive_their_folder_being_away_for_a_while(folder, tmp_path, monkeypatch):
    store = open_store(folder, tmp_path)
    liked = add(store, "liked", 1)
    store.set_favourite([liked.id], True)
    day = store.path(liked).parent
    real_scandir = os.scandir

    def unreachable(path):
        if Path(path) == day:
            raise OSError(5, "Input/output error")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", unreachable)
    assert store.refresh() == (0, 0), "an unreadable folder removes nothing"
    monkeypatch.undo()
    day.rename(tmp_path / "away")
    store.refresh()
    assert store.search(Query()) == []
    (tmp_path / "away").rename(day)
    store.refresh()
    assert [r.prompt for r in store.records(store.search(Query(favourites=True))).values()] == ["liked"]


def test_two_imports_of_same_named_pictures_keep_both(folder, tmp_path):
    import threading

    store = open_store(folder, tmp_path)
    sources = []
    for i in range(2):
        source = tmp_path / f"from-{i}" / "image.png"
        source.parent.mkdir()
        Image.fromarray(picture(i)).save(source)
        sources.append(source)
    results = []
    threads = [threading.Thread(target=lambda s=s: results.append(store.import_files([s]))) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = sorted(p.name for p in folder.rglob("*.png"))
    assert names == ["image-2.png", "image.png"]


def test_cjk_prompts_survive_a_jpeg_export(one_export, tmp_path):
    store, record, _ = one_export
    from dataclasses import replace

    text = "夕暮れの灯台、油絵\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 31, Size: 64x64"
    cjk = replace(record, parameters=text)
    source = tmp_path / "plain.png"
    Image.fromarray(picture(2)).save(source)
    out = exporting.export([(cjk, source)], exporting.ExportOptions(tmp_path / "out", format="JPEG"))[0]
    meta, _, _ = read_image_meta(out)
    assert meta.prompt == "夕暮れの灯台、油絵" and meta.seed == 31


def test_use_all_parameters_reads_old_combined_sampler_names():
    from desktop.core.gallery.metadata import meta_from_chunks, to_request

    meta = meta_from_chunks({"parameters": "a cat\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6, Seed: 9, "
                                           "Size: 512x768"})
    request = to_request(meta, make_request(sampler="Euler"))
    assert (request.sampling.sampler, request.sampling.schedule, request.width, request.height) == (
        "DPM++ 2M", "Karras", 512, 768)


def test_use_all_parameters_takes_clip_skip_from_an_a1111_picture():
    from desktop.core.gallery.metadata import meta_from_chunks, to_request

    text = "a cat\nSteps: 30, Sampler: Euler a, CFG scale: 6, Seed: 9, Size: 512x768, Clip skip: 2"
    assert to_request(meta_from_chunks({"parameters": text}), make_request()).conditioning.clip_skip == 2
    without = text.replace(", Clip skip: 2", "")  # A1111 leaves "Clip skip" out when it is 1
    assert to_request(meta_from_chunks({"parameters": without}), make_request(clip_skip=2)).conditioning.clip_skip == 1
    comfy = meta_from_chunks({"prompt": COMFY})  # a tool that never writes Clip skip: the panel's stays
    assert comfy.source == "comfyui" and to_request(comfy, make_request(clip_skip=2)).conditioning.clip_skip == 2


def test_use_all_parameters_on_an_img2img_picture_keeps_its_strength_and_inpaint_settings():
    from desktop.core.gallery.metadata import meta_from_chunks, to_request
    from desktop.core.outputs import metadata_chunks
    from desktop.core.request import Mode

    made = make_request(mode=Mode.IMG2IMG, prompt="a cat", seed=3, strength=0.35, mask_blur=12)
    request = to_request(meta_from_chunks(metadata_chunks(made, 3, "tiny")), make_request(model="mine", batch_size=4))
    assert (request.sampling.strength, request.inpaint.mask_blur, request.sampling.seed) == (0.35, 12, 3)
    assert request.sampling.batch_size == 1  # the picture is one image, whichever way it is read
    text = "a cat\nSteps: 30, Sampler: Euler a, CFG scale: 6, Seed: 9, Size: 512x768"
    assert to_request(meta_from_chunks({"parameters": text}), make_request(batch_size=4)).sampling.batch_size == 1


def test_a_sfumato_picture_records_clip_skip_and_reads_it_back(tmp_path):
    from desktop.core.gallery.metadata import meta_from_chunks, to_request
    from desktop.core.outputs import METADATA_VERSION, metadata_chunks

    request = make_request(prompt="a cat", seed=3, clip_skip=2).resolved()
    chunks = metadata_chunks(request, 3, "tiny")
    assert "Clip skip: 2" in chunks["parameters"] and json.loads(chunks["sfumato"])["version"] == METADATA_VERSION
    assert to_request(meta_from_chunks(chunks), make_request(model="mine")) == request.replace(model="mine")


def test_a_picture_saved_with_the_version_1_flat_request_still_reads_back():
    """Pictures in people's galleries carry the flat request of METADATA_VERSION 1 in their `sfumato` chunk."""
    from desktop.core.gallery.metadata import meta_from_chunks, to_request
    from desktop.core.request import Mode

    flat = {"mode": "txt2img", "prompt": "a lighthouse", "negative_prompt": "fog", "model": "dreamshaper_8",
            "sampler": "Euler a", "schedule": "Automatic", "steps": 12, "cfg_scale": 6.5, "seed": 42, "width": 512,
            "height": 768, "batch_size": 1, "strength": 0.6, "mask_blur": 4, "masked_content": "original",
            "inpaint_area": "whole picture", "inpaint_padding": 32, "expand": [0, 0, 0, 0]}
    record = {"version": 1, "request": flat, "model_name": "dreamshaper_8", "model_hash": "879db523c3"}
    meta = meta_from_chunks({"sfumato": json.dumps(record), "parameters": "a lighthouse\nSteps: 12, Seed: 42"})
    assert (meta.prompt, meta.negative_prompt, meta.seed, meta.steps, meta.model) == (
        "a lighthouse", "fog", 42, 12, "dreamshaper_8")
    request = to_request(meta, make_request(model="mine", batch_size=4))
    assert request == make_request(mode=Mode.TXT2IMG, prompt="a lighthouse", negative_prompt="fog", model="mine",
                                   sampler="Euler a", schedule="Automatic", steps=12, cfg_scale=6.5, seed=42,
                                   width=512, height=768, strength=0.6)


def test_comfyui_advanced_sampler_and_the_model_behind_a_lora(tmp_path):
    from desktop.core.gallery.metadata import meta_from_chunks

    workflow = {"nodes": [
        {"id": 1, "type": "KSamplerAdvanced", "widgets_values": ["enable", 777, "fixed", 24, 6.5, "dpmpp_2m", "karras",
                                                                 0, 10000, "disable"],
         "inputs": [{"name": "positive", "link": 11}]},
        {"id": 2, "type": "CLIPTextEncode", "widgets_values": ["a harbour at night"]},
    ], "links": [[11, 2, 0, 1, 1, "CONDITIONING"]]}
    meta = meta_from_chunks({"workflow": json.dumps(workflow)})
    assert (meta.seed, meta.steps, meta.cfg_scale, meta.sampler, meta.schedule, meta.prompt) == (
        777, 24, 6.5, "DPM++ 2M", "Karras", "a harbour at night")
    graph = json.loads(COMFY)
    graph["8"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}}
    graph["9"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "lora_name": "detail.safetensors"}}
    graph["3"]["inputs"]["model"] = ["9", 0]
    meta = meta_from_chunks({"prompt": json.dumps(dict(sorted(graph.items(), reverse=True)))})
    assert meta.model == "sd_xl_base_1.0"


def test_a_kept_png_export_keeps_other_tools_chunks_and_phones_rotation(tmp_path):
    from desktop.core.gallery.index import ImageRecord

    source = tmp_path / "comfy.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", COMFY)
    info.add_text("workflow", '{"nodes": []}')
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown turned a quarter clockwise
    Image.new("RGB", (40, 20), "red").save(source, pnginfo=info, exif=exif.tobytes())
    record = ImageRecord(1, "comfy.png", 0, 0, 0.0, 40, 20, "x", "", "", 1, "", None, None, "", "comfyui", False)
    out = exporting.export([(record, source)], exporting.ExportOptions(tmp_path / "out"))[0]
    with Image.open(out) as image:
        assert {"prompt", "workflow"} <= set(image.text) and image.size == (20, 40)


def test_punctuation_alone_in_a_search_matches_nothing_extra(folder, tmp_path):
    store = open_store(folder, tmp_path)
    cat = add(store, "a cat, sitting", 1)
    assert store.search(Query("cat ,")) == [cat.id] and store.search(Query("- , .")) == [cat.id]


@pytest.mark.parametrize("prompt, negative", [
    ("  a cat in a hat  ", "blurry\n"), ('"a quoted title"', ""), ("a cat\r\nin a hat\r", "\n\n"),
    ("a sign\nNegative prompt: not really", "Steps: 1, Seed: 2, Size: 3x3"),
])
def test_sfumato_reads_its_own_prompts_exactly_and_a1111_reads_them_raw(folder, tmp_path, prompt, negative):
    store = open_store(folder, tmp_path)
    record = add(store, prompt, 3, negative_prompt=negative)
    meta, _, _ = read_image_meta(store.path(record))
    assert (meta.prompt, meta.negative_prompt, record.prompt, record.negative_prompt) == (prompt, negative) * 2
    with Image.open(store.path(record)) as image:
        parameters = image.text["parameters"]
    assert parameters.startswith(prompt.replace("\r\n", "\n").replace("\r", "\n"))  # raw lines, as A1111 writes
    assert parse_infotext(parameters).params["Seed"] == "3"


def test_reading_metadata_opens_only_raster_formats(tmp_path, monkeypatch):
    import subprocess

    launched = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: launched.append(a) or pytest.fail("ran a program"))
    eps = tmp_path / "drawing.png"  # PostScript under a picture's name: Pillow would hand it to Ghostscript
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n{ } loop\n")
    with pytest.raises(OSError):
        read_image_meta(eps)
    assert launched == []


def test_use_all_parameters_takes_a_size_that_is_not_a_multiple_of_8():
    from desktop.core.gallery.metadata import meta_from_chunks, to_request

    text = "a pier\nSteps: 12, Sampler: Euler, CFG scale: 6, Seed: 3, Size: 400x300"
    request = to_request(meta_from_chunks({"parameters": text}), make_request(width=512, height=512))
    assert (request.width, request.height) == (400, 300), "any size from 64 to 4096 can be made now"
    too_small = to_request(meta_from_chunks({"parameters": text.replace("400x300", "40x30")}), make_request())
    assert (too_small.width, too_small.height) == (512, 512)


def test_use_all_parameters_takes_the_emphasis_mode_and_the_infotext_writes_it_when_not_the_default():
    from desktop.core.gallery.metadata import meta_from_chunks, to_request
    from desktop.core.infotext import format_infotext, from_request

    text = format_infotext(from_request(make_request(prompt="a (cat:1.3)", emphasis="No norm"), 9, "m"))
    assert "Emphasis: No norm" in text
    assert "Emphasis" not in format_infotext(from_request(make_request(prompt="a cat"), 9, "m"))
    assert to_request(meta_from_chunks({"parameters": text}), make_request()).conditioning.emphasis == "No norm"
    plain = "a cat\nSteps: 30, Sampler: Euler a, CFG scale: 6, Seed: 9, Size: 512x768"  # A1111: Original
    assert to_request(meta_from_chunks({"parameters": plain}), make_request(emphasis="Ignore")).conditioning.emphasis \
        == "Original"
