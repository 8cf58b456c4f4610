"""Choose the device and dtype generation runs on.

auto: CUDA in fp16; else Apple MPS in fp16; else the CPU in bf16 when it has
native bf16 matrix instructions (AVX512-BF16 / AMX; about 1.7x faster than
fp32 for an SD1.5 step), else fp32.
"""

from __future__ import annotations

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


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def choose(device: str = "auto", precision: str = "auto") -> DeviceChoice:
    """Pick a device and dtype; raises ValueError for an unavailable explicit choice."""
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
