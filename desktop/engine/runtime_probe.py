"""Measure once which CPU runtime is faster on this CPU: PyTorch or OpenVINO (desktop/core/cpu_runtime.py).

The probe is one slice of an SD1.5 UNet at its real width: a ResNet block and a transformer block (self-attention
over the latent's tokens, cross-attention to a 77-token prompt, a GEGLU feed-forward) with 320 channels on 32x32
latents, in a batch of 2 as CFG runs it. PyTorch runs it the way the app does (devices.choose's dtype,
channels-last in half precision, inference mode); OpenVINO runs the same module, converted once and compiled
with the same settings as openvino_runtime, on the same inputs. Each gets a warm-up, then the median of a few
timed runs, taking turns; the whole probe takes 3-4 s on a 2-core CPU, most of it converting the block once, plus
the few seconds its own process takes to start: it runs in a child process, so that the converter, which holds
the GIL for long stretches, never freezes the window.
OpenVINO missing or failing gives openvino_s None and a note saying why: never a guess.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from desktop.core import cpu_runtime
from desktop.core.cpu_runtime import Measurement
from desktop.core.progress import TaskState

from . import child
from .devices import DeviceChoice

log = logging.getLogger(__name__)

STATUS = "Measuring which CPU runtime is faster here (once)..."
RUNS = 3  # timed runs of each runtime after the warm-up; their median counts
TIMEOUT_S = 180  # the probe's process takes 5-15 s (starting Python and torch, converting); more means stuck


class _Skipped(Exception):
    """OpenVINO is not timed (its process failed): PyTorch alone is."""


class _Probe(nn.Module):
    """A ResNet block and a transformer block of an SD1.5 UNet level, between a latent conv in and out."""

    def __init__(self, channels: int = 320, context: int = 768, heads: int = 8):
        super().__init__()
        self.heads = heads
        self.conv_in = nn.Conv2d(4, channels, 3, padding=1)
        self.norm1, self.conv1 = nn.GroupNorm(32, channels), nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(32, channels), nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in, self.proj_out = nn.Linear(channels, channels), nn.Linear(channels, channels)
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(channels) for _ in range(3))
        self.qkv, self.out1 = nn.Linear(channels, 3 * channels, bias=False), nn.Linear(channels, channels)
        self.q2, self.kv2 = nn.Linear(channels, channels, bias=False), nn.Linear(context, 2 * channels, bias=False)
        self.out2 = nn.Linear(channels, channels)
        self.ff_in, self.ff_out = nn.Linear(channels, 8 * channels), nn.Linear(4 * channels, channels)
        self.norm_out, self.conv_out = nn.GroupNorm(32, channels), nn.Conv2d(channels, 4, 3, padding=1)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, n, c = q.shape
        split = lambda t: t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)  # noqa: E731
        return F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(b, n, c)

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(latents)
        x = x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c))
        t = t + self.out1(self._attend(*self.qkv(self.ln1(t)).chunk(3, dim=-1)))
        t = t + self.out2(self._attend(self.q2(self.ln2(t)), *self.kv2(context).chunk(2, dim=-1)))
        hidden, gate = self.ff_in(self.ln3(t)).chunk(2, dim=-1)
        t = t + self.ff_out(hidden * F.gelu(gate))
        x = x + self.proj_out(t).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return self.conv_out(F.silu(self.norm_out(x)))


_TIMED_OUT, _STOPPED = "OpenVINO's measurement did not finish within", "OpenVINO's measurement stopped unexpectedly"


def measure(choice: DeviceChoice, channels: int = 320, size: int = 32, runs: int = RUNS,
            timeout: float = TIMEOUT_S, state: TaskState | None = None) -> Measurement:
    """Time the probe in PyTorch and in OpenVINO on this CPU (`channels` and `size`, the latent side, are smaller
    in tests), in a child process (child.py): converting the block holds the GIL for long stretches, which would
    freeze the window. A child that does not answer within `timeout` seconds, or dies, is noted and PyTorch is timed
    here; the user's cancel (`state`) ends the child at once (Cancelled). The Measurement belongs to this CPU and
    these versions (cpu_runtime.this_cpu/versions)."""
    args = (choice.dtype, channels, size, runs, torch.get_num_threads())
    try:
        return child.run(_measure_in_child, args, state, timeout=timeout)
    except (child.ChildTimedOut, child.ChildDied, child.ChildFailed) as error:
        log.warning("The CPU runtime probe's process failed: %s", error)
        why = (f"{_TIMED_OUT} {timeout:.0f} s" if isinstance(error, child.ChildTimedOut) else _STOPPED)
        measured = measure_here(choice, channels, size, runs, with_openvino=False)
        return dataclasses.replace(measured, note=f"{why}.")


def _measure_in_child(dtype: torch.dtype, channels: int, size: int, runs: int, threads: int) -> Measurement:
    torch.set_num_threads(max(1, threads))
    return measure_here(DeviceChoice(torch.device("cpu"), dtype, ""), channels, size, runs)


def measure_here(choice: DeviceChoice, channels: int = 320, size: int = 32, runs: int = RUNS,
                 with_openvino: bool = True) -> Measurement:
    """measure's work, in this process (measure runs it in a child)."""
    torch.manual_seed(0)
    half = choice.dtype in (torch.float16, torch.bfloat16)
    module = _Probe(channels).eval()
    latents, context = torch.randn(2, 4, size, size), torch.randn(2, 77, 768)
    layout = torch.channels_last if half else torch.contiguous_format
    model = copy.deepcopy(module).to(dtype=choice.dtype, memory_format=layout)
    inputs = (latents.to(choice.dtype).contiguous(memory_format=layout), context.to(choice.dtype))

    def pytorch() -> None:
        with torch.inference_mode():
            model(*inputs)

    runners, note = {"pytorch": pytorch}, ""
    try:
        if not with_openvino:
            raise _Skipped
        runners["openvino"] = _openvino(module, (latents, context), choice.precision)
        runners["openvino"]()  # its first run compiles kernels: a failure there also means "not usable here"
        note = (f"Measured on a {channels}-channel UNet block at {size * 8}x{size * 8} pixels, CFG batch 2, "
                f"{choice.precision}.")
    except _Skipped:
        pass
    except Exception as error:  # noqa: BLE001 - any failure of OpenVINO's conversion or run means "not usable here"
        runners.pop("openvino", None)
        note = _failure(error)
    times = _medians(runners, runs)
    return Measurement(cpu_runtime.this_cpu(), times["pytorch"], times.get("openvino"), note, cpu_runtime.versions(),
                       choice.precision)


