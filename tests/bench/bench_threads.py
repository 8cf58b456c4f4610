"""How many threads should a CPU run use: all physical cores, or all but one left for the GUI?

For 1 .. physical cores (desktop/engine/devices.physical_cores), a worker thread sets torch's thread count the
way the app's worker does (devices.use_threads) and runs a UNet-like step (the CPU runtime probe's network: a
ResNet and a transformer block of SD1.5 at its real 320-channel width, 32x32 latents, CFG batch 2, in the app's
CPU dtype) for about two seconds, while the GUI thread of an offscreen QApplication runs a 10 ms QTimer
heartbeat, as the window's event loop would. Reported, for each thread count:
- seconds per step against all physical cores (the default; ratio > 1: slower);
- the largest GUI stall while the steps run against the same heartbeat idle.
The headline figure is all cores against all but one (ratio < 1: using every core is faster).

On the 2-core AMD EPYC (AVX512-BF16, no AMX) Sfumato is developed on, bf16: a step took 0.048 s on both cores
and 0.098 s on one (all cores 2.04x faster), and the largest GUI stall was 4.8 ms with both cores busy and 2.8 ms
with one left free (idle: 0.4 ms), far under the 50 ms a person notices. Leaving a core for the GUI halves the
speed and buys nothing visible, so the default stays one thread per physical core (settings.cpu_threads = 0).
"""

from __future__ import annotations

import statistics
import threading
import time

from .common import Figure

HEARTBEAT_MS = 10
RUN_S = 2.0  # how long the steps run for each thread count


def run() -> list[Figure]:
    import torch

    from desktop.engine import devices, runtime_probe

    choice = devices.choose("cpu")
    cores = devices.physical_cores()
    app = _application()
    idle = _stall_ms(app, lambda: time.sleep(1.0))
    step = _step(runtime_probe, choice, torch)
    steps, stalls = {}, {}
    for threads in range(1, cores + 1):
        times: list[float] = []

        def work(threads=threads, times=times) -> None:
            devices.use_threads(threads)
            step()  # warm-up: oneDNN picks its kernels for this thread count
            end = time.perf_counter() + RUN_S
            while time.perf_counter() < end or len(times) < 3:
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)

        stalls[threads] = _stall_ms(app, work)
        steps[threads] = statistics.median(times)
    figures = []
    if cores > 1:
        figures.append(Figure(f"UNet-ish step, all {cores} cores", steps[cores], "s",
                              f"all but one ({cores - 1} threads)", steps[cores - 1]))
    for threads in range(1, cores + 1):
        figures.append(Figure(f"UNet-ish step, {threads} thread{'s' if threads > 1 else ''}", steps[threads], "s",
                              f"all {cores} cores", steps[cores]))
        figures.append(Figure(f"largest GUI stall, step on {threads} thread{'s' if threads > 1 else ''}",
                              stalls[threads], "ms", f"the same {HEARTBEAT_MS} ms timer, idle", idle))
    return figures


def _application():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def _step(runtime_probe, choice, torch):
    """One CFG step of the probe network in the app's CPU setup (dtype, channels-last in half precision)."""
    half = choice.dtype != torch.float32
    layout = torch.channels_last if half else torch.contiguous_format
    torch.manual_seed(0)
    model = runtime_probe._Probe().eval().to(dtype=choice.dtype, memory_format=layout)
    latents = torch.randn(2, 4, 32, 32).to(choice.dtype).contiguous(memory_format=layout)
    context = torch.randn(2, 77, 768).to(choice.dtype)

    def step() -> None:
        with torch.inference_mode():
            model(latents, context)

    return step


def _stall_ms(app, work) -> float:
    """The largest delay of a 10 ms heartbeat on this (the GUI) thread beyond its interval while `work` runs on a
    worker thread."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    state = {"last": time.perf_counter(), "worst": 0.0}

    def beat() -> None:
        now = time.perf_counter()
        state["worst"] = max(state["worst"], (now - state["last"]) * 1000 - HEARTBEAT_MS)
        state["last"] = now
        if not worker.is_alive():
            loop.quit()

    worker = threading.Thread(target=work, daemon=True)
    heartbeat = QTimer(interval=HEARTBEAT_MS)
    heartbeat.timeout.connect(beat)
    heartbeat.start()
    state["last"] = time.perf_counter()
    worker.start()
    loop.exec()
    heartbeat.stop()
    worker.join()
    return max(0.1, state["worst"])
