"""The CPU runtime probe: a real, short measurement of PyTorch and OpenVINO on this CPU, made once at the start."""

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from desktop.core import cpu_runtime
from desktop.core.errors import Cancelled
from desktop.core.progress import TaskState
from desktop.core.settings import Settings
from desktop.engine import devices, runtime_probe
from desktop.engine.local import LocalBackend

pytestmark = pytest.mark.measures_cpu_runtime  # they measure, or read what was measured, themselves

SMALL = {"channels": 32, "size": 4, "runs": 1}  # the probe's network, small enough for a test


def test_both_runtimes_are_timed_on_the_same_network():
    measured = runtime_probe.measure(devices.choose("cpu", "fp32"), **SMALL)
    assert measured.cpu == cpu_runtime.this_cpu() and measured.versions == cpu_runtime.versions()
    assert measured.precision == "fp32" and measured.pytorch_s > 0
    assert measured.openvino_s is not None and measured.openvino_s > 0, measured.note
    assert "32-channel UNet block at 32x32 pixels" in measured.note
    # what auto chooses from it, at ratios away from the measurement's noise (the measured one may lie anywhere)
    for ratio, runtime in ((1.5, "openvino"), (1.1, "openvino"), (1.05, "pytorch"), (0.7, "pytorch")):
        timed = dataclasses.replace(measured, openvino_s=measured.pytorch_s / ratio)
        assert cpu_runtime.chosen("auto", timed) == runtime, ratio


def test_a_probe_that_does_not_finish_in_time_is_ended_and_pytorch_is_timed():
    measured = runtime_probe.measure(devices.choose("cpu", "fp32"), **SMALL, timeout=1)
    assert measured.openvino_s is None and measured.pytorch_s > 0
    assert measured.note == "OpenVINO's measurement did not finish within 1 s."  # a real one: 180 s
    assert cpu_runtime.chosen("auto", measured) == "pytorch"
    assert not runtime_probe.child.multiprocessing.active_children()


def test_converting_the_probe_sends_no_telemetry():
    """openvino's converter reports to Google Analytics without asking when openvino-telemetry is importable. The
    probe's process is a fresh interpreter, as here (a plain `import openvino` elsewhere in a test run would have
    imported the telemetry already)."""
    code = ("from desktop.engine import devices, runtime_probe\n"
            "runtime_probe.measure_here(devices.choose('cpu', 'fp32'), 32, 4, 1)\n"
            "from openvino.tools.ovc import convert_impl\n"
            "print(convert_impl.tm.__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip().splitlines()[-1:] == ["openvino.tools.ovc.telemetry_stub"], done.stderr[-2000:]


def test_without_openvino_pytorch_is_measured_and_chosen(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ModuleNotFoundError
    measured = runtime_probe.measure_here(devices.choose("cpu", "fp32"), **SMALL)  # as the probe's process does
    assert measured.openvino_s is None and measured.pytorch_s > 0
    assert measured.note == "OpenVINO is not installed."
    assert cpu_runtime.chosen("auto", measured) == "pytorch"
    assert cpu_runtime.describe(measured).endswith("(OpenVINO is not installed); PyTorch is used.")


def test_openvino_failing_is_noted_in_one_sentence(monkeypatch):
    def broken(*args):
        raise RuntimeError("Exception from src/inference/src/core.cpp:112:\n[ GENERAL_ERROR ] no CPU plugin\ntrace")

    monkeypatch.setattr(runtime_probe, "_openvino", broken)
    measured = runtime_probe.measure_here(devices.choose("cpu", "fp32"), **SMALL)  # as the probe's process does
    assert measured.openvino_s is None
    assert measured.note == "OpenVINO failed here: no CPU plugin."
    assert cpu_runtime.chosen("auto", measured) == "pytorch"


@pytest.fixture
def probes(monkeypatch):
    """Counts the measurements made; each is a fixed, quick one."""
    made, real = [], runtime_probe.measure

    def measure(choice, state=None):
        made.append(choice)
        return real(choice, **SMALL, state=state)

    monkeypatch.setattr(runtime_probe, "measure", measure)
    return made


def test_the_backend_measures_once_at_its_first_start_on_auto(probes):
    statuses = []
    backend = LocalBackend.from_settings(Settings(device="cpu", precision="fp32"))
    backend.start(TaskState(on_status=statuses.append))
    assert statuses == [runtime_probe.STATUS] and len(probes) == 1
    assert cpu_runtime.load() == backend.measurement  # saved for the next start

    again = LocalBackend.from_settings(Settings(device="cpu", precision="fp32"))
    statuses.clear()
    again.start(TaskState(on_status=statuses.append))
    assert statuses == [] and len(probes) == 1 and again.measurement == backend.measurement


def test_a_measurement_from_another_cpu_is_made_again(probes):
    cpu_runtime.save(cpu_runtime.Measurement("Another CPU, 96 logical CPUs", 1.0, 0.5, "", cpu_runtime.versions(),
                                             "fp32"))
    LocalBackend.from_settings(Settings(device="cpu", precision="fp32")).start(TaskState())
    assert len(probes) == 1 and cpu_runtime.load().cpu == cpu_runtime.this_cpu()


@pytest.mark.parametrize("runtime", ["pytorch", "openvino"])
def test_a_chosen_runtime_is_not_measured(probes, runtime):
    backend = LocalBackend.from_settings(Settings(device="cpu", precision="fp32", cpu_runtime=runtime))
    backend.start(TaskState())
    assert probes == [] and backend.measurement is None and cpu_runtime.load() is None


def test_another_device_is_not_measured(probes):
    choice = devices.choose("cpu", "fp32")
    gpu = devices.DeviceChoice(devices.torch.device("cuda"), choice.dtype, "CUDA")
    assert runtime_probe.ensure(gpu, "auto", TaskState()) is None and probes == []


def test_the_probe_is_cancelled_at_once():
    state = TaskState()
    threading.Timer(0.5, state.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        runtime_probe.measure(devices.choose("cpu", "fp32"), **SMALL, state=state)
    assert time.monotonic() - started < 2 and not runtime_probe.child.multiprocessing.active_children()


@pytest.mark.parametrize("failure", [runtime_probe.child.ChildTimedOut("no answer within 180 s"),
                                     runtime_probe.child.ChildDied(-9)])
def test_a_probe_that_timed_out_or_died_is_measured_again_at_the_next_start(probes, monkeypatch, failure):
    def failing(*args, **kwargs):
        raise failure

    monkeypatch.setattr(runtime_probe.child, "run", failing)
    first = LocalBackend.from_settings(Settings(device="cpu", precision="fp32"))
    first.start(TaskState())
    assert first.measurement.openvino_s is None and first.measurement.pytorch_s > 0
    assert cpu_runtime.load() is None, "a busy or killed probe says nothing lasting about this CPU"
    cpu_runtime.save(first.measurement)  # as a version before this one saved it
    LocalBackend.from_settings(Settings(device="cpu", precision="fp32")).start(TaskState())
    assert len(probes) == 2
