"""RemoteBackend against the server's app (uvicorn on 127.0.0.1) over a FakeBackend: what the window would see."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

from desktop.core import remote_protocol as protocol
from desktop.core.backend import Backend, GenerationJob, ModelDescriptor, PreprocessJob, UpscaleJob
from desktop.core.errors import Cancelled, OutOfMemory, SfumatoError
from desktop.core.faces import DEMO_FACE_RESTORER, FACE, FaceSettings
from desktop.core.postprocess import DEMO_UPSCALER_NAME, UPSCALE, UpscaleRequest
from desktop.core.progress import TaskState
from desktop.core.request import Hires, Images, Mode
from desktop.remote import backend as remote_backend
from desktop.remote.backend import RETRY_STATUS, RemoteBackend, ServerUnreachable
from desktop.server import app as server_app
from desktop.server.app import create_app
from tests.remote.conftest import RecordingBackend, serving
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request


@contextmanager
def server(fake: FakeBackend, **options):
    with serving(create_app(lambda: fake, **options)) as url:
        yield url


def _request(**fields):
    return make_request(width=64, height=64, steps=5, seed=11, prompt="a lighthouse", **fields)


def test_a_generation_through_the_server_equals_the_backend_s_own():
    fake = RecordingBackend()
    job = GenerationJob(_request(batch_size=2))
    with server(fake) as url:
        remote = RemoteBackend(url)
        assert isinstance(remote, Backend)
        assert remote.start(TaskState()) == f"server at {url}"
        results = remote.run(job, TaskState())
    local = FakeBackend().run(job, TaskState())
    assert [r.seed for r in results] == [11, 12]
    for got, want in zip(results, local, strict=True):
        assert np.array_equal(got.image, want.image)
        assert (got.seed, got.request, got.params, got.note) == (want.seed, want.request, want.params, want.note)


def test_an_img2img_result_carries_the_client_s_own_pictures():
    init = np.random.default_rng(4).integers(0, 256, (64, 64, 3), np.uint8)
    job = GenerationJob(_request(mode=Mode.IMG2IMG).replace(images=Images(init)))
    with server(RecordingBackend()) as url:
        [result] = RemoteBackend(url).run(job, TaskState())
    [want] = FakeBackend().run(job, TaskState())
    assert np.array_equal(result.image, want.image) and result.request.images.init is init


def test_every_step_arrives_with_its_preview_and_status():
    steps, statuses = [], []
    state = TaskState(on_step=lambda i, n, preview: steps.append((i, n, None if preview is None else preview.shape)),
                      on_status=statuses.append)
    with server(RecordingBackend()) as url:
        RemoteBackend(url).run(GenerationJob(_request()), state)
    assert steps == [(i, 5, (8, 8, 3)) for i in range(1, 6)]
    assert "Generating 1 image(s), 64x64" in statuses


def test_models_are_the_server_s_by_name_and_load_gives_its_descriptor():
    catalogue = [ModelDescriptor("/srv/models/dreamy.safetensors", "sdxl", "dreamy"),
                 ModelDescriptor("demo", "sd1", "Demo model")]
    fake = RecordingBackend(catalogue=catalogue)
    with server(fake) as url:
        remote = RemoteBackend(url)
        assert remote.models() == [ModelDescriptor("dreamy", "sdxl", "dreamy"), ModelDescriptor("demo", "sd1",
                                                                                                  "Demo model")]
        statuses = []
        loaded = remote.load("dreamy", TaskState(on_status=statuses.append))
    assert fake.loads == ["/srv/models/dreamy.safetensors"]
    assert loaded.ref == "dreamy" and loaded.name == "dreamy.safetensors" and loaded.hash
    assert statuses[0] == "Loading dreamy.safetensors..."


def test_the_models_are_listed_at_once_while_a_job_runs():
    fake = RecordingBackend(step_delay=0.2)
    steps = threading.Event()
    with server(fake) as url:
        remote = RemoteBackend(url)
        assert remote.models()
        state = TaskState(on_step=lambda i, n, p: steps.set())
        job = GenerationJob(_request().replace(sampling=_request().sampling.replace(steps=30)))
        outcome = []

        def generate() -> None:
            try:
                outcome.append(remote.run(job, state))
            except BaseException as error:  # checked below: a raise in this thread cannot fail the test
                outcome.append(error)

        running = threading.Thread(target=generate)
        running.start()
        try:
            assert steps.wait(5)
            started = time.monotonic()
            assert remote.models() == [ModelDescriptor("demo", "sd1", "Demo model")]
            assert time.monotonic() - started < 1
        finally:
            state.cancel()
            running.join(5)
        assert not running.is_alive(), "the cancelled job did not end"
        assert len(outcome) == 1 and isinstance(outcome[0], Cancelled), outcome


def claiming(spec_version: str, app):
    """`app` as served by an ASGI server of that spec version (Starlette listens for a disconnect only below 2.4)."""

    async def served(scope, receive, send):
        if scope["type"] == "http":
            scope = {**scope, "asgi": {**scope.get("asgi", {}), "spec_version": spec_version}}
        await app(scope, receive, send)

    return served


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_a_cancel_stops_the_server_s_job_within_one_step(spec_version):
    fake = RecordingBackend(step_delay=0.5)
    cancelled = []

    def on_step(index, total, preview):
        if index == 2:
            cancelled.append((len(fake.steps), time.monotonic()))
            state.cancel()

    state = TaskState(on_step=on_step)
    with serving(claiming(spec_version, create_app(lambda: fake))) as url:
        with pytest.raises(Cancelled):
            RemoteBackend(url).run(GenerationJob(_request().replace(
                sampling=_request().sampling.replace(steps=50))), state)
        assert fake.ended.wait(5), "the server's job did not stop"
        stopped = time.monotonic()
    assert isinstance(fake.outcome, Cancelled)
    steps_then, cancelled_at = cancelled[0]
    assert len(fake.steps) <= steps_then + 1, (fake.steps, steps_then)
    # the server hears the client go away at once, not at its next line (a step later)
    assert stopped - cancelled_at < 0.35


def test_cancel_from_another_thread_stops_the_call():
    fake = RecordingBackend(step_delay=0.2)
    with server(fake) as url:
        remote = RemoteBackend(url)
        state = TaskState(on_step=lambda i, n, p: threading.Thread(target=remote.cancel).start() if i == 1 else None)
        with pytest.raises(Cancelled):
            remote.run(GenerationJob(_request().replace(sampling=_request().sampling.replace(steps=50))), state)
        assert fake.ended.wait(5) and isinstance(fake.outcome, Cancelled)


def test_an_engine_error_is_the_same_error_with_the_same_sentence():
    fake = RecordingBackend(run_error=OutOfMemory("Out of memory at 64x64: lower the batch size."), fail_at_step=2)
    with server(fake) as url, pytest.raises(OutOfMemory, match=r"^Out of memory at 64x64: lower the batch size\.$"):
        RemoteBackend(url).run(GenerationJob(_request()), TaskState())


def test_a_preprocess_job_runs_on_the_server():
    image = np.random.default_rng(5).integers(0, 256, (40, 30, 3), np.uint8)
    job = PreprocessJob("canny", image)
    with server(RecordingBackend()) as url:
        [result] = RemoteBackend(url).run(job, TaskState())
    [want] = FakeBackend().run(job, TaskState())
    assert np.array_equal(result.image, want.image) and result.request is job


def test_a_wrong_token_gets_401_and_a_sentence():
    with server(RecordingBackend(), token="s3cret") as url:
        for token in (None, "wrong"):
            with pytest.raises(protocol.ServerRefused, match=r"^The server wants a token and this one is missing or "
                                                             r"wrong: set the token the server was started with\.$"):
                RemoteBackend(url, token=token).start(TaskState())
        connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=5)
        connection.request("POST", "/run", body=b"{}", headers={"Authorization": "Bearer wrong"})
        assert connection.getresponse().status == 401
        connection.close()
        assert RemoteBackend(url, token="s3cret").run(GenerationJob(_request()), TaskState())


def test_an_oversized_body_gets_413_and_a_sentence():
    noise = np.random.default_rng(6).integers(0, 256, (512, 512, 3), np.uint8)  # ~780 KB as PNG
    job = GenerationJob(_request(mode=Mode.IMG2IMG).replace(images=Images(noise)))
    fake = RecordingBackend()
    with server(fake, max_body=256 * 1024) as url:
        with pytest.raises(protocol.ServerRefused, match=r"^The job is too large \([\d.]+ MiB\): the server takes "
                                                         r"at most 0\.25 MiB; use smaller pictures"):
            RemoteBackend(url).run(job, TaskState())
        # sent without its length (chunked), the body is cut off at the limit too
        connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=5)
        connection.request("POST", "/run", body=iter([protocol.encode_job(job)]), encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413 and b"too large" in response.read()
        connection.close()
    assert fake.jobs == []


def test_an_unknown_model_is_a_sentence_and_no_path_is_touched(tmp_path):
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"not for clients")
    fake = RecordingBackend()
    with server(fake) as url:
        for name in (str(secret), "nothing-here"):
            with pytest.raises(protocol.UnknownModel, match=r"^The server has no model named .*GET /models.*\.$"):
                RemoteBackend(url).run(GenerationJob(_request(model=name)), TaskState())
            with pytest.raises(protocol.UnknownModel):
                RemoteBackend(url).load(name, TaskState())
    assert fake.jobs == [] and fake.loads == []


class DyingServer:
    """A stand-in server on 127.0.0.1 that accepts a job, sends a step, then closes without a last line."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.served = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            for _ in range(3):  # a third would be a second retry
                connection, _ = self.sock.accept()
                with connection:
                    connection.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += connection.recv(65536)
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")][0])
                    while len(body) < length:
                        body += connection.recv(65536)
                    self.served += 1
                    lines = protocol.encode_event("accepted", replica="r1") + protocol.step_event(1, 5, None)
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                                       b"Connection: close\r\n\r\n" + lines + b'{"event": "st')
        except OSError:
            return

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self.sock.close()
        self.thread.join(5)


