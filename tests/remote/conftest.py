"""A Sfumato server on 127.0.0.1 for a test: uvicorn on a free port, on a background thread, stopped after.

Every test here has a hard time limit (faulthandler kills a run that hangs, with its threads' stacks) on top
of the timeouts of every call it makes.
"""

from __future__ import annotations

import faulthandler
import socket
import threading
import time
from contextlib import contextmanager

import pytest
import uvicorn

from tests.support.fake_backend import FakeBackend

TEST_LIMIT_S = 120


@pytest.fixture(autouse=True)
def time_limit():
    faulthandler.dump_traceback_later(TEST_LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@contextmanager
def serving(app):
    """Run the ASGI `app` on 127.0.0.1; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="test-uvicorn")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


class RecordingBackend(FakeBackend):
    """A FakeBackend that keeps the steps it ran, and says when a job has ended on its thread."""

    def __init__(self, **options):
        super().__init__(**options)
        self.steps: list[int] = []
        self.ended = threading.Event()
        self.outcome: object = None

    def _wait(self, state, index):
        super()._wait(state, index)
        self.steps.append(index)

    def run(self, job, state):
        try:
            self.outcome = results = super().run(job, state)
            return results
        except BaseException as error:
            self.outcome = error
            raise
        finally:
            self.ended.set()
