"""Downloading a diffusers model from the Hub, against a local stand-in Hub.

Nothing here reaches huggingface.co: every test points HF_ENDPOINT at a
HubServer on 127.0.0.1 (tests/support/hub_server.py), or at a port where
nothing listens.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

from desktop.core.errors import Cancelled, ModelLoadError
from desktop.core.progress import TaskState
from desktop.core import hub
from tests.support.hub_server import HubServer

REPO = "acme/tiny-diffusers"
WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
NEEDED = {"model_index.json", "unet/config.json", WEIGHTS, "tokenizer/vocab.json"}
IGNORED = {"unet/diffusion_pytorch_model.fp16.safetensors", "model.ckpt", "safety_checker/model.safetensors"}
PROGRESS = re.compile(rf"Downloading {re.escape(REPO)}: (?P<done>\d+) of (?P<total>\d+) MB")
SMALL_CHUNK = 64 * 1024


def diffusers_repo_files() -> dict[str, bytes]:
    """A diffusers-shaped repo: what a pipeline needs, plus what Sfumato must not fetch."""
    rng = random.Random(7)
    return {
        "model_index.json": json.dumps(
            {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
        ).encode(),
        "unet/config.json": json.dumps({"_class_name": "UNet2DConditionModel", "sample_size": 8}).encode(),
        WEIGHTS: rng.randbytes(3 * 2**20),
        "unet/diffusion_pytorch_model.fp16.safetensors": rng.randbytes(2**20),
        "model.ckpt": rng.randbytes(2**20),
        "safety_checker/model.safetensors": rng.randbytes(2**20),
        "tokenizer/vocab.json": json.dumps({"a": 0, "photo": 1}).encode(),
    }


def write_repo(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def snapshot_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def cached_snapshot_files() -> set[str]:
    snapshots = list((hub.cache_dir() / f"models--{REPO.replace('/', '--')}" / "snapshots").glob("*"))
    assert len(snapshots) <= 1
    return snapshot_files(snapshots[0]) if snapshots else set()


@pytest.fixture(autouse=True)
def no_threads_left():
    before = set(threading.enumerate())
    yield
    left = [t.name for t in threading.enumerate() if t not in before]
    assert not left, f"threads left running: {left}"


@pytest.fixture(autouse=True)
def hub_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SFUMATO_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # conftest.py turns huggingface_hub's offline mode on for the whole suite (read once,
    # at import); these tests talk to 127.0.0.1 only, so they turn it off.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    # Bounded waits if something hangs (huggingface_hub reads these once, at import).
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 5)
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5)


@pytest.fixture
def source() -> dict[str, bytes]:
    return diffusers_repo_files()


@pytest.fixture
def server(tmp_path, source, monkeypatch):
    with HubServer({REPO: write_repo(tmp_path / "repo", source)}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
    assert server.errors == []


@pytest.fixture
def dead_endpoint():
    """An endpoint on a port that is bound but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_download_fetches_only_what_a_pipeline_needs(server, source):
    messages = []

    folder = hub.download(REPO, TaskState(on_status=messages.append))

    assert folder.is_relative_to(hub.cache_dir())
    assert snapshot_files(folder) == NEEDED
    for name in NEEDED:
        assert (folder / name).read_bytes() == source[name]
    # The fp16 variant, the pickle and the safety checker were never asked for, not even a HEAD.
    assert server.requested_files() == NEEDED
    assert not server.requested_files() & IGNORED
    # The weights came the way the Hub serves LFS files: metadata from /resolve, bytes from the CDN.
    assert [(r.server, r.method, r.status) for r in server.file_requests(WEIGHTS)] == [
        ("hub", "HEAD", 302),
        ("cdn", "GET", 200),
    ]

    assert messages[0] == f"Downloading {REPO}..."
    progress = [PROGRESS.fullmatch(m) for m in messages[1:]]
    assert progress and all(progress), messages
    assert max(int(m["done"]) for m in progress) == max(int(m["total"]) for m in progress) == 3


def test_cancel_stops_mid_file_and_a_second_download_finishes(server, source, monkeypatch):
    # Progress is counted per chunk that huggingface_hub reads (10 MB by default); small chunks
    # and a slow stand-in link let the cancel land in the middle of the 3 MB weights.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", SMALL_CHUNK)
    server.chunk_delay = 0.02  # the whole file would take about a second
    messages = []

    def on_status(text):
        messages.append(text)
        progress = PROGRESS.fullmatch(text)
        if progress and int(progress["done"]) >= 1:  # the first report that the weights are moving
            state.cancel()

    state = TaskState(on_status=on_status)
    with pytest.raises(Cancelled):
        hub.download(REPO, state)

    server.wait_idle()
    size = len(source[WEIGHTS])
    (cut,) = server.file_requests(WEIGHTS, "GET")
    assert cut.range is None
    assert 0 < cut.bytes_sent < size, "the cancel should have stopped the transfer mid-file"
    # huggingface_hub 2.4 downloads each file to a uniquely named temporary file and deletes
    # it when the download stops, so nothing partial is left to resume from...
    assert not list(hub.cache_dir().rglob("*.incomplete"))
    kept = cached_snapshot_files()
    assert WEIGHTS not in kept
    assert kept <= NEEDED

    first_run = len(server.requests)
    server.chunk_delay = 0
    folder = hub.download(REPO, TaskState())

    second_run = server.requests[first_run:]
    # ...so the weights start over from byte 0 (no Range request), while the files that were
    # complete are not fetched again.
    (weights,) = [r for r in second_run if r.file == WEIGHTS and r.method == "GET"]
    assert (weights.range, weights.status, weights.bytes_sent) == (None, 200, size)
    assert not kept & {r.file for r in second_run}
    assert snapshot_files(folder) == NEEDED
    for name in NEEDED:
        assert (folder / name).read_bytes() == source[name]