def test_a_server_that_dies_mid_stream_is_tried_again_once_then_a_sentence():
    dying = DyingServer()
    statuses = []
    try:
        with pytest.raises(SfumatoError, match=r"^The server at http://127\.0\.0\.1:\d+ stopped twice before "
                                               r"finishing the job; look at the server's log, then try again\.$"):
            RemoteBackend(dying.url).run(GenerationJob(_request()), TaskState(on_status=statuses.append))
    finally:
        dying.close()
    assert dying.served == 2
    assert statuses == [RETRY_STATUS]


def test_an_unreachable_server_is_a_sentence_within_the_timeout():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match=rf"^The Sfumato server at http://127\.0\.0\.1:{port} cannot be "
                                                r"reached \(nothing answers there\): check that it is running"):
        RemoteBackend(f"http://127.0.0.1:{port}", connect_timeout=2).run(GenerationJob(_request()), TaskState())
    assert time.monotonic() - started < 3


def test_a_server_that_accepts_but_never_answers_is_a_sentence_within_the_read_timeout():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts: the request goes unanswered
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ServerUnreachable, match="did not answer in time"):
            RemoteBackend(url, connect_timeout=5, read_timeout=1).start(TaskState())
        assert time.monotonic() - started < 3


def test_health_and_models_answer_json():
    with server(RecordingBackend()) as url:
        connection = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=5)
        connection.request("GET", "/health")
        assert json.loads(connection.getresponse().read())["status"] == "ok"
        connection.close()


