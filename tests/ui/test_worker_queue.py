"""The queue the window shows is the worker's queue, whatever order the threads' messages arrive in."""

import time

from desktop.core import settings as settings_store
from desktop.ui.worker import GenerationWorker
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request


def request(steps: int):
    return make_request(prompt="a kite", model="some/model", width=64, height=64, steps=steps, seed=1)


def test_a_job_submitted_while_the_worker_takes_the_next_one_stays_listed(qtbot):
    worker = GenerationWorker(settings_store.load(), lambda settings: FakeBackend(step_delay=0.05))
    shown = []
    worker.queue_changed.connect(lambda pending: shown.append([job for job, _ in pending]))
    try:
        with qtbot.waitSignal(worker.job_started, timeout=10_000):
            worker.submit(request(steps=2))
        worker.submit(request(steps=60))
        # The GUI thread is busy while the worker finishes the first job and takes the second: its
        # "nothing pending" is delivered only after the next submit has said "one pending".
        time.sleep(0.6)
        last = worker.submit(request(steps=2))
        qtbot.wait(300)
        assert shown[-1] == [last], f"the queue shown: {shown[-3:]}"
    finally:
        worker.cancel()
        assert worker.shutdown(5000)