def ensure(choice: DeviceChoice, setting: str, state: TaskState | None = None) -> Measurement | None:
    """The measurement the "auto" CPU runtime chooses by: the saved one for this CPU, or a new one made now (and
    saved) when `setting` is "auto", the device is the CPU and none belongs here. None when nothing is needed."""
    if choice.device.type != "cpu":
        return None
    saved = cpu_runtime.load(precision=choice.precision)
    if setting != "auto" or (saved is not None and not interrupted(saved)):
        return saved
    if state is not None:
        state.status(STATUS)
    measurement = measure(choice, state=state)
    if interrupted(measurement):  # a busy machine or a killed process says nothing of this CPU: measured next start
        return measurement
    try:
        cpu_runtime.save(measurement)
    except OSError:
        log.warning("Could not save the CPU runtime measurement", exc_info=True)  # measured again next start
    log.info("CPU runtime: %s", cpu_runtime.describe(measurement))
    return measurement


def interrupted(measurement: Measurement) -> bool:
    """Whether OpenVINO's part of the measurement timed out or its process died: it is not kept (nor one saved by an
    older version), so the next start measures again."""
    return measurement.openvino_s is None and measurement.note.startswith((_TIMED_OUT, _STOPPED))


def _openvino(module: nn.Module, inputs: tuple[torch.Tensor, ...], precision: str):
    """The probe converted and compiled for OpenVINO's CPU plugin; returns a function that runs it once."""
    ov = import_openvino()

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings: the probe traces fine
        converted = ov.convert_model(module, example_input=inputs)
    # as openvino_runtime compiles a model: one stream, for latency, with as many threads as torch was given, in
    # fp32 when the app runs in fp32, else the CPU plugin's choice (bf16 where the CPU multiplies it natively)
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    if precision == "fp32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(converted, "CPU", config)
    request = compiled.create_infer_request()
    arrays = [tensor.numpy() for tensor in inputs]
    return lambda: request.infer(arrays)


def import_openvino():
    """The openvino module, with its converter's telemetry off. convert_model (openvino.tools.ovc) sends usage
    events to Google Analytics without asking whenever the openvino-telemetry package is installed (a dependency
    of openvino); Sfumato never reaches the network on its own, so that package is made unimportable first and
    ovc falls back to its built-in stub that sends nothing."""
    for name in ("openvino_telemetry", "openvino_telemetry.backend"):
        sys.modules.setdefault(name, None)  # import raises ImportError: ovc takes its stub
    import openvino

    return openvino


def _failure(error: Exception) -> str:
    """One sentence for why OpenVINO could not be measured."""
    if isinstance(error, ModuleNotFoundError) and error.name == "openvino":
        return "OpenVINO is not installed."
    log.warning("OpenVINO failed in the CPU runtime probe", exc_info=error)
    # OpenVINO's messages start with the source lines they passed through ("Exception from src/...:112:")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Exception from ", "Check '"))] or lines
    first = re.sub(r"^\[ ?[A-Z_]+ ?\]\s*", "", said[0]) if said else type(error).__name__
    return f"OpenVINO failed here: {first.rstrip('.')}."


def _medians(runners: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Each runner's median time of `runs` runs after a warm-up (oneDNN and OpenVINO pick their kernels on the
    first call); the runtimes take turns, so another program loading the CPU for a moment slows both alike."""
    for run in runners.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(1, runs)):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