def test_an_engine_that_cannot_start_is_its_sentence_for_models_and_jobs():
    fake = RecordingBackend(start_error=SfumatoError("No such device: cuda:3."))
    with server(fake) as url:
        remote = RemoteBackend(url)
        with pytest.raises(SfumatoError, match=r"^No such device: cuda:3\.$"):
            remote.models()
        fake.catalogue = []
        with pytest.raises(SfumatoError, match=r"^No such device: cuda:3\.$"):
            remote.load("demo", TaskState())


def test_a_hires_upscaler_file_is_named_by_the_client_and_its_server_path_never_comes_back(monkeypatch):
    catalogue = [ModelDescriptor("demo", "sd1", "Demo model"),
                 ModelDescriptor("/srv/upscalers/4x-Sharp.pth", "upscaler", "4x-Sharp", kinds=frozenset({UPSCALE}))]
    fake = RecordingBackend(catalogue=catalogue)
    request = _request().replace(hires=Hires(enabled=True, upscaler="4x-Sharp", scale=1.5, steps=2))
    sent, result_event = [], protocol.result_event
    monkeypatch.setattr(protocol, "result_event", lambda *args: sent.append(result_event(*args)) or sent[-1])
    with server(fake) as url:
        [result] = RemoteBackend(url).run(GenerationJob(request), TaskState())
    assert fake.jobs[0].request.hires.upscaler == "/srv/upscalers/4x-Sharp.pth"
    assert result.request.hires.upscaler == "4x-Sharp"
    assert sent and all(b"/srv" not in line for line in sent)


