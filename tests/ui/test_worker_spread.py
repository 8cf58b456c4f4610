"""A backend that runs several jobs at once (a server's replicas: its `slots`) gets that many from the worker,
and what they make arrives, and is saved, in the order the jobs were submitted."""

from __future__ import annotations

import threading

import pytest

from desktop.core import settings as settings_store
from desktop.core.errors import Cancelled
from desktop.ui.worker import GenerationWorker
from tests.support.fake_backend import FakeBackend
from tests.support.requests import change, make_request

TIMEOUT = 10_000
REQUEST = make_request(prompt="a harbour", model="some/model", width=64, height=64, steps=3, seed=100)


class Replicas(FakeBackend):
    """A FakeBackend that runs `slots` jobs at once: a job waits at its start until the test opens its gate
    (`release(seed)`), so the test sees which run together."""

    def __init__(self, slots: int = 2, **options):
        super().__init__(**options)
        self.slots = slots
        self._lock = threading.Lock()
        self._gates: dict[int, threading.Event] = {}
        self.running: set[int] = set()  # seeds running now
        self.most = 0  # the most that ran at once

    def gate(self, seed: int) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(seed, threading.Event())

    def release(self, *seeds: int) -> None:
        for seed in seeds:
            self.gate(seed).set()

    def run(self, job, state):
        seed = job.request.sampling.seed
        with self._lock:
            self.running.add(seed)
            self.most = max(self.most, len(self.running))
        try:
            while not self.gate(seed).wait(0.005):
                if state.cancelled():
                    raise Cancelled(0)
            return super().run(job, state)
        finally:
            with self._lock:
                self.running.discard(seed)


@pytest.fixture
def worker_on(qtbot):
    workers = []

    def make(backend: FakeBackend) -> GenerationWorker:
        worker = GenerationWorker(settings_store.load(), backend.factory)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.cancel()
        assert worker.shutdown(5000)


def seeds(n: int) -> list:
    return [change(REQUEST, seed=100 + i) for i in range(n)]


def ended_in(worker: GenerationWorker) -> list:
    """(job id, "finished" | "failed" | "cancelled") as the GUI thread receives them."""
    ended = []
    worker.job_finished.connect(lambda job, saved: ended.append((job, "finished", [s for _, s, _ in saved])))
    worker.job_failed.connect(lambda job, message: ended.append((job, "failed", message)))
    worker.job_cancelled.connect(lambda job: ended.append((job, "cancelled", None)))
    return ended


def test_four_jobs_on_two_replicas_run_two_at_a_time_and_end_in_seed_order(worker_on, qtbot):
    backend = Replicas(slots=2)
    worker = worker_on(backend)
    ended, started = ended_in(worker), []
    worker.job_started.connect(lambda job, request: started.append(job))
    jobs = [worker.submit(each) for each in seeds(4)]
    qtbot.waitUntil(lambda: backend.running == {100, 101}, timeout=TIMEOUT)
    qtbot.wait(100)
    assert backend.running == {100, 101} and [job for job, _ in worker.pending()] == jobs[2:], \
        "two run, two wait"
    assert started == jobs[:2]
    backend.release(100)
    qtbot.waitUntil(lambda: backend.running == {101, 102}, timeout=TIMEOUT)
    backend.release(101, 102, 103)
    qtbot.waitUntil(lambda: len(ended) == 4, timeout=TIMEOUT)
    assert ended == [(job, "finished", [100 + i]) for i, job in enumerate(jobs)]
    assert backend.most == 2 and started == jobs
    qtbot.waitUntil(lambda: not worker.is_busy(), timeout=TIMEOUT)


