"""Hostile jobs sent to Sfumato's server: refused in one sentence before their pictures cost memory or time, and
the server's own paths never sent back."""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageFile

from desktop.core import remote_protocol as protocol
from desktop.core.backend import GenerationJob, UpscaleJob
from desktop.core.control import MAX_CONTROLS
from desktop.core.errors import SfumatoError
from desktop.core.faces import DEMO_FACE_RESTORER, FACE, FaceSettings
from desktop.core.postprocess import UpscaleRequest
from desktop.core.request import Images, Mode
from desktop.server import app as server_app
from desktop.server.app import create_app
from tests.remote.conftest import serving, time_limit  # noqa: F401 - the remote tests' time limit
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request


def _resolve(name: str, kind: str) -> str:
    return name


def _black_png(side: int) -> str:
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _job_with(controls: int = 0, references: int = 0, picture: str | None = None) -> dict:
    picture = picture or _black_png(8)
    return {"kind": "generation", "request": make_request().to_dict(), "images": {},
            "controls": [{"model": "demo", "type": "canny", "weight": 1, "start": 0, "end": 1, "image": picture}
                         for _ in range(controls)],
            "references": [{"adapter": "demo", "mode": "content", "weight": 1, "image": picture}
                           for _ in range(references)]}


@pytest.mark.parametrize("controls, references", [(MAX_CONTROLS + 2, 0), (0, MAX_CONTROLS + 1)])
def test_too_many_controls_or_references_are_refused_before_any_picture_is_decoded(monkeypatch, controls,
                                                                                    references):
    decoded = []
    real = protocol.decode_png
    monkeypatch.setattr(protocol, "decode_png", lambda *args, **kw: decoded.append(args[1]) or real(*args, **kw))
    body = json.dumps(_job_with(controls, references)).encode()
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_job(body, _resolve)
    assert str(caught.value) == (f"The job has {controls} control(s) and {references} reference(s); at most "
                                 f"{MAX_CONTROLS} of each work at once: hide or remove the others.")
    assert decoded == []


def test_a_job_s_pictures_over_its_pixel_budget_are_refused_from_their_headers(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_JOB_PIXELS", 3 * 64 * 64)
    decoded = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real(self))
    body = json.dumps(_job_with(controls=4, picture=_black_png(64))).encode()
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_job(body, _resolve)
    assert str(caught.value) == ("The job's pictures come to 0.0164 megapixels; the server takes at most 0.0123 in "
                                 "one job: send smaller pictures or fewer control layers.")
    assert len(decoded) == 3  # the fourth control was refused from its header, not decoded


def test_a_job_within_its_pixel_budget_is_decoded_whole():
    init = np.zeros((64, 64, 3), np.uint8)
    request = make_request(mode=Mode.IMG2IMG).replace(images=Images(init))
    job = protocol.decode_job(protocol.encode_job(GenerationJob(request)), _resolve)
    assert np.array_equal(job.request.images.init, init)


