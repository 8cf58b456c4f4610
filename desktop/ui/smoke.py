"""SmokeRun: one generation through the real UI (panel -> worker -> previews -> result), timed."""

from __future__ import annotations

import json
import sys
import time

from PySide6.QtCore import QObject, Qt, QTimer, Slot
from PySide6.QtWidgets import QApplication

from desktop.core.request import Conditioning, GenerationRequest, Sampling

TIMEOUT_S = 600


class SmokeRun(QObject):
    def __init__(self, window, window_shown_s: float, torch_before_window: bool):
        super().__init__(window)
        self.window = window
        self.figures = {"window_shown_s": round(window_shown_s, 3), "torch_imported_before_window": torch_before_window}
        self.previews = 0
        self.first_preview_s: float | None = None
        self.max_stall_ms = 0.0
        self._last_tick = 0.0
        self._ticker = QTimer(self, interval=10)
        self._ticker.timeout.connect(self._tick)
        window.worker.step.connect(self._step)
        window.results_shown.connect(self._done)
        window.worker.job_failed.connect(lambda _, message: self._fail(message))
        window.worker.model_failed.connect(lambda _, message: self._fail(message))
        window.worker.job_cancelled.connect(lambda _: self._fail("the generation was cancelled"))
        QTimer.singleShot(TIMEOUT_S * 1000, lambda: self._fail(f"no result within {TIMEOUT_S} s"))
        self._launched = time.perf_counter() - window_shown_s
        # Click Generate once the engine is up, as a person typing a prompt would.
        window.worker.model_loaded.connect(self._start, Qt.ConnectionType.SingleShotConnection)

    @Slot()
    def _start(self, *_) -> None:
        self.figures["engine_ready_s"] = round(time.perf_counter() - self._launched, 3)
        panel = self.window.panel
        panel.set_request(GenerationRequest(
            width=256, height=256, conditioning=Conditioning(prompt="a lighthouse on a cliff at dusk"),
            sampling=Sampling(sampler="Euler a", schedule="Automatic", steps=8, seed=1)))
        panel.batch_count.setValue(1)
        self._started = time.perf_counter()
        self._last_tick = self._started
        self._ticker.start()
        panel.generate_button.click()

    @Slot()
    def _tick(self) -> None:
        now = time.perf_counter()
        self.max_stall_ms = max(self.max_stall_ms, (now - self._last_tick) * 1000 - 10)
        self._last_tick = now

    @Slot(int, int, int, object)
    def _step(self, job_id, index, total, preview) -> None:
        if preview is not None:
            self.previews += 1
            if self.first_preview_s is None:
                self.first_preview_s = time.perf_counter() - self._started

    @Slot(list)
    def _done(self, saved: list) -> None:
        self._ticker.stop()
        self.figures.update(
            first_preview_s=round(self.first_preview_s or float("nan"), 3),
            result_s=round(time.perf_counter() - self._started, 3),
            previews=self.previews,
            max_ui_stall_ms=round(max(0.0, self.max_stall_ms), 1),
            saved=str(saved[0][2]) if saved else None,
        )
        if self.figures["torch_imported_before_window"]:
            self._fail("torch was imported before the window was shown")
            return
        print(json.dumps(self.figures), flush=True)
        self._exit(0)

    def _fail(self, reason: str) -> None:
        print(f"smoke failed: {reason}", file=sys.stderr, flush=True)
        self._exit(1)

    def _exit(self, code: int) -> None:
        self.window.close()
        QApplication.instance().exit(code)
