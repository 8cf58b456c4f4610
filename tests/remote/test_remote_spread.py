"""The window's worker on a server with several replicas: it sends that many jobs at once, and the pictures come
back in seed order, each the one a run on this computer makes."""

from __future__ import annotations

import threading
import time

import numpy as np

from desktop.core import settings as settings_store
from desktop.core.backend import GenerationJob
from desktop.core.progress import TaskState
from desktop.remote.backend import RemoteBackend
from desktop.server.app import create_app
from desktop.ui.worker import GenerationWorker
from tests.remote.conftest import serving
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request

TIMEOUT = 30_000


class Counted:
    """The server's app, counting the jobs' requests (/load, then /run) it has open at once."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.open = self.most = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in ("/load", "/run"):
            return await self.app(scope, receive, send)
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        try:
            await self.app(scope, receive, send)
        finally:
            with self.lock:
                self.open -= 1


def test_a_server_with_two_replicas_gets_two_jobs_at_once_and_the_pictures_come_back_in_seed_order(qtbot):
    engine = FakeBackend(step_delay=0.05)
    app = Counted(create_app(lambda: engine, replicas=lambda: 2))
    requests = [make_request(prompt="a quay", model="demo", width=64, height=64, steps=6, seed=40 + i)
                for i in range(4)]
    with serving(app) as url:
        worker = GenerationWorker(settings_store.load(), lambda settings: RemoteBackend(url))
        ended, working = [], []
        worker.job_finished.connect(lambda job, saved: ended.append((job, saved)))
        worker.job_failed.connect(lambda job, message: ended.append((job, message)))
        worker.working.connect(lambda now, slots: working.append((now, slots)))
        try:
            jobs = [worker.submit(request) for request in requests]
            qtbot.waitUntil(lambda: len(ended) == 4, timeout=TIMEOUT)
        finally:
            worker.cancel()
            assert worker.shutdown(10_000)
    assert app.most >= 2, "two jobs were sent at once"
    assert max(working) == (2, 2), "never more than the server's replicas"
    assert [job for job, _ in ended] == jobs
    for request, (_, saved) in zip(requests, ended, strict=True):
        (image, seed, path), = saved
        [local] = FakeBackend().run(GenerationJob(request), TaskState())
        assert seed == request.sampling.seed and path.name.endswith(f"-{seed}.png")
        np.testing.assert_array_equal(image, local.image)
    assert [path.name for _, [(_, _, path)] in ended] == [f"0000{i + 1}-{40 + i}.png" for i in range(4)]


def test_cancel_reaches_every_call_in_progress_on_one_backend():
    engine = FakeBackend(step_delay=0.05)
    with serving(create_app(lambda: engine, replicas=lambda: 2)) as url:
        remote = RemoteBackend(url)
        remote.start(TaskState())
        stepped, outcomes = threading.Event(), []

        def call(seed: int) -> None:
            job = GenerationJob(make_request(prompt="a quay", model="demo", width=64, height=64, steps=100, seed=seed))
            try:
                outcomes.append(remote.run(job, TaskState(on_step=lambda i, n, p: stepped.set())))
            except Exception as error:  # noqa: BLE001 - what the call ended with is the test
                outcomes.append(error)

        calls = [threading.Thread(target=call, args=(seed,)) for seed in (1, 2)]
        for thread in calls:
            thread.start()
        assert stepped.wait(10)
        time.sleep(0.3)  # the other call is waiting for the engine
        remote.cancel()
        for thread in calls:
            thread.join(5)
        assert not any(thread.is_alive() for thread in calls), "a call did not hear the cancel"
    assert [type(outcome).__name__ for outcome in outcomes] == ["Cancelled", "Cancelled"]