def _post(url: str, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_only_a_few_jobs_are_decoded_at_once_however_many_arrive(monkeypatch):
    lock, now, most = threading.Lock(), [0], [0]

    def slow_decode(body, resolve):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.3)
        with lock:
            now[0] -= 1
        raise protocol.ProtocolError("The job is refused for this test.")

    monkeypatch.setattr(protocol, "decode_job", slow_decode)
    answers = []
    with serving(create_app(FakeBackend)) as url:
        senders = [threading.Thread(target=lambda: answers.append(_post(url, "/run", b"{}"))) for _ in range(6)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(30)
            assert not sender.is_alive()
    assert [status for status, _ in answers] == [400] * 6
    assert most[0] <= server_app.DECODES_AT_ONCE


def test_deeply_nested_json_sent_to_load_is_a_sentence_not_a_traceback():
    with serving(create_app(FakeBackend)) as url:
        status, body = _post(url, "/load", b"[" * 100_000)
    assert status == 400
    event = protocol.decode_event(body)
    assert event["message"] == 'Send {"model": "<name>"} as JSON to load a model.'


def test_a_failure_that_names_a_server_path_is_sent_without_it(caplog):
    error = FileNotFoundError(2, "No such file or directory", "/srv/sfumato/secret/models/x.safetensors")
    with caplog.at_level(logging.ERROR, logger=protocol.__name__):
        event = protocol.decode_event(protocol.error_event(error))
    assert event == {"event": "error", "kind": "SfumatoError",
                     "message": "The server failed to run the job (FileNotFoundError); its log has the details."}
    assert "/srv/sfumato/secret" in caplog.text  # the detail is in the server's own log


def _face_fix(**faces) -> dict:
    """The body of a face fix of an 8x8 picture, its faces' fields replaced by `faces`."""
    request = UpscaleRequest(np.zeros((8, 8, 3), np.uint8), 1.0, restore=FACE, faces=FaceSettings(DEMO_FACE_RESTORER))
    body = json.loads(protocol.encode_job(UpscaleJob(request)))
    body["faces"].update(faces)
    return body


@pytest.mark.parametrize("faces, said", [
    ({"mask": _black_png(9)}, "The face mask is 9x9 pixels and the picture 8x8; paint the mask at the picture's size."),
    ({"mask": base64.b64encode(b"\x89PNG not really").decode()}, "The face mask is not a readable PNG picture."),
    ({"mask": 7}, "The face mask must be a base64 PNG picture."),
    ({"visibility": "all"}, "visibility: must be a number, got 'all'"),
    ({"visibility": 3}, "visibility: the visibility must be between 0 and 1, got 3.0."),
    ({"padding": 1.5}, "padding: must be a whole number, got 1.5"),
    ({"resolution": None}, "resolution: must be a whole number, got None"),
    ({"restorer": ["GFPGAN"]}, "The job's restorer must be text."),
    ({"detector": "/srv/face_detection_yunet.onnx"}, protocol.DETECTOR_REFUSED),
    ({"detailer": "yes"}, "The job's face detailer must be a JSON object or null."),
    ({"detailer": {"model": "demo", "sampling": {"steps": "many"}}}, "steps: must be a whole number, got 'many'"),
    ({"detailer": {"model": "demo", "conditioning": []}}, "The job's conditioning must be a JSON object."),
])
def test_a_hostile_face_fix_is_refused_in_one_sentence(faces, said):
    with pytest.raises(SfumatoError) as caught:
        protocol.decode_job(json.dumps(_face_fix(**faces)).encode(), _resolve)
    assert str(caught.value) == said


@pytest.mark.parametrize("body, said", [
    ({"faces": "all of them"}, "The job's faces must be a JSON object or null."),
    ({"detail": 1}, "The job's detail must be a JSON object or null."),
    ({"restore": "sharpen", "faces": None}, "restore: a restore keeps the picture's size and is one of denoise, jpeg, "
                                            "restore, face, got 'sharpen' at x1."),
    ({"restore": "denoise"}, "faces: a face fix is a restore of kind 'face' with its face settings."),
])
def test_a_postprocess_job_with_a_bad_field_is_refused_in_one_sentence(body, said):
    with pytest.raises(SfumatoError) as caught:
        protocol.decode_job(json.dumps({**_face_fix(), **body}).encode(), _resolve)
    assert str(caught.value) == said


def test_a_huge_face_mask_is_refused_from_its_header_before_it_is_decoded(monkeypatch):
    decoded = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real(self))
    huge = protocol.MAX_PICTURE_SIDE + 1
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_job(json.dumps(_face_fix(mask=_black_png(huge))).encode(), _resolve)
    assert str(caught.value) == (f"The face mask is {huge}x{huge}; pictures of at most {protocol.MAX_PICTURE_SIDE} "
                                 "pixels a side can be sent to the server.")
    assert decoded == [(8, 8)]  # the picture only


def test_a_face_mask_over_the_job_s_pixel_budget_is_refused_from_its_header(monkeypatch):
    monkeypatch.setattr(protocol, "MAX_JOB_PIXELS", 8 * 8 + 4 * 4)
    decoded = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real(self))
    with pytest.raises(protocol.ProtocolError, match=r"^The job's pictures come to 0.000128 megapixels; the server "
                                                     r"takes at most 8e-05 in one job: "):
        protocol.decode_job(json.dumps(_face_fix(mask=_black_png(8))).encode(), _resolve)
    assert decoded == [(8, 8)]