def test_a_later_job_that_finishes_first_waits_for_the_earlier_one(worker_on, qtbot):
    backend = Replicas(slots=2)
    worker = worker_on(backend)
    ended, paths = ended_in(worker), []
    worker.job_finished.connect(lambda job, saved: paths.extend(path for _, _, path in saved))
    first, second, third = (worker.submit(each) for each in seeds(3))
    qtbot.waitUntil(lambda: backend.running == {100, 101}, timeout=TIMEOUT)
    backend.release(101)  # the second job finishes; its replica takes the third
    qtbot.waitUntil(lambda: backend.running == {100, 102}, timeout=TIMEOUT)
    qtbot.wait(150)
    assert ended == [], "the second job's pictures wait for the first's"
    assert worker.is_busy()
    backend.release(100, 102)
    qtbot.waitUntil(lambda: len(ended) == 3, timeout=TIMEOUT)
    assert [job for job, *_ in ended] == [first, second, third]
    assert [path.name for path in paths] == ["00001-100.png", "00002-101.png", "00003-102.png"], \
        "saved in seed order too"


def test_a_failure_is_said_in_its_turn(worker_on, qtbot):
    class FailsOne(Replicas):
        def run(self, job, state):
            if job.request.sampling.seed == 101:
                raise RuntimeError("replica on fire")
            return super().run(job, state)

    backend = FailsOne(slots=2)
    worker = worker_on(backend)
    ended = ended_in(worker)
    jobs = [worker.submit(each) for each in seeds(3)]
    qtbot.waitUntil(lambda: backend.running == {100, 102}, timeout=TIMEOUT)
    qtbot.wait(100)
    assert ended == []
    backend.release(100, 102)
    qtbot.waitUntil(lambda: len(ended) == 3, timeout=TIMEOUT)
    assert [(job, kind) for job, kind, _ in ended] == [(jobs[0], "finished"), (jobs[1], "failed"),
                                                       (jobs[2], "finished")]
    assert "replica on fire" in ended[1][2]


def test_a_server_job_that_ends_without_a_picture_is_said_and_the_later_one_still_arrives(worker_on, qtbot):
    class NoPictureForTheFirst(Replicas):
        url = "http://gpu-box:7862"  # a server's backend

        def run(self, job, state):
            results = super().run(job, state)
            return [] if job.request.sampling.seed == 100 else results  # `done` with no result line

    backend = NoPictureForTheFirst(slots=2)
    worker = worker_on(backend)
    ended = ended_in(worker)
    first, second = (worker.submit(each) for each in seeds(2))
    qtbot.waitUntil(lambda: backend.running == {100, 101}, timeout=TIMEOUT)
    backend.release(101)  # the second ends first and waits for the first's turn
    qtbot.wait(100)
    backend.release(100)
    qtbot.waitUntil(lambda: len(ended) == 2, timeout=TIMEOUT)
    assert ended == [(first, "failed", "The server finished the job without a picture; look at the server's log, "
                                       "then try again."),
                     (second, "finished", [101])]
    qtbot.waitUntil(lambda: not worker.is_busy(), timeout=TIMEOUT)


def test_a_job_whose_report_breaks_is_said_as_failed_and_the_later_ones_still_arrive(worker_on, qtbot, monkeypatch):
    from desktop.ui import worker as worker_module

    report = worker_module._Runner._report

    def breaks_for_the_first(runner, job_id, request, *rest):
        if request.sampling.seed == 100:
            raise KeyError("a bug")
        report(runner, job_id, request, *rest)

    monkeypatch.setattr(worker_module._Runner, "_report", breaks_for_the_first)
    backend = Replicas(slots=2)
    worker = worker_on(backend)
    ended = ended_in(worker)
    jobs = [worker.submit(each) for each in seeds(3)]
    backend.release(100, 101, 102)
    qtbot.waitUntil(lambda: len(ended) == 3, timeout=TIMEOUT)
    assert [(job, kind) for job, kind, _ in ended] == [(jobs[0], "failed"), (jobs[1], "finished"),
                                                       (jobs[2], "finished")]
    assert ended[0][2].startswith("Generation failed (KeyError: 'a bug'). The app keeps working")
    qtbot.waitUntil(lambda: not worker.is_busy(), timeout=TIMEOUT)


