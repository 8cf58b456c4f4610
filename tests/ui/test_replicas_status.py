"""The window on a backend with several replicas (a server's `slots`): the status bar says how many work, a batch
count's pictures arrive in seed order, and Cancel stays on while any replica still works."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import Qt

from desktop.core.errors import Cancelled
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request

TIMEOUT = 20_000


def small(window, **fields):
    base = {"prompt": "a quay", "steps": 20, "width": 64, "height": 64, "seed": 7, "sampler": "Euler a",
            "schedule": "Automatic"}
    window.panel.set_request(make_request(**{**base, **fields}))


def test_the_status_bar_says_how_many_replicas_work_and_a_batch_arrives_in_seed_order(make_window, fake_backend,
                                                                                       qtbot):
    fake_backend.slots = 2
    fake_backend.step_delay = 0.03
    window = make_window()
    label = window.replicas_label
    assert label.isHidden(), "nothing runs yet"
    small(window)
    window.panel.batch_count.setValue(3)
    shown = []
    window.results_shown.connect(lambda saved: shown.append([seed for _, seed, _ in saved]))
    window.generate()
    qtbot.waitUntil(lambda: label.isVisible() and label.text() == "2 of 2 replicas working", timeout=TIMEOUT)
    assert label.geometry().right() < window.device_label.geometry().left(), "beside the Device label"
    qtbot.waitUntil(lambda: len(shown) == 3, timeout=TIMEOUT)
    assert shown == [[7], [8], [9]]
    qtbot.waitUntil(lambda: label.isHidden(), timeout=TIMEOUT)


def test_a_batch_on_two_replicas_previews_one_seed_until_it_is_done_instead_of_flickering(make_window, fake_backend,
                                                                                       qtbot):
    fake_backend.slots = 2
    fake_backend.step_delay = 0.03
    window = make_window()
    small(window)
    window.panel.batch_count.setValue(2)
    painted, last = [], [None]  # the job whose preview the frame shows, each time it changes

    def stepped(job, index, total, preview):  # after the window's own slot: what it painted for this step
        shown = window.canvas.picture("preview")
        key = shown[0].cacheKey() if shown else None
        if key != last[0]:
            last[0] = key
            painted.append(job)

    window.worker.step.connect(stepped)
    first, second = window.generate()
    qtbot.waitUntil(lambda: not window.worker.is_busy(), timeout=TIMEOUT)
    assert painted[0] == first
    switches = [job for job, before in zip(painted[1:], painted) if job != before]
    assert switches in ([], [second]), f"the preview went back and forth between the seeds: {painted}"


def test_one_replica_shows_no_count(make_window, fake_backend, qtbot):
    fake_backend.step_delay = 0.02
    window = make_window()
    small(window, steps=6)
    window.panel.batch_count.setValue(2)
    visible = []
    window.worker.step.connect(lambda *_: visible.append(window.replicas_label.isVisible()))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    qtbot.waitUntil(lambda: not window.worker.is_busy(), timeout=TIMEOUT)
    assert visible and not any(visible) and window.replicas_label.isHidden()


def test_cancel_stays_on_while_another_replica_works_and_the_bar_follows_the_oldest_job(make_window, fake_backend,
                                                                                       qtbot):
    fake_backend.slots = 2
    fake_backend.step_delay = 0.03
    window = make_window()
    formats = []
    window.worker.step.connect(lambda job, i, n, preview: formats.append(window.progress.format()))
    small(window, steps=4)
    first, = window.generate()
    small(window, steps=100, seed=50)
    second, = window.generate()
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        pass
    assert window.cancel_button.isEnabled(), "the second job still runs"
    qtbot.wait(200)
    assert "/100" in window.progress.format(), "the bar now follows the second job"
    assert all("/100" not in text for text in formats[:3]), "while the first ran, the bar was its"
    with qtbot.waitSignal(window.worker.job_cancelled, timeout=TIMEOUT) as cancelled:
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert cancelled.args == [second]
    qtbot.waitUntil(lambda: not window.cancel_button.isEnabled(), timeout=TIMEOUT)


class StuckInTheNetwork(FakeBackend):
    """Two replicas whose job is blocked in a connect or an upload: it notices a cancel only once the test lets it
    go."""

    slots = 2

    def __init__(self):
        super().__init__()
        self.inside, self.let_go = threading.Event(), threading.Event()

    def run(self, job, state):
        self.inside.set()
        self.let_go.wait(TIMEOUT / 1000)
        if state.cancelled():
            raise Cancelled(0)
        return super().run(job, state)


def test_closing_while_a_replica_is_stuck_says_stopping_at_once_and_closes_when_it_ends(make_window, qtbot,
                                                                                        monkeypatch):
    from desktop.ui import main_window

    backend = StuckInTheNetwork()
    monkeypatch.setattr(main_window, "local_backend", backend.factory)  # before the window starts its engine
    window = make_window()
    small(window, steps=2)
    window.generate()
    qtbot.waitUntil(backend.inside.is_set, timeout=TIMEOUT)
    began = time.monotonic()
    window.close()
    assert time.monotonic() - began < 1.0, "the window froze waiting for the stuck job"
    assert window.isVisible() and window.statusBar().currentMessage() == "Stopping: finishing the current step..."
    qtbot.wait(300)  # the worker thread has ended by now; the job's has not
    assert window.isVisible()
    backend.let_go.set()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=TIMEOUT)


def test_a_replica_job_that_ends_as_the_window_closes_still_shows_its_picture(make_window, qtbot, monkeypatch):
    from desktop.ui import main_window

    backend = StuckInTheNetwork()
    monkeypatch.setattr(main_window, "local_backend", backend.factory)
    window = make_window()
    small(window, steps=2)
    shown = []
    window.results_shown.connect(lambda saved: shown.append([seed for _, seed, _ in saved]))
    window.generate()
    qtbot.waitUntil(backend.inside.is_set, timeout=TIMEOUT)
    backend.let_go.set()
    assert window.worker._runner.join_jobs(TIMEOUT / 1000)  # it ended; the window has not heard it yet
    window.close()
    assert not window.isVisible()
    assert shown == [[7]], "its picture is shown (and in the gallery) before the gallery closes"
