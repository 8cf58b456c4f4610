"""Every test gets fresh Sfumato folders under tmp_path and no network.

Tiny models are built once per session (desktop/engine/tiny.py) and shared
read-only; tests that change a model copy it first.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("SFUMATO_HOME", None)
# The system trash of these tests (gallery deletes go there through Send2Trash), not the user's.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="sfumato-tests-data-")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def sfumato_home(tmp_path_factory, monkeypatch, request):
    home = tmp_path_factory.mktemp("sfumato-home")  # beside tmp_path, not in it: tests list what they made there
    monkeypatch.setenv("SFUMATO_HOME", str(home))
    if request.node.get_closest_marker("measures_cpu_runtime") is None:
        _measured_already()
    return home


def _measured_already() -> None:
    """A CPU runtime measurement that says PyTorch, as if this computer had been measured before: a backend
    started on the Auto CPU runtime then neither spends seconds measuring (desktop/engine/runtime_probe.py) nor
    converts the model for OpenVINO. Tests of the measurement itself are marked measures_cpu_runtime."""
    from desktop.core import cpu_runtime

    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:  # as desktop/engine/devices.py
            flags = next((line for line in info if line.startswith("flags")), "").split()
        precision = "bf16" if "avx512_bf16" in flags or "amx_bf16" in flags else "fp32"
    except OSError:
        precision = ""  # elsewhere the backend may measure once: slower, never wrong
    cpu_runtime.save(cpu_runtime.Measurement(cpu_runtime.this_cpu(), 1.0, None, "Not measured: a test.",
                                             cpu_runtime.versions(), precision))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """kind -> TinyModel for "sd1", "sd1-inpaint" and "sdxl", built lazily once."""
    from desktop.engine import tiny

    root = tmp_path_factory.mktemp("tiny-models")

    class Models(dict):
        def __missing__(self, kind):
            self[kind] = tiny.build(root, kind)
            return self[kind]

    return Models()


@pytest.fixture(scope="session")
def cpu_manager():
    """One ModelManager on the CPU (default precision) shared by the engine tests."""
    from desktop.engine import devices
    from desktop.engine.models import ModelManager

    return ModelManager(devices.choose("cpu"))
