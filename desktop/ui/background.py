"""Background: run slow work (files, model scans, downloads) off the GUI thread.

`run(work, done, failed)` calls `work()` in a plain thread, then `done(result)`
or `failed(error)` on the GUI thread. `report(tag, text)` sends a progress
line from the work to the GUI thread. `wait()` lets a window finish its work
before it closes; while `closed` is set, results are dropped (the window is
gone).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot


class Background(QObject):
    """Signals:
    progress(int, str): a tag chosen by the caller and a status line, from report().
    """

    progress = Signal(int, str)
    _ended = Signal(int, object, object)  # job id, result, error

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.closed = False
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable, Callable | None]] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._ended.connect(self._deliver)

    def run(self, work: Callable[[], object], done: Callable[[object], None],
            failed: Callable[[BaseException], None] | None = None, name: str = "background") -> int:
        """Start `work`; returns the job's id. Without `failed`, an error is raised on the GUI thread."""
        job = next(self._ids)
        self._callbacks[job] = (done, failed)

        def target() -> None:
            try:
                result, error = work(), None
            except BaseException as caught:  # noqa: BLE001 - handed to `failed` on the GUI thread
                result, error = None, caught
            try:
                self._ended.emit(job, result, error)
            except RuntimeError:  # the window is gone: nobody to tell
                pass

        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads[job] = thread
        thread.start()
        return job

    def report(self, tag: int, text: str) -> None:
        """Send a progress line to the GUI thread; safe from any thread."""
        try:
            self.progress.emit(tag, text)
        except RuntimeError:
            pass

    def busy(self) -> bool:
        return any(thread.is_alive() for thread in self._threads.values())

    def wait(self, timeout_s: float | None = 30.0) -> bool:
        """Block until every job's work is done (their callbacks run later, from the event loop).

        Returns False when one is still running after `timeout_s` in all.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in list(self._threads.values()):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self.busy()

    @Slot(int, object, object)
    def _deliver(self, job: int, result: object, error: object) -> None:
        thread = self._threads.pop(job, None)
        if thread is not None:
            thread.join()  # it has just emitted its last signal
        done, failed = self._callbacks.pop(job, (None, None))
        if not self.closed and done is not None:
            if error is None:
                done(result)
            elif failed is not None:
                failed(error)
            else:
                raise error
