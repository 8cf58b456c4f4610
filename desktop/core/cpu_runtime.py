"""Which CPU runtime runs a model here: PyTorch or OpenVINO, chosen by a measurement on this CPU, never a guess.

desktop/engine/runtime_probe.py times one small UNet-like step in both runtimes once (a few seconds, at the
backend's start when settings.cpu_runtime is "auto") and this module keeps the result in
paths.data_dir()/cpu_runtime.json. A measurement belongs to the CPU it was made on and to the torch and
openvino versions that made it: a different CPU (a new computer, a resized virtual machine) or an upgrade
means measure again, so `load` returns None then, as it does for a missing or unreadable file.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path

from . import atomic, paths

FILE_NAME = "cpu_runtime.json"
RUNTIMES = ("pytorch", "openvino")
LABELS = {"pytorch": "PyTorch", "openvino": "OpenVINO"}
WORTH = 1.1  # how many times faster OpenVINO must be for "auto" to take it: less is within the measurement's noise
# and not worth converting each model (minutes, and 1.7 GB of disk for an SD 1.5)


@dataclass(frozen=True)
class Measurement:
    cpu: str  # this_cpu(): the processor's name and its logical CPU count
    pytorch_s: float  # seconds for one probe step in PyTorch, in the app's CPU dtype
    openvino_s: float | None  # the same step in OpenVINO; None when OpenVINO is missing or failed
    note: str = ""  # one sentence: why OpenVINO was not measured, or how it was measured
    versions: str = ""  # versions(): the torch and openvino versions that were measured
    precision: str = ""  # the PyTorch dtype measured ("bf16", "fp32")

    @property
    def faster(self) -> str:
        """"openvino" when OpenVINO was measured faster, else "pytorch"."""
        if self.openvino_s is not None and self.openvino_s < self.pytorch_s:
            return "openvino"
        return "pytorch"

    @property
    def ratio(self) -> float | None:
        """How many times faster the faster runtime was (>= 1); None without an OpenVINO time."""
        if self.openvino_s is None or self.openvino_s <= 0 or self.pytorch_s <= 0:
            return None
        return max(self.pytorch_s, self.openvino_s) / min(self.pytorch_s, self.openvino_s)


def cpu_name() -> str:
    """The processor's marketing name ("Intel(R) Xeon(R) Platinum 8480+"), or the best the system tells."""
    system = platform.system()
    try:
        if system == "Linux":
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
                for line in info:
                    key, _, value = line.partition(":")
                    # x86: "model name"; ARM boards: "Hardware" / "Model"
                    if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                        return " ".join(value.split())
        elif system == "Darwin":
            found = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                   timeout=5, check=False).stdout.strip()
            if found:
                return found
        elif system == "Windows":
            import winreg

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0") as key:
                return " ".join(str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).split())
    except (OSError, subprocess.SubprocessError, ImportError):
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def this_cpu() -> str:
    """What a measurement belongs to: the processor's name and how many logical CPUs this system has."""
    count = os.cpu_count() or 1
    return f"{cpu_name()}, {count} logical CPU{'s' if count != 1 else ''}"


def versions() -> str:
    """The installed torch and openvino versions, read without importing either."""
    found = []
    for package in ("torch", "openvino"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} none")
    return ", ".join(found)


def default_path() -> Path:
    return paths.data_dir() / FILE_NAME


def belongs_here(measurement: Measurement, precision: str = "") -> bool:
    """True when `measurement` was made on this CPU with these versions (and in `precision`, when given)."""
    return (measurement.cpu == this_cpu() and measurement.versions == versions()
            and (not precision or measurement.precision == precision))


def load(path: Path | None = None, precision: str = "") -> Measurement | None:
    """The saved measurement when it belongs to this CPU and these versions (belongs_here); None when there is
    none, it cannot be read (it is measured again and written over) or it belongs elsewhere."""
    try:
        data = json.loads(Path(path or default_path()).read_text(encoding="utf-8"))
        measurement = _from_json(data)
    except (OSError, ValueError, TypeError):
        return None
    return measurement if belongs_here(measurement, precision) else None


def save(measurement: Measurement, path: Path | None = None) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    atomic.write_json(Path(path or default_path()), asdict(measurement))


def chosen(setting: str, measurement: Measurement | None) -> str:
    """The runtime a CPU run uses: "pytorch" or "openvino". `setting` is settings.cpu_runtime; "auto" takes the
    measured one when OpenVINO was at least WORTH times faster, else PyTorch (also when nothing was measured or
    OpenVINO could not run)."""
    if setting in RUNTIMES:
        return setting
    return "openvino" if _worth(measurement) else "pytorch"


def _worth(measurement: Measurement | None) -> bool:
    return (measurement is not None and measurement.faster == "openvino"
            and round(measurement.ratio or 0.0, 2) >= WORTH)


def describe(measurement: Measurement | None) -> str:
    """One sentence for the Settings window: what was measured on this CPU."""
    if measurement is None:
        return "Not measured on this CPU yet: it is measured once when the CPU runs a model with the runtime on Auto."
    where = f"on this CPU ({measurement.cpu})"
    ratio = measurement.ratio
    if ratio is None:
        why = f" ({measurement.note.rstrip('.')})" if measurement.note else ""
        return f"OpenVINO could not be measured {where}{why}; PyTorch is used."
    if round(ratio, 2) <= 1.0:
        return f"OpenVINO and PyTorch were equally fast {where}."
    faster, slower = (("OpenVINO", "PyTorch") if measurement.faster == "openvino" else ("PyTorch", "OpenVINO"))
    times = f"{ratio:.2f}".rstrip("0").rstrip(".")
    if measurement.faster == "openvino" and not _worth(measurement):
        return (f"OpenVINO was only {times}x faster than PyTorch {where}: too little to be worth converting each "
                "model, so PyTorch is used on Auto.")
    return f"{faster} was {times}x faster than {slower} {where}."


def _from_json(data: object) -> Measurement:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    names = {f.name for f in fields(Measurement)}
    values = {k: v for k, v in data.items() if k in names}
    for key in ("cpu", "note", "versions", "precision"):
        if not isinstance(values.get(key, ""), str):
            raise ValueError(f"{key} is not text")
    for key in ("pytorch_s", "openvino_s"):
        value = values.get(key)
        if value is None and key == "openvino_s":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
            raise ValueError(f"{key} is not a time in seconds")
    if not isinstance(values.get("cpu"), str):
        raise ValueError("no CPU")
    values["pytorch_s"] = float(values["pytorch_s"])
    if values.get("openvino_s") is not None:
        values["openvino_s"] = float(values["openvino_s"])
    return Measurement(**values)
