"""Live mode: drafts of the canvas frame as the person paints (desktop/ui/canvas/live.py, GenerationWorker drafts)."""

from __future__ import annotations

from desktop.core import settings as settings_store
from desktop.core.queue_store import QueueStore
from desktop.ui.worker import GenerationWorker
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request


def draft(seed: int = 1, steps: int = 4):
    return make_request(prompt="a kite", model="some/model", width=64, height=64, steps=steps, seed=seed)


class Ends:
    """What the worker said of each job: "started", "finished", "cancelled", "failed"."""

    def __init__(self, worker: GenerationWorker):
        self.said: dict[int, list[str]] = {}
        self.saved: dict[int, list] = {}
        worker.job_started.connect(lambda job, _r: self.said.setdefault(job, []).append("started"))
        worker.job_finished.connect(self._finished)
        worker.job_cancelled.connect(lambda job: self.said.setdefault(job, []).append("cancelled"))
        worker.job_failed.connect(lambda job, message: self.said.setdefault(job, []).append(f"failed: {message}"))

    def _finished(self, job: int, saved: list) -> None:
        self.said.setdefault(job, []).append("finished")
        self.saved[job] = saved

    def ended(self, job: int) -> bool:
        return any(word in ("finished", "cancelled") or word.startswith("failed") for word in self.said.get(job, []))


def test_a_new_draft_cancels_the_running_one_and_drops_the_waiting_one(qtbot):
    backend = FakeBackend(step_delay=0.1)
    worker = GenerationWorker(settings_store.load(), backend.factory)
    ends = Ends(worker)
    try:
        first = worker.submit_draft(draft(steps=50))
        qtbot.waitUntil(lambda: "started" in ends.said.get(first, []), timeout=10_000)
        second = worker.submit_draft(draft(seed=2))  # waits for the first to stop...
        third = worker.submit_draft(draft(seed=3, steps=2))  # ...and is replaced by this one before it starts
        qtbot.waitUntil(lambda: ends.ended(third), timeout=10_000)
        assert ends.said[first] == ["started", "cancelled"]
        assert ends.said[second] == ["cancelled"]  # never started
        assert ends.said[third] == ["started", "finished"]
        assert [job.request.sampling.seed for job in backend.jobs] == [1, 3]
        assert all(worker.is_draft(job) for job in (first, second, third))
    finally:
        worker.cancel()
        assert worker.shutdown(5000)


def test_a_draft_never_cancels_a_normal_job_it_waits_behind_it(qtbot):
    backend = FakeBackend(step_delay=0.05)
    worker = GenerationWorker(settings_store.load(), backend.factory)
    ends = Ends(worker)
    try:
        job = worker.submit(draft(seed=1, steps=8))
        qtbot.waitUntil(lambda: "started" in ends.said.get(job, []), timeout=10_000)
        first = worker.submit_draft(draft(seed=2, steps=2))
        second = worker.submit_draft(draft(seed=3, steps=2))
        qtbot.waitUntil(lambda: ends.ended(second), timeout=10_000)
        assert ends.said[job] == ["started", "finished"]
        assert ends.said[first] == ["cancelled"]
        assert ends.said[second] == ["started", "finished"]
        assert not worker.is_draft(job)
    finally:
        worker.cancel()
        assert worker.shutdown(5000)


def test_a_draft_is_neither_queued_nor_stored_nor_saved(qtbot, tmp_path):
    settings = settings_store.load()
    settings.output_folder = str(tmp_path / "out")
    worker = GenerationWorker(settings, FakeBackend(step_delay=0.02).factory)
    store = QueueStore(tmp_path / "q.sqlite")
    worker.set_store(store)
    shown = []
    worker.queue_changed.connect(lambda pending: shown.append(list(pending)))
    ends = Ends(worker)
    try:
        worker.pause()  # a draft runs while the queue is paused: it is not a queue job
        job = worker.submit_draft(draft(steps=3))
        assert worker.pending() == []
        qtbot.waitUntil(lambda: ends.ended(job), timeout=10_000)
        store.flush()
        assert ends.said[job] == ["started", "finished"]
        [(image, seed, path)] = ends.saved[job]
        assert image.shape == (64, 64, 3) and seed == 1 and path is None
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))
        assert all(pending == [] for pending in shown)
        assert store.load() == []
    finally:
        worker.cancel()
        assert worker.shutdown(5000)
        store.close()


def test_turning_drafts_off_cancels_the_running_and_the_waiting_draft(qtbot):
    worker = GenerationWorker(settings_store.load(), FakeBackend(step_delay=0.1).factory)
    ends = Ends(worker)
    try:
        first = worker.submit_draft(draft(steps=50))
        qtbot.waitUntil(lambda: "started" in ends.said.get(first, []), timeout=10_000)
        second = worker.submit_draft(draft(seed=2))
        worker.cancel_drafts()
        qtbot.waitUntil(lambda: ends.ended(first) and ends.ended(second), timeout=10_000)
        qtbot.wait(200)
        assert ends.said[first] == ["started", "cancelled"] and ends.said[second] == ["cancelled"]
    finally:
        worker.cancel()
        assert worker.shutdown(5000)
