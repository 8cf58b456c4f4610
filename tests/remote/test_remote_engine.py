"""The real engine behind the server: a generation through RemoteBackend is the local one, pixel for pixel."""

from __future__ import annotations

import numpy as np

from desktop.core.backend import GenerationJob, UpscaleJob
from desktop.core.faces import DEMO_FACE_RESTORER, FACE, FaceSettings
from desktop.core.outputs import metadata_chunks
from desktop.core.progress import TaskState
from desktop.remote.backend import RemoteBackend
from desktop.server.app import create_app
from tests.remote.conftest import serving
from desktop.core.postprocess import DetailSettings, UpscaleRequest
from desktop.core.request import Conditioning, Sampling
from tests.support.requests import make_request


def test_a_remote_generation_equals_the_local_one_with_the_same_infotext(tmp_path):
    from desktop.engine.local import LocalBackend

    backend = LocalBackend("cpu", "fp32", hash_cache=tmp_path / "hashes.json")
    job = GenerationJob(make_request(model="demo", prompt="a red boat", width=64, height=64, steps=3, seed=7,
                                     batch_size=2))
    loaded = backend.load("demo", TaskState())
    local = backend.run(job, TaskState())

    previews = []
    with serving(create_app(lambda: backend)) as url:
        remote_backend = RemoteBackend(url)
        remote_loaded = remote_backend.load("demo", TaskState())
        remote = remote_backend.run(job, TaskState(on_step=lambda i, n, p: previews.append(p is not None)))

    assert remote_loaded == loaded
    assert previews == [True] * 3
    assert len(remote) == len(local) == 2
    for got, want in zip(remote, local, strict=True):
        assert np.array_equal(got.image, want.image)
        assert (got.seed, got.request, got.params, got.note) == (want.seed, want.request, want.params, want.note)
        assert metadata_chunks(got.request, got.seed, remote_loaded.name, remote_loaded.hash, got.params) == \
            metadata_chunks(want.request, want.seed, loaded.name, loaded.hash, want.params)


def test_a_face_fix_on_the_server_equals_the_local_one_with_the_same_parameters_and_note(tmp_path):
    from desktop.engine.local import LocalBackend

    backend = LocalBackend("cpu", "fp32", hash_cache=tmp_path / "hashes.json")
    image = np.random.default_rng(5).integers(0, 256, (64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:40, 20:44] = True
    detailer = DetailSettings("demo", Conditioning("a smiling face"),
                              Sampling(sampler="Euler a", schedule="Automatic", steps=4, seed=21, strength=0.5))
    painted = UpscaleJob(UpscaleRequest(image, 1.0, restore=FACE, parameters="a cat\nSteps: 5, Seed: 1",
                                        faces=FaceSettings(DEMO_FACE_RESTORER, 0.8, detailer, mask=mask,
                                                           resolution=64)))
    found = UpscaleJob(UpscaleRequest(np.full((64, 64, 3), 128, np.uint8), 1.0, restore=FACE,
                                      faces=FaceSettings(DEMO_FACE_RESTORER)))  # nothing to find: a note
    local = [backend.run(job, TaskState())[0] for job in (painted, found)]

    with serving(create_app(lambda: backend)) as url:
        remote = [RemoteBackend(url).run(job, TaskState())[0] for job in (painted, found)]

    assert "ADetailer model: painted mask" in local[0].request.parameters and local[0].seed == 21
    assert local[1].note.startswith("No face was found")
    for got, want in zip(remote, local, strict=True):
        assert np.array_equal(got.image, want.image)
        assert (got.seed, got.request, got.params, got.note) == (want.seed, want.request, want.params, want.note)
