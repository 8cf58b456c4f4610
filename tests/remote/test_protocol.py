"""The wire protocol: a job survives JSON with every picture pixel for pixel; names, never paths, for models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from desktop.core import remote_protocol as protocol
from desktop.core.backend import GenerationJob, ModelDescriptor, PreprocessJob, Result, UpscaleJob
from desktop.core.control import Control, Reference
from desktop.core.errors import InvalidRequest, ModelLoadError, OutOfMemory, SfumatoError
from desktop.core.faces import DEMO_FACE_RESTORER, FACE, FaceSettings
from desktop.core.geometry import Extent
from desktop.core.postprocess import UPSCALE, DetailSettings, UpscaleRequest, diffusion_restore
from desktop.core.request import Conditioning, GenerationRequest, Images, Mode, Sampling
from desktop.server.catalogue import Catalogue
from tests.support.requests import make_request


def _pictures(seed=1):
    rng = np.random.default_rng(seed)
    init = rng.integers(0, 256, (72, 96, 4), np.uint8)
    mask = np.zeros((72, 96), np.uint8)
    mask[10:40, 20:70] = 255
    controls = (Control("demo", rng.integers(0, 256, (72, 96, 3), np.uint8), "canny", 0.8, 0.1, 0.9, True),
                Control("edges", rng.integers(0, 256, (64, 64, 4), np.uint8), "depth", 1.5))
    references = (Reference(rng.integers(0, 256, (50, 40, 3), np.uint8), 0.7, "style", "demo"),)
    return init, mask, controls, references


def _resolve(ref, kind):
    return f"/server/{kind}/{ref}"


def test_a_job_with_every_picture_comes_back_equal_pixel_for_pixel():
    init, mask, controls, references = _pictures()
    request = make_request(mode=Mode.INPAINT, prompt="a cat, (fur:1.2)", steps=7, seed=42, width=96, height=72)
    request = request.replace(images=Images(init, mask), controls=controls, references=references)
    job = GenerationJob(request, "taesd", 3)

    back = protocol.decode_job(protocol.encode_job(job), _resolve)

    assert back.preview_method == "taesd" and back.preview_every == 3
    assert back.request.model == "/server/generation/" + request.model
    assert back.request.replace(model=request.model, controls=controls, references=references) == request
    assert np.array_equal(back.request.images.init, init) and back.request.images.init.shape == (72, 96, 4)
    assert np.array_equal(back.request.images.mask, mask) and back.request.images.mask.dtype == np.uint8
    for sent, got in zip(controls, back.request.controls, strict=True):
        assert got.replace(model=sent.model) == sent and np.array_equal(got.image, sent.image)
        assert got.model == f"/server/controlnet/{sent.model}"
    assert back.request.references[0].adapter == "/server/ipadapter/demo"
    assert np.array_equal(back.request.references[0].image, references[0].image)


def test_a_preprocess_job_comes_back_equal():
    image = np.random.default_rng(2).integers(0, 256, (30, 20, 3), np.uint8)
    back = protocol.decode_job(protocol.encode_job(PreprocessJob("canny", image)), _resolve)
    assert back == PreprocessJob("canny", image) and np.array_equal(back.image, image)


def test_a_picture_over_the_size_limit_is_refused_in_one_sentence(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_PICTURE_SIDE", 64)
    request = make_request(mode=Mode.IMG2IMG).replace(images=Images(np.zeros((65, 10, 3), np.uint8)))
    with pytest.raises(protocol.ProtocolError, match=r"^The init image is 10x65; pictures of at most 64 pixels a "
                                                      r"side can be sent to the server\.$"):
        protocol.decode_job(protocol.encode_job(GenerationJob(request)), _resolve)


@pytest.mark.parametrize("body, said", [
    (b"{not json", "not valid JSON"),
    (b'{"kind": "dance"}', "cannot run jobs of kind 'dance'"),
    (b'{"kind": "generation", "request": {}, "images": {"init": "@@@"}}', "not a readable PNG"),
    (b'{"kind": "generation", "request": []}', "request must be a JSON object"),
    (b'{"kind": "generation", "request": {}, "controls": [{"model": "demo", "image": null}]}', "control 1's picture"),
])
def test_a_bad_job_is_a_sentence(body, said):
    with pytest.raises(SfumatoError) as caught:
        protocol.decode_job(body, _resolve)
    assert "\n" not in str(caught.value) and said in str(caught.value)


def test_the_catalogue_gives_names_and_refuses_paths():
    catalogue = Catalogue()
    catalogue.update([ModelDescriptor("/srv/models/dreamy.safetensors", "sd1", "dreamy"),
                      ModelDescriptor("demo", "sd1", "Demo model (random weights)"),
                      ModelDescriptor("demo", "controlnet", "Demo ControlNet", kinds=frozenset({"controlnet"}))])
    assert [m["ref"] for m in catalogue.listed()] == ["dreamy", "demo", "demo"]
    assert "/srv" not in json.dumps(catalogue.listed())
    assert catalogue.resolve("dreamy", protocol.MODEL) == "/srv/models/dreamy.safetensors"
    assert catalogue.resolve("Demo model (random weights)", protocol.MODEL) == "demo"
    assert catalogue.resolve("demo", protocol.CONTROLNET) == "demo"
    for name in ("/srv/models/dreamy.safetensors", "../dreamy", "dreamy.safetensors"):
        with pytest.raises(protocol.UnknownModel, match=r"^The server has no model named .*GET /models.*\.$"):
            catalogue.resolve(name, protocol.MODEL)
    with pytest.raises(protocol.UnknownModel, match="no ControlNet named 'dreamy'"):
        catalogue.resolve("dreamy", protocol.CONTROLNET)


def test_events_round_trip():
    request = make_request(seed=5).resolved()
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), np.uint8)
    result = Result(image, 5, request.replace(model="/srv/x.safetensors"), (("Lora hashes", "a: 1"),), "a note")
    event = protocol.decode_event(protocol.result_event(result, {protocol.MODEL: request.model}))
    assert "/srv" not in json.dumps(event)
    back = protocol.decode_result(event, GenerationJob(request))
    assert (back.seed, back.request, back.params, back.note) == (5, request, (("Lora hashes", "a: 1"),), "a note")
    assert np.array_equal(back.image, image)

    step = protocol.decode_event(protocol.step_event(3, 9, np.zeros((600, 300, 3), np.uint8)))
    assert (step["step"], step["total"]) == (3, 9) and protocol.decode_preview(step["preview"]).shape == (256, 128, 3)


@pytest.mark.parametrize("error", [OutOfMemory("Out of memory: lower the size."), InvalidRequest("steps", "too many"),
                                   ModelLoadError("/x/y.safetensors", "it is broken")])
def test_an_error_line_raises_the_same_class_with_the_same_sentence(error):
    event = protocol.decode_event(protocol.error_event(error))
    with pytest.raises(type(error)) as caught:
        protocol.raise_error(event)
    assert str(caught.value) == str(error)


def test_an_unknown_error_kind_is_a_sfumato_error():
    with pytest.raises(SfumatoError, match="^Something new.$") as caught:
        protocol.raise_error({"event": "error", "kind": "BrandNewError", "message": "Something new."})
    assert type(caught.value) is SfumatoError


def test_a_request_dict_round_trip_keeps_the_same_request():
    request = make_request(mode=Mode.TXT2IMG, seed=9)
    assert GenerationRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


def test_the_client_and_the_server_app_import_neither_qt_nor_torch():
    from tests.core.test_layering import imported_after

    assert imported_after("import desktop.remote.backend, desktop.server.app, desktop.core.remote_protocol") == set()


# -- restores, face fixes and upscales with detail


def _detail(model="dreamy"):
    return DetailSettings(model, Conditioning("a sharp face", "blurry", 2, "No norm"),
                          Sampling(sampler="Euler", schedule="Karras", steps=9, cfg_scale=5.5, seed=3, strength=0.3))


def _postprocess_requests():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (40, 30, 4), np.uint8)
    mask = np.zeros((40, 30), bool)
    mask[5:20, 4:16] = True
    return {
        "face fix": UpscaleRequest(image, 1.0, restore=FACE, parameters="a cat\nSteps: 5, Seed: 1",
                                   faces=FaceSettings("GFPGANv1.4", 0.7, _detail(), mask=mask, padding=10, blur=3,
                                                      resolution=256)),
        "face fix, demo restorer": UpscaleRequest(image[..., :3], 1.0, restore=FACE,
                                                  faces=FaceSettings(DEMO_FACE_RESTORER, 0.5)),
        "restore": UpscaleRequest(image, 1.0, upscaler="demo-restorer", restore="jpeg"),
        "diffusion restore": diffusion_restore(image, _detail(), "denoise"),
        "upscale with detail": UpscaleRequest(image, 2.0, size=Extent(50, 80), upscaler="4x-Sharp", detail=_detail(),
                                              parameters="a dog"),
    }


@pytest.mark.parametrize("name", list(_postprocess_requests()))
def test_a_restore_a_face_fix_and_an_upscale_with_detail_come_back_equal(name):
    request = _postprocess_requests()[name]
    back = protocol.decode_job(protocol.encode_job(UpscaleJob(request)), lambda ref, kind: ref).request
    assert back.replace(image=request.image) == request
    assert np.array_equal(back.image, request.image) and back.image.shape == request.image.shape
    if request.faces is not None and request.faces.mask is not None:  # FaceSettings' equality leaves its mask out
        assert back.faces.mask.dtype == np.bool_ and np.array_equal(back.faces.mask, request.faces.mask)
    elif request.faces is not None:
        assert back.faces.mask is None


def test_the_models_of_a_postprocess_job_are_the_server_s_by_name():
    face_fix = _postprocess_requests()["face fix"]
    back = protocol.decode_job(protocol.encode_job(UpscaleJob(face_fix)), _resolve).request
    assert back.faces.restorer == "/server/upscale/GFPGANv1.4"
    assert back.faces.detailer.model == "/server/generation/dreamy"
    restore = protocol.decode_job(protocol.encode_job(UpscaleJob(_postprocess_requests()["diffusion restore"])),
                                  _resolve).request
    assert (restore.upscaler, restore.detail.model) == ("Lanczos", "/server/generation/dreamy")  # no file: as sent
    demo = protocol.decode_job(protocol.encode_job(UpscaleJob(_postprocess_requests()["face fix, demo restorer"])),
                               _resolve).request
    assert demo.faces.restorer == DEMO_FACE_RESTORER and demo.upscaler == "/server/upscale/demo"


def _server_catalogue():
    catalogue = Catalogue()
    catalogue.update([ModelDescriptor("/srv/models/dreamy.safetensors", "sd1", "dreamy"),
                      ModelDescriptor("/srv/upscalers/GFPGANv1.4.pth", "face restorer", "GFPGANv1.4",
                                      kinds=frozenset({UPSCALE})),
                      ModelDescriptor("/srv/upscalers/4x-Sharp.pth", "upscaler", "4x-Sharp",
                                      kinds=frozenset({UPSCALE})),
                      ModelDescriptor("demo", "upscaler", "Demo upscaler", kinds=frozenset({UPSCALE})),
                      ModelDescriptor("demo-restorer", "restorer", "Demo restorer", kinds=frozenset({UPSCALE}))])
    return catalogue


@pytest.mark.parametrize("name, change, said", [
    ("face fix", lambda r: r.replace(faces=r.faces.replace(restorer="/home/me/GFPGANv1.4.pth")),
     "no upscaler named '/home/me/GFPGANv1.4.pth'"),
    ("face fix", lambda r: r.replace(faces=r.faces.replace(detailer=_detail("/home/me/dreamy.safetensors"))),
     "no model named '/home/me/dreamy.safetensors'"),
    ("upscale with detail", lambda r: r.replace(detail=_detail("nightmare")), "no model named 'nightmare'"),
    ("restore", lambda r: r.replace(upscaler="SCUNet"), "no upscaler named 'SCUNet'"),
])
def test_the_server_refuses_a_client_path_or_an_unknown_model_in_a_postprocess_job(name, change, said):
    catalogue = _server_catalogue()
    request = _postprocess_requests()[name]
    sent = protocol.decode_job(protocol.encode_job(UpscaleJob(request)), catalogue.resolve).request
    assert sent.faces is None or sent.faces.restorer in ("/srv/upscalers/GFPGANv1.4.pth", DEMO_FACE_RESTORER)
    with pytest.raises(protocol.UnknownModel) as caught:
        protocol.decode_job(protocol.encode_job(UpscaleJob(change(request))), catalogue.resolve)
    assert said in str(caught.value) and str(caught.value).endswith("connected to it).")
    assert "\n" not in str(caught.value)


def test_a_face_detector_file_is_refused_in_one_sentence_before_anything_is_sent():
    request = _postprocess_requests()["face fix"]
    job = UpscaleJob(request.replace(faces=request.faces.replace(detector="/home/me/face_detection_yunet.onnx")))
    with pytest.raises(SfumatoError) as caught:
        protocol.encode_job(job)
    assert str(caught.value) == protocol.DETECTOR_REFUSED and "\n" not in str(caught.value)


def test_a_face_fix_s_result_keeps_its_note_and_parameters():
    request = _postprocess_requests()["face fix"]
    job = UpscaleJob(request)
    server_side = protocol.decode_job(protocol.encode_job(job), _resolve).request
    params = (("Face restoration", "GFPGANv1.4"), ("ADetailer model", "painted mask"))
    done = Result(request.image, 77, server_side.replace(parameters="a cat\nSteps: 5, Seed: 1, Face restoration: "
                                                                   "GFPGANv1.4"), params, "no face found")
    event = protocol.decode_event(protocol.result_event(done, {protocol.UPSCALER: "GFPGANv1.4"}))
    assert "/server" not in json.dumps(event)
    back = protocol.decode_result(event, job)
    assert (back.seed, back.params, back.note) == (77, params, "no face found")
    assert back.request == request.replace(parameters="a cat\nSteps: 5, Seed: 1, Face restoration: GFPGANv1.4")
    assert np.array_equal(back.image, request.image)