def test_a_connection_dropped_mid_file_is_resumed_with_a_range_request(server, source, monkeypatch):
    # huggingface_hub retries a body cut short (once a second) from the bytes it already wrote;
    # it writes whole chunks, so the cut falls on a chunk boundary here.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", SMALL_CHUNK)
    server.interrupt(WEIGHTS, after_bytes=16 * SMALL_CHUNK, mode="close")

    folder = hub.download(REPO, TaskState())

    size = len(source[WEIGHTS])
    first, resumed = server.file_requests(WEIGHTS, "GET")
    assert (first.range, first.bytes_sent) == (None, 16 * SMALL_CHUNK)
    assert (resumed.range, resumed.status) == (f"bytes={16 * SMALL_CHUNK}-", 206)
    assert resumed.bytes_sent == size - 16 * SMALL_CHUNK
    assert (folder / WEIGHTS).read_bytes() == source[WEIGHTS]


def test_a_connection_reset_mid_file_is_a_download_error(server, source, monkeypatch):
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", SMALL_CHUNK)
    server.interrupt(WEIGHTS, after_bytes=2**20, mode="reset")

    with pytest.raises(ModelLoadError, match="the download failed"):
        hub.download(REPO, TaskState())

    server.wait_idle()
    assert not list(hub.cache_dir().rglob("*.incomplete"))
    folder = hub.download(REPO, TaskState())  # the network is back
    assert (folder / WEIGHTS).read_bytes() == source[WEIGHTS]


def test_an_unknown_repository_says_there_is_no_such_repository(server):
    with pytest.raises(ModelLoadError, match="there is no such repository") as error:
        hub.download("acme/no-such-model", TaskState())

    assert error.value.path == "acme/no-such-model"
    assert [(r.method, r.path, r.status) for r in server.requests] == [
        ("GET", "/api/models/acme/no-such-model/revision/main", 404)
    ]


def test_a_repository_without_model_index_is_not_a_diffusers_model(tmp_path, monkeypatch):
    # A transformers-style repo: weights and config at the root, one component-style config.
    files = {
        "config.json": b'{"model_type": "clip"}',
        "model.safetensors": random.Random(1).randbytes(4096),
        "text_encoder/config.json": b'{"model_type": "clip_text_model"}',
    }
    with HubServer({"acme/text-model": write_repo(tmp_path / "repo", files)}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.raises(ModelLoadError, match="not a diffusers model .*model_index.json"):
            hub.download("acme/text-model", TaskState())
    assert server.requested_files() == {"text_encoder/config.json"}
    assert server.errors == []


def test_a_qwen_tokenizers_chat_template_is_fetched_and_single_files_at_the_root_are_not(tmp_path, monkeypatch):
    """Z-Image and FLUX.2 klein repos keep their Qwen tokenizer's chat template in tokenizer/chat_template.jinja:
    without it the prompt is encoded without the template the model was trained on."""
    rng = random.Random(3)
    files = {
        "model_index.json": b'{"_class_name": "ZImagePipeline"}',
        "tokenizer/tokenizer_config.json": b'{"tokenizer_class": "Qwen2Tokenizer"}',
        "tokenizer/chat_template.jinja": b"{% for message in messages %}{{ message.content }}{% endfor %}",
        "tokenizer/merges.txt": b"#version: 0.2",
        "text_encoder/model.safetensors": rng.randbytes(4096),
        "z_image_turbo_bf16.safetensors": rng.randbytes(4096),  # the same model as one file, for ComfyUI
    }
    with HubServer({"acme/z-image": write_repo(tmp_path / "repo", files)}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        folder = hub.download("acme/z-image", TaskState())
    assert snapshot_files(folder) == set(files) - {"z_image_turbo_bf16.safetensors"}
    assert (folder / "tokenizer" / "chat_template.jinja").read_bytes() == files["tokenizer/chat_template.jinja"]
    assert server.errors == []


def test_a_hub_that_is_down_fails_quickly_with_a_download_error(dead_endpoint, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint)

    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="the download failed") as error:
        hub.download(REPO, TaskState())

    assert time.monotonic() - started < 5
    assert "Check the connection and try again." in str(error.value)
    assert not hub.cache_dir().exists() or not list(hub.cache_dir().rglob("snapshots/*/*"))


def test_a_complete_download_is_used_from_the_cache_when_the_hub_is_down(server, dead_endpoint, monkeypatch):
    folder = hub.download(REPO, TaskState())
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint)
    fetched = len(server.requests)

    assert hub.download(REPO, TaskState()) == folder
    assert len(server.requests) == fetched
