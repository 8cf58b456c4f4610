"""The queue survives: jobs waiting (or running) when the window closed or the app was killed come back at the
next start, paused, with a notice; Resume runs them into the gallery. The queue view reorders, duplicates, pauses
and resumes, and its header gives the whole queue's progress ("1 of 4, about 3 s left")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from PySide6.QtCore import Qt

from desktop.core import paths
from desktop.core.queue_store import QueueStore
from desktop.core.xyz import PlotRun, parse_axis
from tests.support.requests import make_request

TIMEOUT = 20_000
ROOT = Path(__file__).resolve().parents[2]


def small(window, prompt: str, steps: int = 4) -> None:
    window.panel.set_request(make_request(prompt=prompt, steps=steps, width=64, height=64, seed=3,
                                          sampler="Euler a", schedule="Automatic"))


def listed(window) -> list[str]:
    return [window.queue.list.item(i).text().split()[0] for i in range(window.queue.list.count())]


def click(qtbot, button) -> None:
    assert button.isEnabled() and button.isVisible(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def stored_prompts() -> list[str]:
    store = QueueStore()
    try:
        return [job.conditioning.prompt for job in store.load()]
    finally:
        store.close()


def test_jobs_left_at_close_come_back_paused_with_a_notice_and_resume_into_the_gallery(make_window, fake_backend,
                                                                                        qtbot):
    fake_backend.step_delay = 0.05
    window = make_window()
    started = []
    window.worker.job_started.connect(lambda job, request: started.append(request.conditioning.prompt))
    for prompt in ("first", "second", "third"):
        small(window, prompt, steps=100)
        window.generate()
    qtbot.waitUntil(lambda: started == ["first"], timeout=TIMEOUT)
    window.close()  # "first" is cancelled by the close, not by the person: it comes back too

    fake_backend.step_delay = 0.0
    again = make_window()
    runs_before = len(fake_backend.jobs)
    qtbot.waitUntil(lambda: listed(again) == ["first", "second", "third"], timeout=TIMEOUT)  # read off the GUI thread
    assert again.worker.is_paused() and again.queue.pause_button.text() == "Resume"
    assert again.queue.title.text().startswith("Queue: 3 paused · 0 of 3")
    assert again.queue_notice.isVisible()
    assert again.queue_notice.text() == ("3 jobs from the last session are back in the queue (paused): press Resume "
                                         "below to run them, or remove them.")
    qtbot.wait(300)
    assert len(fake_backend.jobs) == runs_before  # nothing started on its own
    qtbot.waitUntil(lambda: again.gallery_store is not None, timeout=TIMEOUT)

    click(qtbot, again.queue.pause_button)  # Resume
    qtbot.waitUntil(lambda: again.gallery.model.rowCount() == 3 and again.queue.title.text() == "Queue: empty · 3 of 3",
                    timeout=TIMEOUT)
    assert [job.request.conditioning.prompt for job in fake_backend.jobs[runs_before:]] == ["first", "second",
                                                                                           "third"]
    assert not again.queue_notice.isVisible() and again.queue.pause_button.text() == "Pause"
    assert again.generation.staged == []  # their canvas frame is gone: the gallery has them, the canvas does not
    again.queue_store.flush()
    assert stored_prompts() == []  # done: nothing comes back a third time


def test_reorder_duplicate_pause_and_the_progress_figure(make_window, fake_backend, qtbot):
    fake_backend.step_delay = 0.01
    window = make_window()
    started = []
    window.worker.job_started.connect(lambda job, request: started.append(request.conditioning.prompt))
    small(window, "warm-up", steps=5)
    window.generate()
    qtbot.waitUntil(lambda: not window.worker.is_busy(), timeout=TIMEOUT)  # one measured job for the time left
    # the count follows the job's end, which reaches the window a moment after the worker is free
    qtbot.waitUntil(lambda: window.queue.title.text() == "Queue: empty · 1 of 1", timeout=TIMEOUT)

    fake_backend.step_delay = 0.05
    for prompt, steps in (("one", 60), ("two", 5), ("three", 5)):
        small(window, prompt, steps)
        window.generate()
    qtbot.waitUntil(lambda: started[-1:] == ["one"] and listed(window) == ["two", "three"], timeout=TIMEOUT)
    title = window.queue.title.text()
    assert re.fullmatch(r"Queue: 2 waiting · 0 of 3, about \d+ s left", title), title  # a new count: it had emptied

    window.queue.list.item(1).setSelected(True)  # "three"
    click(qtbot, window.queue.up_button)
    assert listed(window) == ["three", "two"] and window.queue.selected_ids() == [window.queue.job_ids()[0]]
    click(qtbot, window.queue.duplicate_button)
    assert listed(window) == ["three", "three", "two"]
    assert window.queue.title.text().startswith("Queue: 3 waiting · 0 of 4")
    window.queue_store.flush()
    assert stored_prompts() == ["one", "three", "three", "two"]  # the running one first, then the new order

    click(qtbot, window.queue.pause_button)  # "one" finishes; nothing new starts
    assert window.queue.pause_button.text() == "Resume" and window.queue.title.text().startswith("Queue: 3 paused")
    fake_backend.step_delay = 0.0
    qtbot.waitUntil(lambda: window.queue.title.text().startswith("Queue: 3 paused · 1 of 4"),
                    timeout=TIMEOUT)
    qtbot.wait(300)
    assert started[-1] == "one" and listed(window) == ["three", "three", "two"]

    click(qtbot, window.queue.pause_button)  # Resume
    qtbot.waitUntil(lambda: window.queue.title.text() == "Queue: empty · 4 of 4", timeout=TIMEOUT)
    assert started[1:] == ["one", "three", "three", "two"]
    window.queue_store.flush()
    assert stored_prompts() == []


APP = textwrap.dedent("""
    import sys, time
    from PySide6.QtWidgets import QApplication
    from desktop.core import settings as settings_store
    from desktop.ui import main_window
    from tests.support.fake_backend import FakeBackend
    from tests.support.requests import make_request

    backend = FakeBackend(step_delay=0.2)
    main_window.local_backend = backend.factory
    app = QApplication(sys.argv)
    settings = settings_store.load()
    settings.welcome_done = True
    window = main_window.MainWindow(settings)
    window.show()
    window.start_engine()
    started = []
    window.worker.job_started.connect(lambda job, request: started.append(job))
    for prompt in ("alpha", "beta", "gamma"):
        window.panel.set_request(make_request(prompt=prompt, steps=50, width=64, height=64, seed=3))
        window.generate()
    while not started:
        app.processEvents()
        time.sleep(0.01)
    window.queue_store.flush()
    print("READY", flush=True)
    app.exec()
