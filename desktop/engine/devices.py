"""Choose the device and dtype generation runs on.

auto: CUDA in fp16; else Apple MPS in fp16; else the CPU in bf16 when it has
native bf16 matrix instructions (AVX512-BF16 / AMX; about 1.7x faster than
fp32 for an SD1.5 step), else fp32.

On the CPU a run uses one thread per physical core (settings.cpu_threads = 0): a second thread on a core's
hyper-thread only contends for the same matrix units, and leaving a core free for the GUI does not pay
(tests/bench/bench_threads.py: on 2 cores a step is 2x slower on one thread, and the GUI's largest stall with
both cores busy stays under 5 ms).
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass

import torch

from desktop.core.settings import DEVICES, PRECISIONS

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype
    description: str  # for the status bar, e.g. "CPU (AVX512), bfloat16"

    @property
    def precision(self) -> str:
        return {v: k for k, v in _DTYPES.items()}[self.dtype]


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX).

    oneDNN also "supports" bf16 on plain AVX512 by emulation, which is slower
    than fp32, so on Linux the CPU flags decide; elsewhere oneDNN's answer.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def physical_cores() -> int:
    """How many physical cores this process may run on (hyper-threads not counted); os.cpu_count() when the
    system does not say."""
    system = platform.system()
    try:
        if system == "Linux":
            return _linux_cores() or _logical()
        if system == "Darwin":
            found = subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True, timeout=5,
                                   check=False).stdout.strip()
            return max(1, int(found)) if found.isdigit() else _logical()
        import psutil

        return psutil.cpu_count(logical=False) or _logical()
    except (OSError, ValueError, ImportError, subprocess.SubprocessError):
        return _logical()


def _logical() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _linux_cores(cpuinfo: str = "/proc/cpuinfo") -> int:
    """Distinct (physical id, core id) pairs among the processors this process may use; 0 when not listed."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    cores, processor, package = set(), None, "0"
    with open(cpuinfo, encoding="ascii", errors="replace") as info:
        for line in info:
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor" and value.isdigit():
                processor, package = int(value), "0"
            elif key == "physical id":
                package = value
            elif key == "core id" and processor is not None and (allowed is None or processor in allowed):
                cores.add((package, value))
    return len(cores)


def use_threads(threads: int = 0) -> int:
    """Run torch's CPU work with `threads` threads (settings.cpu_threads; 0: one per physical core); returns it.

    OpenMP keeps the count per calling thread: call it on the thread that runs the model (the worker's)."""
    wanted = threads if threads > 0 else _omp_threads() or physical_cores()
    torch.set_num_threads(wanted)  # always: it also sets the count new threads start with, which another thread's
    return wanted  # call may have changed while this one's own count already read `wanted`


def _omp_threads() -> int:
    """OMP_NUM_THREADS when the environment sets it, as Ray does for a replica given its share of the CPUs; else 0."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return 0


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def choose(device: str = "auto", precision: str = "auto", threads: int | None = None) -> DeviceChoice:
    """Pick a device and dtype; raises ValueError for an unavailable explicit choice. On the CPU, `threads` (not
    None) also sets how many threads torch runs with (use_threads: 0 is one per physical core)."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was chosen but no CUDA GPU is available to this PyTorch build")
    elif device == "mps" and not mps_available():
        raise ValueError("MPS was chosen but Apple's Metal backend is not available")

    if precision == "auto":
        if device in ("cuda", "mps"):
            precision = "fp16"
        else:
            precision = "bf16" if cpu_has_bf16() else "fp32"
    if device == "cpu" and precision == "fp16":
        raise ValueError("fp16 is not supported on the CPU; use bf16 or fp32")
    dtype = _DTYPES[precision]
    if device == "cpu" and threads is not None:
        use_threads(threads)
    return DeviceChoice(torch.device(device), dtype, f"{_describe(device)}, {str(dtype).removeprefix('torch.')}")


def _describe(device: str) -> str:
    if device == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(0)})"
    if device == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)"


def empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
