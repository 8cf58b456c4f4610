"""The face fix: faces found by OpenCV's bundled cascades (or a painted mask, one face per part), each restored
by a face restorer (the tiny random RestoreFormer here) through a feathered mask, so nothing outside the faces
changes; the metadata says `Face restoration: NAME`, and a picture with no face comes back unchanged with a
sentence saying so."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from desktop.core.backend import UpscaleJob
from desktop.core.errors import Cancelled, InvalidRequest, OutOfMemory, SfumatoError
from desktop.core.faces import (DEMO_FACE_RESTORER, DEMO_FACE_RESTORER_NAME, FaceBox, FaceSettings,
                                boxes_from_mask, crop_around, feathered)
from desktop.core.postprocess import UpscaleRequest, UpscalerError, result_path
from desktop.core.progress import TaskState
from desktop.engine import devices, face_detect, faces, tiny_upscaler, upscale
from desktop.engine.local import LocalBackend
from desktop.engine.models import ModelManager

SMALL = 64  # the face side the tests work at: the tiny RestoreFormer is slow at 512 on a CPU


def face_picture(width=320, height=320, centres=((160, 160),), size=160, background=(90, 120, 150)) -> np.ndarray:
    """A drawn face the frontal Haar cascade finds: hair, a skin oval, brows, eyes with pupils, a nose, a mouth."""
    img = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(img)
    w, h = size, int(size * 1.3)
    for cx, cy in centres:
        draw.ellipse([cx - w * 0.55, cy - h * 0.62, cx + w * 0.55, cy + h * 0.2], fill=(50, 35, 25))
        draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=(225, 180, 150))
        ey = cy - h * 0.08
        for sx in (-1, 1):
            ex = cx + sx * w * 0.2
            draw.rectangle([ex - w * 0.13, ey - h * 0.13, ex + w * 0.13, ey - h * 0.1], fill=(60, 40, 30))
            draw.ellipse([ex - w * 0.1, ey - h * 0.04, ex + w * 0.1, ey + h * 0.04], fill=(250, 250, 250))
            draw.ellipse([ex - w * 0.05, ey - h * 0.04, ex + w * 0.05, ey + h * 0.04], fill=(40, 30, 30))
        draw.polygon([(cx, ey), (cx - w * 0.07, cy + h * 0.15), (cx + w * 0.07, cy + h * 0.15)], fill=(195, 150, 120))
        draw.ellipse([cx - w * 0.17, cy + h * 0.24, cx + w * 0.17, cy + h * 0.31], fill=(150, 60, 60))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(size / 80)))


@pytest.fixture
def manager():
    return ModelManager(devices.choose("cpu", "fp32"))


def fix(image, restorer=DEMO_FACE_RESTORER, parameters="", beside="", **settings):
    settings.setdefault("resolution", SMALL)
    return UpscaleRequest(image, 1.0, parameters=parameters, beside=beside, restore="face",
                          faces=FaceSettings(restorer=restorer, **settings))


def test_the_bundled_cascades_find_a_drawn_face_and_nothing_in_a_plain_picture():
    boxes = face_detect.detect(face_picture())
    assert len(boxes) == 1
    box = boxes[0]
    assert 40 <= box.x <= 100 and 40 <= box.y <= 100 and 140 <= box.width <= 260, box
    assert face_detect.detect(np.full((200, 300, 3), 128, np.uint8)) == []


def test_two_faces_are_two_boxes_and_overlapping_finds_merge():
    boxes = face_detect.detect(face_picture(640, 320, ((160, 160), (480, 160))))
    assert len(boxes) == 2 and sorted(b.x < 320 for b in boxes) == [False, True]
    merged = face_detect.merge([FaceBox(10, 10, 50, 50), FaceBox(14, 12, 50, 50, 0.8), FaceBox(200, 10, 40, 40)])
    assert merged == [FaceBox(10, 10, 54, 52), FaceBox(200, 10, 40, 40)]


def test_a_painted_mask_is_one_box_per_connected_part():
    mask = np.zeros((100, 120), bool)
    mask[10:30, 60:90] = True
    mask[50:70, 5:25] = True
    mask[70:80, 25:30] = True  # touches the part above at a corner: the same face
    assert boxes_from_mask(mask) == [FaceBox(5, 50, 25, 30), FaceBox(60, 10, 30, 20)]
    assert boxes_from_mask(np.zeros((10, 10), bool)) == []


def test_the_detector_is_named_for_the_metadata(tmp_path):
    assert face_detect.detector_name() == "OpenCV Haar cascades"
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "face_detection_yunet_2023mar.onnx").write_bytes(b"")
    assert face_detect.detector_name("auto", [tmp_path]) == "face_detection_yunet_2023mar.onnx"


def test_a_missing_detector_file_is_one_sentence(tmp_path):
    with pytest.raises(SfumatoError, match="is not a YuNet .onnx file"):
        face_detect.detect(face_picture(), str(tmp_path / "nope.onnx"))
    broken = tmp_path / "detectors" / "face_detection_yunet_2023mar.onnx"
    broken.parent.mkdir()
    broken.write_bytes(b"not a model")
    assert face_detect.yunet_file([tmp_path]) == broken  # "auto" uses a YuNet the person added
    with pytest.raises(SfumatoError, match="could not be run; it is damaged or not a YuNet model"):
        face_detect.detect(face_picture(), "auto", [tmp_path])


def test_the_face_is_restored_and_nothing_outside_it_changes(manager):
    image = face_picture()
    steps = []
    result, = faces.run(fix(image), TaskState(on_step=lambda i, n, p: steps.append((i, n))), manager)
    assert result.image.shape == image.shape and steps == [(1, 1)]
    box = face_detect.detect(image)[0]
    changed = np.any(result.image != image, axis=2)
    assert changed[box.y + box.height // 2, box.x + box.width // 2], "the face's middle is restored"
    inside = np.zeros(changed.shape, bool)
    inside[box.y:box.y + box.height, box.x:box.x + box.width] = True
    assert not changed[~inside].any(), "pixels outside the face's box are the input's, bit for bit"
    assert result.params == (("Face restoration", DEMO_FACE_RESTORER_NAME),)


def test_visibility_blends_the_restored_face_over_the_original(manager):
    image = face_picture()
    full, = faces.run(fix(image), TaskState(), manager)
    half, = faces.run(fix(image, visibility=0.5), TaskState(), manager)
    none, = faces.run(fix(image, visibility=0.0, blur=0), TaskState(), manager)
    centre = (160, 160)
    original, restored, blended = (p.image[centre].astype(int) for p in (none, full, half))
    assert np.abs(blended - (original + restored) / 2).max() <= 1
    assert np.array_equal(none.image, image), "visibility 0: the picture as it was"


def test_a_face_larger_than_the_working_size_keeps_its_detail_at_visibility_0(manager):
    # the restored face is resized back and blended with the full-size crop, not with a shrunk one (as A1111)
    noisy = np.random.default_rng(1).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    mask = np.zeros(noisy.shape[:2], bool)
    mask[30:670, 30:670] = True  # a 640x640 face, worked at 512 (here SMALL)
    none, = faces.run(fix(noisy, visibility=0.0, mask=mask), TaskState(), manager)
    assert np.array_equal(none.image, noisy)
    half, = faces.run(fix(noisy, visibility=0.5, mask=mask, blur=0), TaskState(), manager)
    # half the original's detail stays: the difference from the original is half the restored face's
    restored, = faces.run(fix(noisy, visibility=1.0, mask=mask, blur=0), TaskState(), manager)
    half_diff = half.image.astype(int) - noisy
    full_diff = restored.image.astype(int) - noisy
    assert np.abs(half_diff - full_diff / 2)[mask].max() <= 1


def inverting(monkeypatch):
    """Make the face restorer give the negative of each face, so every pixel it is pasted over changes."""
    monkeypatch.setattr(faces, "restore", lambda restorer, face, manager: 255.0 - face.astype(np.float32))


def test_a_painted_part_wider_than_the_picture_is_tall_is_fixed_whole(manager, monkeypatch):
    inverting(monkeypatch)
    image = np.zeros((100, 400, 3), np.uint8)
    image[...] = np.linspace(30, 70, 400, dtype=np.uint8)[None, :, None]
    mask = np.zeros((100, 400), bool)
    mask[20:80, 20:380] = True  # 360x60: more than the picture's height wide
    result, = faces.run(fix(image, mask=mask, blur=0), TaskState(), manager)
    changed = np.any(result.image != image, axis=2)
    assert changed[mask].all(), "every pixel of the painted part is fixed"
    assert not changed[~mask].any()
    assert np.abs(result.image[mask].astype(int) - (255 - image[mask].astype(int))).max() <= 3, "undistorted"


def test_a_small_painted_part_still_changes_with_the_feather_it_has_room_for(manager, monkeypatch):
    part = np.zeros((20, 20), bool)
    part[7:13, 7:13] = True  # 6x6: a mask blur of 4 would erode it all
    weight = feathered(part, 4)
    assert weight[part].min() > 0 and weight[~part].max() == 0
    assert weight[10, 10] > weight[7, 7], "a soft edge where there is room for one"
    tiny = np.zeros((20, 20), bool)
    tiny[9:11, 9:12] = True
    assert np.array_equal(feathered(tiny, 4), tiny.astype(np.float32))
    inverting(monkeypatch)
    image = np.full((120, 160, 3), 100, np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    mask[50:56, 70:76] = True
    result, = faces.run(fix(image, mask=mask), TaskState(), manager)
    changed = np.any(result.image != image, axis=2)
    assert changed[mask].all() and not changed[~mask].any()
    assert result.params == (("Face restoration", DEMO_FACE_RESTORER_NAME),)


def test_a_painted_mask_chooses_the_faces_and_only_its_area_changes(manager):
    image = face_picture(640, 320, ((160, 160), (480, 160)))
    mask = np.zeros(image.shape[:2], bool)
    mask[100:220, 420:540] = True  # only the right face
    steps = []
    result, = faces.run(fix(image, mask=mask, blur=0), TaskState(on_step=lambda i, n, p: steps.append(n)), manager)
    changed = np.any(result.image != image, axis=2)
    assert steps == [1] and changed[mask].mean() > 0.5 and not changed[~mask].any()


def test_no_face_found_keeps_the_picture_and_says_to_paint_a_mask(manager):
    image = np.full((120, 160, 3), 128, np.uint8)
    said = []
    result, = faces.run(fix(image), TaskState(on_status=said.append), manager)
    assert np.array_equal(result.image, image) and result.params == ()
    assert any("No face was found" in text and "open it on the canvas, paint a mask over each face" in text
               and "Image > Restore... > Fix faces with 'Only the masked faces'" in text for text in said)
    assert result.note == faces.NO_FACE, "the window's closing line says it too"
    empty, = faces.run(fix(image, mask=np.zeros(image.shape[:2], bool)), TaskState(), manager)
    assert empty.note == "The mask has no painted part, so the picture is unchanged; paint a mask over each face " \
                         "to fix them."


def test_cancel_between_faces_stops(manager):
    state = TaskState()
    state.step = lambda i, n, p: state.cancel()
    with pytest.raises(Cancelled):
        faces.run(fix(face_picture(640, 320, ((160, 160), (480, 160)))), state, manager)


def test_an_upscaler_is_refused_as_a_face_restorer_and_a_face_restorer_as_an_upscaler(manager, tmp_path):
    upscaler = tiny_upscaler.build(tmp_path / "4x-Tiny.safetensors")
    with pytest.raises(UpscalerError, match="it is not a face restorer"):
        faces.run(fix(face_picture(), str(upscaler)), TaskState(), manager)
    face_file = tiny_upscaler.build_face_restorer(tmp_path / "RestoreFormer-tiny.safetensors")
    with pytest.raises(UpscalerError, match="face restorer"):
        upscale.run(UpscaleRequest(face_picture(40, 40), 2.0, upscaler=str(face_file)), TaskState(), manager)
    upscale.load(str(face_file), manager, TaskState(), face=True)  # held: still refused as an upscaler
    with pytest.raises(UpscalerError, match="it is a face restorer, not an upscaler"):
        upscale.load(str(face_file), manager, TaskState())


def test_the_demo_face_restorer_is_a_small_restoreformer(manager):
    restorer = upscale.load(DEMO_FACE_RESTORER, manager, TaskState(), face=True)
    assert restorer.face and restorer.architecture == "RestoreFormer" and restorer.name == DEMO_FACE_RESTORER_NAME
    assert restorer.bytes < 3_000_000
    assert restorer.path.stat().st_size < 3_000_000


def test_the_backend_runs_the_face_fix_with_its_metadata_and_file_name(tmp_path):
    backend = LocalBackend("cpu", "fp32", hash_cache=tmp_path / "hashes.json")
    source = "a portrait\nSteps: 20, Seed: 7, Size: 320x320"
    rgba = np.dstack([face_picture(), np.full((320, 320), 200, np.uint8)])
    result, = backend.run(UpscaleJob(fix(rgba, parameters=source, beside=str(tmp_path / "p.png"))), TaskState())
    assert result.request.parameters == source + ", Face restoration: " + DEMO_FACE_RESTORER_NAME
    assert result.image.shape == (320, 320, 4) and (result.image[..., 3] == 200).all()
    assert result_path(tmp_path, result.request).name == "p-face.png"
    backend.close()


def test_a_face_fix_asks_for_a_restorer_or_the_detailer():
    with pytest.raises(InvalidRequest, match="choose a face restorer, the face detailer, or both"):
        fix(face_picture(), restorer="").validated()


def test_the_square_and_its_feather_stay_inside_the_picture():
    assert crop_around(FaceBox(0, 0, 40, 40), 32, 300, 200) == (0, 0, 104, 104)
    assert crop_around(FaceBox(280, 180, 20, 20), 32, 300, 200) == (216, 116, 84, 84)
    assert crop_around(FaceBox(20, 20, 360, 60), 32, 400, 100) == (0, 0, 400, 100), "a rectangle covering it"
    weight = feathered(np.pad(np.ones((20, 20), bool), 10), 4)
    assert weight[0].max() == 0 and weight[20, 20] == 1


def test_face_restorer_files_are_found_in_the_face_folders_of_other_apps(tmp_path):
    from desktop.core.postprocess import scan_postprocess_files

    a1111 = tmp_path / "webui" / "models"
    (a1111 / "Stable-diffusion").mkdir(parents=True)
    tiny_upscaler.build_face_restorer(a1111 / "GFPGAN" / "RestoreFormer-tiny.safetensors")
    tiny_upscaler.build_restorer(a1111 / "ESRGAN" / "1x-Denoise.safetensors")
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    tiny_upscaler.build_face_restorer(comfy / "facerestore_models" / "rf-comfy.safetensors")
    files = scan_postprocess_files([a1111 / "Stable-diffusion", comfy / "checkpoints"])
    assert set(files.faces) == {"RestoreFormer-tiny", "rf-comfy"}
    assert set(files.restorers) == {"1x-Denoise"} and files.enlargers == {}


def test_the_face_detailer_repaints_each_painted_face_and_writes_its_keys(cpu_manager, tiny_models):
    from desktop.core.postprocess import DetailSettings
    from desktop.core.request import Conditioning, Sampling

    image = face_picture(256, 128, ((64, 64), (192, 64)), size=60)
    mask = np.zeros(image.shape[:2], bool)
    mask[30:100, 30:100] = True
    mask[30:100, 160:230] = True
    detailer = DetailSettings(str(tiny_models["sd1"].folder), Conditioning("a face"),
                              Sampling(sampler="Euler a", schedule="Automatic", steps=4, seed=9, strength=0.5))
    said = []
    result, = faces.run(fix(image, restorer="", detailer=detailer, mask=mask, padding=8),
                        TaskState(on_status=said.append), cpu_manager)
    changed = np.any(result.image != image, axis=2)
    assert changed[:, :128][mask[:, :128]].any() and changed[:, 128:][mask[:, 128:]].any(), "both faces repainted"
    assert not changed[~mask].any()
    assert result.seed == 9
    assert result.params == (("ADetailer model", "painted mask"), ("ADetailer denoising strength", "0.5"),
                             ("ADetailer prompt", "a face"), ("ADetailer mask blur", "4"),
                             ("ADetailer inpaint padding", "8")), "ADetailer's keys, in its order"
    text = result.request.parameters
    assert "Face restoration" not in text and "ADetailer prompt: a face" in text
    assert "Repainting face 2 of 2..." in said


def stub_restorer(architecture, forward):
    """An Upscaler-like face restorer whose network is `forward` (GFPGAN's call: a tuple, the picture first)."""
    import types

    import torch

    descriptor = types.SimpleNamespace(device=torch.device("cpu"), model=forward)
    return types.SimpleNamespace(model=descriptor, dtype=torch.float32, architecture=architecture, name="stub")


def test_gfpgan_sees_its_faces_in_minus_one_to_one_and_its_output_is_mapped_back(manager):
    seen = []

    def gfpgan(x):
        seen.append((float(x.min()), float(x.max())))
        return (-x, None)  # the negative picture, in -1..1

    face = np.zeros((64, 64, 3), np.uint8)
    face[:, 32:] = 255
    out = faces.restore(stub_restorer("GFPGAN", gfpgan), face, manager)
    assert seen == [(-1.0, 1.0)]
    assert np.allclose(out, 255 - face.astype(np.float32), atol=1e-3)


def test_a_face_restorer_out_of_memory_is_one_sentence(manager):
    import torch

    def out_of_memory(x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(OutOfMemory, match=r"^The face restorer stub ran out of memory on a 64-pixel face\."):
        faces.restore(stub_restorer("GFPGAN", out_of_memory), np.zeros((64, 64, 3), np.uint8), manager)


def test_missing_opencv_is_one_sentence_saying_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(SfumatoError, match=r'needs OpenCV 4, which is missing or broken: pip install '
                                           r'"opencv-python-headless>=4.8,<5"'):
        face_detect.detect(face_picture())


def test_the_installer_bundles_opencv_and_the_cascades_the_detector_reads():
    from pathlib import Path

    spec = (Path(__file__).resolve().parents[2] / "installer" / "sfumato.spec").read_text()
    assert 'hidden += ["cv2"]' in spec and 'collect_data_files("cv2", subdir="data"' in spec
    assert all(f'"{name}"' in spec for name in face_detect.CASCADES)


def test_the_face_restorer_is_loaded_only_when_faces_are_found_and_let_go_before_the_detailer(monkeypatch):
    import types

    from desktop.core.modelfiles import Family
    from desktop.core.postprocess import DetailSettings

    events = []
    monkeypatch.setattr(upscale, "load", lambda *a, **k: events.append("load restorer") or
                        types.SimpleNamespace(architecture="RestoreFormer", name="stub"))
    monkeypatch.setattr(faces, "restore", lambda restorer, face, manager: events.append("restore") or
                        255.0 - face.astype(np.float32))

    def repaint(settings, crop, mask, seed, state, manager, addons):
        events.append(f"repaint {crop.shape[0]}")
        return 255 - crop, (("ADetailer denoising strength", "0.4"),)

    monkeypatch.setattr(faces, "_repaint", lambda: repaint)

    class Manager:  # loads the detailer's checkpoint, which may unload what is not in use
        def load(self, ref, state):
            events.append("load checkpoint")
            return types.SimpleNamespace(info=types.SimpleNamespace(family=Family.SDXL, prediction=None))

    plain = np.full((120, 160, 3), 128, np.uint8)
    faces.run(fix(plain), TaskState(), Manager())
    assert events == [], "no face: no restorer loaded"
    mask = np.zeros(plain.shape[:2], bool)
    mask[10:40, 10:40] = mask[60:90, 100:130] = True
    detailer = DetailSettings("sdxl.safetensors")
    result, = faces.run(fix(plain, mask=mask, detailer=detailer, resolution=0), TaskState(), Manager())
    assert events == ["load restorer", "restore", "restore", "load checkpoint", "repaint 1024", "repaint 1024"], \
        "every face restored before the detailer's checkpoint loads; an SDXL detailer works at 1024"
    assert result.params[0] == ("Face restoration", "stub")


def test_the_detailer_works_at_the_model_familys_size_unless_a_resolution_is_asked():
    settings = FaceSettings(restorer=DEMO_FACE_RESTORER)
    assert settings.resolution == 0 and settings.validated().restorer_side() == 512
    assert [settings.detailer_side(family) for family in ("sd1", "sd2", "sdxl")] == [512, 512, 1024]
    assert settings.detailer_side("sd2", "v_prediction") == 768
    assert settings.replace(resolution=640).detailer_side("sdxl") == 640
    with pytest.raises(InvalidRequest, match="or 0 for the model's own"):
        settings.replace(resolution=100).validated()
