"""Heartbeat: how long the GUI thread was unable to answer, measured from inside it.

A precise QTimer ticks every `interval_ms` on the GUI thread; a tick that comes late by more than the interval
means the thread was busy (painting, converting a picture, holding the GIL...) for that long. Live mode's issue
asks for no stall over 50 ms while drafts run (tests/ui/test_live.py, tests/bench).

    beat = Heartbeat()
    beat.start()
    ...  # strokes, drafts
    beat.stop()
    beat.largest_ms  # the longest stall seen
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer


class Heartbeat(QObject):
    def __init__(self, interval_ms: int = 5, parent: QObject | None = None):
        super().__init__(parent)
        self.interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self._paused = False
        self.stalls_ms: list[float] = []  # each tick's lateness past the interval, in ms

    def start(self) -> None:
        self.stalls_ms.clear()
        self._paused = False
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._tick()

    def pause(self) -> None:
        """Count nothing until resume(): for work the test itself does on the GUI thread (a synthetic drag)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._last = time.perf_counter()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._paused:
            return
        if self._last is not None:
            self.stalls_ms.append(max(0.0, (now - self._last) * 1000 - self.interval_ms))
        self._last = now

    @property
    def largest_ms(self) -> float:
        return max(self.stalls_ms, default=0.0)

    def over(self, limit_ms: float) -> int:
        """How many stalls were longer than `limit_ms`."""
        return sum(stall > limit_ms for stall in self.stalls_ms)