def test_an_upscale_runs_on_the_server_with_its_parameters():
    catalogue = [ModelDescriptor("demo", "upscaler", DEMO_UPSCALER_NAME, kinds=frozenset({UPSCALE}))]
    image = np.random.default_rng(7).integers(0, 256, (20, 30, 4), np.uint8)
    job = UpscaleJob(UpscaleRequest(image, 2.0, upscaler="demo", parameters="a cat\nSteps: 5, Seed: 1"))
    with server(RecordingBackend(catalogue=catalogue)) as url:
        [result] = RemoteBackend(url).run(job, TaskState())
    [want] = FakeBackend().run(job, TaskState())
    assert np.array_equal(result.image, want.image) and result.image.shape == (40, 60, 4)
    assert result.request.parameters == want.request.parameters and "Postprocess upscale by: 2" in \
        result.request.parameters
    assert result.params == want.params


def test_a_face_fix_with_its_own_detector_file_is_refused_in_one_sentence_before_anything_is_sent():
    faces = FaceSettings(DEMO_FACE_RESTORER, detector="/home/me/face_detection_yunet_2023mar.onnx")
    job = UpscaleJob(UpscaleRequest(np.zeros((8, 8, 3), np.uint8), 1.0, restore=FACE, faces=faces))
    with pytest.raises(SfumatoError) as caught:
        RemoteBackend("http://127.0.0.1:1").run(job, TaskState())
    assert str(caught.value) == protocol.DETECTOR_REFUSED


def test_a_result_line_over_the_limit_is_a_sentence_not_a_retry(monkeypatch):
    monkeypatch.setattr(remote_backend, "MAX_LINE", 2000)
    statuses = []
    with server(RecordingBackend()) as url, pytest.raises(SfumatoError, match=r"sent a result over 0 MiB; ask for "):
        RemoteBackend(url).run(GenerationJob(_request()), TaskState(on_status=statuses.append))
    assert RETRY_STATUS not in statuses


def test_a_long_step_is_not_taken_for_a_silent_server(monkeypatch):
    monkeypatch.setattr(server_app, "HEARTBEAT_S", 0.1)  # the server says it is alive more often than the timeout
    fake = RecordingBackend(step_delay=1.0)
    job = GenerationJob(_request().replace(sampling=_request().sampling.replace(steps=2)))
    with server(fake) as url:
        [result] = RemoteBackend(url, read_timeout=0.5).run(job, TaskState())
    assert result.seed == 11


def test_the_client_learns_how_many_jobs_the_server_runs_at_once():
    with server(RecordingBackend()) as url:
        alone = RemoteBackend(url)
        assert alone.start(TaskState()) == f"server at {url}" and alone.slots == 1
    with server(RecordingBackend(), replicas=lambda: 3) as url:
        spread = RemoteBackend(url)
        assert spread.start(TaskState()) == f"server at {url} (3 replicas)" and spread.slots == 3


def test_a_cancel_is_heard_at_once_while_the_server_has_not_answered_yet():
    """A proxy may hold a request while every replica is busy: the person's cancel must not wait for it."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes the request, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        state, outcome = TaskState(), []

        def run() -> None:
            try:
                outcome.append(RemoteBackend(url, read_timeout=30).run(GenerationJob(_request()), state))
            except Exception as error:  # noqa: BLE001 - the test looks at it
                outcome.append(error)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        time.sleep(0.5)
        cancelled_at = time.monotonic()
        state.cancel()
        runner.join(5)
        assert isinstance(outcome[0], Cancelled) and time.monotonic() - cancelled_at < 1


@pytest.mark.parametrize("url, sentence", [
    ("http://gpu-box:99999", "'http://gpu-box:99999' has no valid port; write it as http://host:port, the port a "
                             "number from 1 to 65535."),
    ("http://gpu-box:78a2", "'http://gpu-box:78a2' has no valid port; write it as http://host:port, the port a "
                            "number from 1 to 65535."),
    ("http://artist:s3cret@gpu-box:7862", "Write the server address without a name or password in it "
                                          "(http://host:port); a reverse proxy's secret goes in the token field."),
])
def test_an_address_with_a_bad_port_or_a_password_in_it_is_a_sentence(url, sentence):
    with pytest.raises(SfumatoError) as refused:
        RemoteBackend(url)
    assert str(refused.value) == sentence and "s3cret" not in str(refused.value)
