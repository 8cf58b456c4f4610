"""Live mode (issue 22): how long a draft takes to show after a stroke, and whether the GUI stays responsive.

In a fresh process per case, the real window (MainWindow, offscreen) on a real LocalBackend with PyTorch on the CPU
(settings.cpu_runtime "pytorch": the same runtime on every machine): a 512x512 picture is opened, live mode turned
on at a draft size, and brush strokes are painted with the mouse, each after the previous draft showed.
- draft latency: from the end of a stroke (mouse release) to its draft on the canvas (LiveMode.shown), the
  median of the strokes, against the draft's own run in the worker (job started -> finished): the difference is
  live mode's pause after a stroke (STROKE_DELAY_MS), building the draft and handing it over.
- the largest GUI stall while drafts run (a 10 ms timer on the GUI thread, from each stroke's end to its draft
  shown), against the same timer with the window idle (goal: under 50 ms).
Cases: the demo model (tiny, counts as LCM) at 256 and 512; the full-size random SD1.5 of bench_engine, marked
as an LCM model, at 256 (SFUMATO_BENCH_QUICK=1 leaves it out). Without live mode (desktop/ui/canvas/live.py) it
prints why and reports nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import Figure, quick, skipped

BENCH = "bench_live"
ROOT = Path(__file__).resolve().parents[2]
STROKES = 2 if quick() else 4
TIMEOUT_S = 600
PICTURE = 512


def run() -> list[Figure]:
    import importlib.util

    if importlib.util.find_spec("desktop.ui.canvas.live") is None:
        return skipped(BENCH, "live mode (desktop/ui/canvas/live.py) is not there yet")
    cases = [("demo", "the demo model", 256), ("demo", "the demo model", 512)]
    if not quick():
        from .bench_engine import full_size_model

        cases.append((str(full_size_model()), "full-size SD1.5", 256))
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="sfumato-bench-live-") as home:  # never the person's settings
        for model, label, size in cases:
            figures += _case(model, label, size, home)
    return figures


def _case(model: str, label: str, size: int, home: str) -> list[Figure]:
    out = _child(model, size, home)
    if "skipped" in out:
        return skipped(BENCH, out["skipped"])
    return [
        Figure(f"live draft on the canvas after a stroke, {label}, {size} px, PyTorch (median of {STROKES})",
               statistics.median(out["latency_s"]), "s", "the draft's own run in the worker",
               statistics.median(out["run_s"])),
        Figure(f"largest GUI stall while live drafts run, {label}, {size} px", out["stall_ms"], "ms",
               "the same 10 ms timer, window idle", out["idle_stall_ms"]),
    ]


def _child(model: str, size: int, home: str) -> dict:
    code = f"from tests.bench.bench_live import child; child({model!r}, {size})"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SFUMATO_HOME": home}
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                             timeout=TIMEOUT_S + 60)
    except subprocess.TimeoutExpired:
        return {"skipped": f"live mode with {model} at {size} px did not finish in {TIMEOUT_S + 60} s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        return {"skipped": f"live mode with {model} at {size} px failed:\n{out.stderr[-3000:]}"}
    return json.loads(lines[-1])


def child(model: str, size: int) -> None:
    """One case (see the module's docstring), in its own process; prints its figures as JSON."""
    import numpy as np
    from PySide6.QtCore import QEventLoop, QPointF, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from desktop.core import settings as settings_store
    from desktop.core.document import CanvasDocument
    from desktop.ui.canvas.tools import Tool
    from desktop.ui.main_window import MainWindow

    from desktop.core import autosave

    autosave.discard()  # a killed run's picture: the window would ask whether to restore it
    app = QApplication.instance() or QApplication([])
    settings = settings_store.load()
    settings.welcome_done = True
    settings.model = model
    settings.cpu_runtime = "pytorch"
    if model != "demo":
        from .bench_fast import _random_taesd

        _random_taesd()  # models/taesd of this home: the full-size model's drafts decode with TAESD
        settings.few_step_marks = {Path(model).name: "lcm"}
        settings.models_folders = [str(Path(model).parent)]  # listed in the model picker, so the panel keeps it
    window = MainWindow(settings)
    window.resize(1366, 768)
    window.show()
    if not hasattr(window, "live"):
        print(json.dumps({"skipped": "the window has no live mode yet"}))
        return
    deadline = time.perf_counter() + TIMEOUT_S

    failures: list[str] = []

    def wait_until(condition) -> None:
        loop = QEventLoop()
        poll = QTimer(interval=20)
        poll.timeout.connect(lambda: (condition() or failures or time.perf_counter() > deadline) and loop.quit())
        poll.start()
        if not condition():
            loop.exec()
        poll.stop()
        if failures:
            raise SystemExit(failures[0])
        if not condition():
            raise SystemExit(f"live mode did not get there in {TIMEOUT_S} s")

    window.worker.status.connect(lambda text: print(f"status: {text}", file=sys.stderr, flush=True))
    loaded = []
    window.worker.model_loaded.connect(lambda *args: loaded.append(args))
    window.worker.model_failed.connect(lambda _ref, message: failures.append(f"the model failed to load: {message}"))
    window.live.failed.connect(lambda message: failures.append(f"live mode failed: {message}"))
    window.start_engine()
    wait_until(lambda: loaded)

    # the GUI thread's largest stall: a 10 ms timer, measured only while `armed`
    ticks = {"last": 0.0, "worst": 0.0, "armed": False}

    def tick():
        now = time.perf_counter()
        if ticks["armed"]:
            ticks["worst"] = max(ticks["worst"], (now - ticks["last"]) * 1000 - 10)
        ticks["last"] = now

    def arm(on: bool) -> None:
        ticks.update(last=time.perf_counter(), armed=on)

    ticker = QTimer(interval=10)
    ticker.timeout.connect(tick)
    ticker.start()
    arm(True)
    idle_end = time.perf_counter() + 2
    wait_until(lambda: time.perf_counter() > idle_end)
    idle = max(0.1, ticks["worst"])

    picture = np.random.default_rng(3).integers(0, 256, (PICTURE, PICTURE, 3), dtype=np.uint8)
    window.files.set_document(CanvasDocument.from_image(picture, "photo"), name="photo")
    window.canvas.fit()
    window.tools.set_tool(Tool.BRUSH)
    controls = window.live.controls
    controls.size.setCurrentIndex(controls.size.findData(size))
    runs, started = [], {}
    window.worker.job_started.connect(lambda job, _request: started.__setitem__(job, time.perf_counter()))
    window.worker.job_finished.connect(
        lambda job, _saved: job in started and runs.append(time.perf_counter() - started[job]))
    shown = []
    window.live.shown.connect(lambda _seconds: shown.append(time.perf_counter()))
    controls.toggle.click()
    wait_until(lambda: len(shown) == 1)  # the frame as it is: the model's first draft warms it up

    canvas = window.canvas
    ticks["worst"] = 0.0
    latencies = []
    for index in range(STROKES):
        y = 60 + 40 * index
        points = [canvas.to_widget(QPointF(x + 0.5, y + 0.5)).toPoint() for x in range(40, 400, 30)]
        arm(False)  # the synthetic drag runs the stroke synchronously: painting is not a stall of the drafts
        QTest.mousePress(canvas, Qt.MouseButton.LeftButton, pos=points[0])
        for point in points[1:]:
            QTest.mouseMove(canvas, point)
        QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=points[-1])
        released = time.perf_counter()
        arm(True)
        wait_until(lambda: len(shown) == index + 2)
        arm(False)
        latencies.append(shown[-1] - released)
    ticker.stop()
    result = {"latency_s": latencies, "run_s": runs[1:] or runs, "stall_ms": max(0.0, ticks["worst"]),
              "idle_stall_ms": idle}
    controls.toggle.click()
    print(json.dumps(result), flush=True)
    os._exit(0)  # not window.close(): it would ask whether to save the painted picture
