"""The real engine behind the server: a generation through RemoteBackend is the local one, pixel for pixel."""

from __future__ import annotations

import numpy as np

from desktop.core.backend import GenerationJob
from desktop.core.outputs import metadata_chunks
from desktop.core.progress import TaskState
from desktop.remote.backend import RemoteBackend
from desktop.server.app import create_app
from tests.remote.conftest import serving
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