def test_cancel_stops_every_running_job_within_a_step_and_the_queued_ones_run_after(worker_on, qtbot):
    backend = Replicas(slots=2, step_delay=0.05)
    worker = worker_on(backend)
    ended, steps = ended_in(worker), []
    worker.step.connect(lambda job, i, n, preview: steps.append((job, i)))
    backend.release(100, 101, 102, 103)
    long = [change(each, steps=100) for each in seeds(2)]
    running = [worker.submit(each) for each in long]
    waiting = [worker.submit(each) for each in seeds(4)[2:]]
    qtbot.waitUntil(lambda: {job for job, _ in steps} == set(running), timeout=TIMEOUT)
    assert [job for job, _ in worker.pending()] == waiting
    qtbot.wait(200)
    at_cancel = {job: max(i for j, i in steps if j == job) for job in running}
    worker.cancel()
    qtbot.waitUntil(lambda: len(ended) == 4, timeout=TIMEOUT)
    assert ended[:2] == [(running[0], "cancelled", None), (running[1], "cancelled", None)]
    assert [(job, kind) for job, kind, _ in ended[2:]] == [(job, "finished") for job in waiting], \
        "the queued jobs stay and run, as after a cancel of one job"
    for job in running:  # within a step (one more may have been on its way to this thread)
        assert max(i for j, i in steps if j == job) <= at_cancel[job] + 2, (at_cancel, steps)


def test_stopped_comes_after_what_a_job_slow_to_notice_the_cancel_says(worker_on, qtbot):
    class SlowToNotice(Replicas):  # blocked in the network: it sees the cancel only once let go
        def run(self, job, state):
            self.running.add(job.request.sampling.seed)
            self.gate(job.request.sampling.seed).wait(TIMEOUT / 1000)
            if state.cancelled():
                raise Cancelled(0)
            return FakeBackend.run(self, job, state)

    backend = SlowToNotice(slots=2)
    worker = worker_on(backend)
    said = []
    worker.job_cancelled.connect(lambda job: said.append("cancelled"))
    worker.stopped.connect(lambda: said.append("stopped"))
    worker.submit(REQUEST)
    qtbot.waitUntil(lambda: backend.running == {100}, timeout=TIMEOUT)
    assert not worker.shutdown(5000, wait_for_jobs=False), "the job is still running"
    backend.release(100)
    assert worker._runner.join_jobs(5), "the job's thread ended"  # here, before the window hears of it
    qtbot.waitUntil(lambda: "stopped" in said, timeout=TIMEOUT)
    qtbot.wait(50)
    assert said == ["cancelled", "stopped"], "the window closes after the job's end is said, not before"


def test_one_slot_runs_one_job_at_a_time_on_the_worker_thread(worker_on, qtbot):
    backend = Replicas(slots=1)
    threads = set()
    run = backend.run
    backend.run = lambda job, state: (threads.add(threading.current_thread()), run(job, state))[1]
    worker = worker_on(backend)
    ended = ended_in(worker)
    jobs = [worker.submit(each) for each in seeds(2)]
    qtbot.waitUntil(lambda: backend.running == {100}, timeout=TIMEOUT)
    qtbot.wait(150)
    assert backend.running == {100} and [job for job, _ in worker.pending()] == jobs[1:]
    backend.release(100, 101)
    qtbot.waitUntil(lambda: len(ended) == 2, timeout=TIMEOUT)
    assert backend.most == 1
    (thread,) = threads
    assert not thread.name.startswith("generation-job"), "on the worker's own thread, as on this computer"


def test_the_worker_says_how_many_replicas_work(worker_on, qtbot):
    backend = Replicas(slots=2)
    worker = worker_on(backend)
    said = []
    worker.working.connect(lambda working, slots: said.append((working, slots)))
    ended = ended_in(worker)
    for each in seeds(2):
        worker.submit(each)
    qtbot.waitUntil(lambda: (2, 2) in said, timeout=TIMEOUT)
    backend.release(100, 101)
    qtbot.waitUntil(lambda: len(ended) == 2, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: said[-1] == (0, 2), timeout=TIMEOUT)
    assert said[:2] == [(1, 2), (2, 2)]
