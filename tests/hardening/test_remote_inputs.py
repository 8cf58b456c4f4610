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
from desktop.core.backend import GenerationJob
from desktop.core.control import MAX_CONTROLS
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
