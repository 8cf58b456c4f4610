"""The queue the window shows is the worker's queue, whatever order the threads' messages arrive in."""

import time

from desktop.core import settings as settings_store
from desktop.core.queue_store import QueueStore
from desktop.ui.worker import GenerationWorker
from tests.support.fake_backend import FakeBackend
from tests.support.requests import change, make_request
from tests.ui.test_worker_spread import REQUEST, Replicas


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


def stored_seeds(path) -> list[int]:
    store = QueueStore(path)
    try:
        return [job.sampling.seed for job in store.load()]
    finally:
        store.close()


def test_a_job_a_replica_finished_stays_stored_until_its_pictures_are_saved(qtbot, tmp_path):
    backend = Replicas(slots=2)
    worker = GenerationWorker(settings_store.load(), backend.factory)
    store = QueueStore(tmp_path / "q.sqlite")
    worker.set_store(store)
    finished = []
    worker.job_finished.connect(lambda job, saved: finished.append(job))
    try:
        worker.submit(change(REQUEST, seed=1))  # a long job on one replica
        worker.submit(change(REQUEST, seed=2))  # a short one on the other
        backend.release(2)
        qtbot.waitUntil(lambda: len(backend.jobs) == 1 and backend.running == {1}, timeout=10_000)
        qtbot.wait(300)
        store.flush()
        assert finished == []  # job 2's pictures wait for job 1's, to be saved in order...
        assert stored_seeds(tmp_path / "q.sqlite") == [1, 2]  # ...so a crash now brings it back
        backend.release(1)
        qtbot.waitUntil(lambda: len(finished) == 2, timeout=10_000)
        store.flush()
        assert stored_seeds(tmp_path / "q.sqlite") == []
    finally:
        worker.cancel()
        assert worker.shutdown(5000)
        store.close()


class SlowStore(QueueStore):
    """A store whose queued() is slow, as when the GUI thread is preempted right before it."""

    slow = False

    def queued(self, job_id, job):
        if self.slow:
            time.sleep(0.4)
        super().queued(job_id, job)


def test_a_job_that_fails_at_once_leaves_no_row_to_come_back(qtbot, tmp_path):
    worker = GenerationWorker(settings_store.load(), FakeBackend(step_delay=0.05).factory)
    store = SlowStore(tmp_path / "q.sqlite")
    worker.set_store(store)
    failed, started = [], []
    worker.job_failed.connect(lambda job, message: failed.append(message))
    worker.job_started.connect(lambda job, request: started.append(job))
    try:
        worker.submit(request(steps=5))
        qtbot.waitUntil(lambda: bool(started), timeout=10_000)
        store.slow = True
        worker.submit(make_request(prompt="a __no_such_wildcard__", width=64, height=64, steps=5))  # fails at once
        qtbot.waitUntil(lambda: bool(failed) and not worker.is_busy(), timeout=10_000)
        store.flush()
        assert stored_seeds(tmp_path / "q.sqlite") == []  # no ghost of the failed job at the next start
    finally:
        worker.cancel()
        assert worker.shutdown(5000)
        store.close()