""")


def test_the_app_killed_with_jobs_queued_finds_them_at_the_next_start(make_window, fake_backend, qtbot):
    process = subprocess.Popen([sys.executable, "-c", APP], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    try:
        assert process.stdout.readline().strip() == "READY"
        time.sleep(0.3)  # mid-way through "alpha"'s steps
    finally:
        process.send_signal(signal.SIGKILL)  # no close, no clean-up: a crash
        process.wait(10)
    assert process.returncode == -signal.SIGKILL
    assert paths.queue_file().is_file()

    window = make_window()
    qtbot.waitUntil(lambda: listed(window) == ["alpha", "beta", "gamma"], timeout=TIMEOUT)  # the running one too
    assert window.worker.is_paused() and window.queue_notice.isVisible()
    assert window.queue_notice.text().startswith("3 jobs from the last session are back in the queue (paused)")
    qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
    click(qtbot, window.queue.pause_button)
    qtbot.waitUntil(lambda: window.gallery.model.rowCount() == 3 and not window.worker.is_busy(), timeout=TIMEOUT)
    assert [job.request.conditioning.prompt for job in fake_backend.jobs] == ["alpha", "beta", "gamma"]


def test_a_second_window_on_the_profile_keeps_no_queue_and_says_so_and_its_jobs_still_run(make_window, fake_backend,
                                                                                          qtbot):
    first = make_window()
    click(qtbot, first.queue.pause_button)  # Pause: the job waits, stored
    small(first, "kept")
    first.generate()
    first.queue_store.flush()
    assert stored_prompts() == ["kept"]

    second = make_window()
    assert listed(second) == [] and second.queue_store is None  # not the first window's job a second time
    assert second.queue_notice.isVisible()
    assert second.queue_notice.text() == ("Another Sfumato window keeps this profile's queue: this window's jobs "
                                          "run, but they do not come back after a restart.")
    runs_before = len(fake_backend.jobs)
    small(second, "its own")
    second.generate()
    qtbot.waitUntil(lambda: len(fake_backend.jobs) == runs_before + 1 and not second.worker.is_busy(),
                    timeout=TIMEOUT)
    assert fake_backend.jobs[-1].request.conditioning.prompt == "its own"
    assert stored_prompts() == ["kept"] and listed(first) == ["kept"]


def test_cancel_works_only_while_something_runs_and_a_run_queued_while_paused_says_so(make_window, fake_backend,
                                                                                      qtbot):
    store = QueueStore()
    store.queued(1, PlotRun(make_request(prompt="a quay", width=64, height=64, steps=2),
                            parse_axis("Steps", "2,3")))  # left by a crash in the last session
    store.close()
    window = make_window()
    qtbot.waitUntil(lambda: listed(window) == ["X/Y/Z"], timeout=TIMEOUT)
    assert window.worker.is_paused()
    assert "An X/Y/Z plot comes back from its start: the cells it had saved are made again." in \
        window.queue_notice.text()
    assert not window.cancel_button.isEnabled()  # paused and nothing runs: nothing to cancel

    window.submit_run(PlotRun(make_request(prompt="a kite", width=64, height=64, steps=2), parse_axis("Steps", "2")))
    assert window.statusBar().currentMessage() == ("Queued, but the queue is paused: press Resume below the canvas "
                                                   "to run it.")
    assert not window.cancel_button.isEnabled()

    fake_backend.step_delay = 0.05
    click(qtbot, window.queue.pause_button)  # Resume
    assert window.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not window.worker.is_busy(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not window.cancel_button.isEnabled(), timeout=TIMEOUT)


def test_the_last_sessions_pictures_are_decoded_off_the_gui_thread_and_a_job_queued_meanwhile_is_kept_once(
        make_window, fake_backend, qtbot, monkeypatch):
    store = QueueStore()
    store.queued(1, make_request(prompt="old", width=64, height=64, steps=2))
    store.close()
    gate, readers = threading.Event(), []
    load = QueueStore.load

    def slow_load(self):
        readers.append(threading.current_thread() is threading.main_thread())
        gate.wait(10)  # many large pictures to decode
        return load(self)

    monkeypatch.setattr(QueueStore, "load", slow_load)
    window = make_window()  # shown and answering while the pictures are read
    qtbot.waitUntil(lambda: bool(readers), timeout=TIMEOUT)
    assert readers == [False]
    click(qtbot, window.queue.pause_button)  # Pause
    small(window, "new")
    window.generate()
    window.queue_store.flush()
    gate.set()
    qtbot.waitUntil(lambda: listed(window) == ["new", "old"], timeout=TIMEOUT)
    assert window.queue_notice.text().startswith("1 job from the last session is back in the queue (paused)")
    window.queue_store.flush()
    assert sorted(stored_prompts()) == ["new", "old"]  # each once
