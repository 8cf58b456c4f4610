"""Background: run file work (reading, encoding and writing pictures) off the GUI thread.

`run(work, done, failed)` calls `work()` in a plain thread, then `done(result)`
or `failed(error)` on the GUI thread. `wait()` lets the window finish a save
before it closes.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot


class Background(QObject):
    """Signals:
    idle(): the last running job has ended.
    """

    idle = Signal()
    _ended = Signal(int, object, object)  # job id, result, error

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable, Callable | None]] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._ended.connect(self._deliver)

    def run(self, work: Callable[[], object], done: Callable[[object], None],
            failed: Callable[[Exception], None] | None = None, name: str = "file-job") -> None:
        job = next(self._ids)
        self._callbacks[job] = (done, failed)

        def target() -> None:
            try:
                result, error = work(), None
            except Exception as caught:  # noqa: BLE001 - handed to `failed` on the GUI thread
                result, error = None, caught
            try:
                self._ended.emit(job, result, error)
            except RuntimeError:  # the window is gone
                pass

        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads[job] = thread
        thread.start()

    def busy(self) -> bool:
        return any(thread.is_alive() for thread in self._threads.values())

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Block until every job's work is done (their callbacks run later, from the event loop)."""
        for thread in list(self._threads.values()):
            thread.join(timeout_s)
        return not self.busy()

    @Slot(int, object, object)
    def _deliver(self, job: int, result: object, error: object) -> None:
        self._threads.pop(job, None)
        done, failed = self._callbacks.pop(job)
        if error is None:
            done(result)
        elif failed is not None:
            failed(error)
        else:
            raise error
        if not self._threads:
            self.idle.emit()
