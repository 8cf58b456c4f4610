"""The speed and memory settings a loaded pipeline gets on each kind of device.

- Half precision anywhere: the UNet and the VAE in channels-last memory. oneDNN
  and cuDNN convolutions run faster on it (about 7% a step of SD1.5 in bf16 on an
  AVX512-BF16 CPU); in fp32 on the CPU it was slower, so fp32 stays as it is.
- CUDA: TF32 for fp32 matrix multiplies (Ampere and newer); attention through
  PyTorch's SDPA (diffusers' default). When the model and its working memory do
  not fit in the GPU's free memory, or moving it there runs out of memory, model
  CPU offload: the text encoder, the UNet and the VAE take turns on the GPU (as
  AUTOMATIC1111's --medvram), slower but it runs.
- Apple MPS: sliced attention on Macs with less than 64 GiB of memory, as
  diffusers advises for Apple GPUs: less memory pressure, and on most Apple
  silicon Macs of that size it is faster too.
- CPU: nothing more; bf16 against fp32 is chosen in devices.py.

A plan is made from plain numbers (so it is tested without a GPU) and applied
once per loaded model.

Several models stay loaded at once (ModelManager) while they fit a budget per
memory pool: on the GPU, its free memory less the working memory of a run; in
system memory (the CPU, Apple's unified memory, models offloaded from a GPU), a
share of it (SYSTEM_SHARE), so the app, its pictures and the rest of the
computer keep the remainder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from desktop.core.modelfiles import Family

from .devices import DeviceChoice

GiB = 1024**3
# Working memory on top of the weights at the family's usual size: activations, attention and the VAE decode.
WORKING_MEMORY = {Family.SD1: 2 * GiB, Family.SD2: 2.5 * GiB, Family.SDXL: 3.5 * GiB}
MPS_SLICING_BELOW = 64 * GiB
GPU, SYSTEM = "gpu", "system"  # the memory pools loaded weights live in
SYSTEM_SHARE = 0.5  # of the system's memory that loaded models may hold between them


@dataclass(frozen=True)
class Plan:
    channels_last: bool = False
    offload: bool = False
    attention_slicing: bool = False
    note: str = ""  # what the status bar says about it, e.g. "model offload: ... the GPU has 3.2 GiB free"


def plan(choice: DeviceChoice, family: Family, weights: int, gpu_memory: int | None = None,
         system_memory: int | None = None) -> Plan:
    """What to do for a model of `weights` bytes on `choice`, given the GPU's free and the system's memory."""
    half = choice.dtype in (torch.float16, torch.bfloat16)
    kind = choice.device.type
    if kind == "cuda" and gpu_memory is not None:
        need = weights + working_memory(family)
        if need > gpu_memory:
            return Plan(channels_last=half, offload=True,
                        note=f"model offload: it needs about {need / GiB:.1f} GiB, the GPU has "
                             f"{gpu_memory / GiB:.1f} GiB free")
    if kind == "mps" and system_memory is not None and system_memory < MPS_SLICING_BELOW:
        return Plan(channels_last=half, attention_slicing=True, note="sliced attention")
    return Plan(channels_last=half)


def working_memory(family: Family) -> int:
    return int(WORKING_MEMORY.get(family, 2 * GiB))


def pool(choice: DeviceChoice, plan: Plan) -> str:
    """Where a model placed by `plan` keeps its weights: GPU, or SYSTEM (the CPU, a Mac, an offloaded model)."""
    return GPU if choice.device.type == "cuda" and not plan.offload else SYSTEM


def system_budget(system_memory: int | None) -> int | None:
    """Bytes of weights the loaded models may hold in system memory together (None: no limit is known)."""
    return None if system_memory is None else int(system_memory * SYSTEM_SHARE)


def weights_bytes(pipe) -> int:
    """Bytes of every weight the pipeline holds."""
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def measure(choice: DeviceChoice) -> tuple[int | None, int | None]:
    """The GPU's free memory and the system's total memory in bytes (None where there is no such thing).

    Free, not total, on the GPU: the desktop, a browser or another app may hold a gigabyte of it.
    """
    gpu = None
    if choice.device.type == "cuda":
        try:
            gpu, _total = torch.cuda.mem_get_info(choice.device)
        except RuntimeError:  # a driver that cannot say: load whole, and offload if that runs out of memory
            gpu = None
    try:
        import psutil

        system = psutil.virtual_memory().total
    except (ImportError, OSError):
        system = None
    return gpu, system


def configure_backends(choice: DeviceChoice) -> None:
    """Process-wide switches for the device (safe to call more than once)."""
    if choice.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def apply(pipe, plan: Plan, device: torch.device) -> None:
    """Put the pipeline on the device the way the plan says."""
    if not plan.offload:
        pipe.to(device)
    derive(pipe, plan, device)
    if plan.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)


def place(pipe, plan: Plan, device: torch.device, release_memory) -> Plan:
    """Apply the plan; a model that runs out of GPU memory on its way there is offloaded instead.

    Returns the plan it ended with. Raises torch.OutOfMemoryError when even that does not fit.
    """
    try:
        apply(pipe, plan, device)
        return plan
    except torch.OutOfMemoryError:
        if plan.offload or device.type != "cuda":
            raise
    release_memory()  # outside the except, so the failed attempt's tensors are already gone
    plan = replace(plan, offload=True, note="model offload: the GPU ran out of memory loading it whole")
    apply(pipe, plan, device)
    return plan


def adopt(module, plan: Plan, device: torch.device) -> None:
    """Give a module joining a loaded model's pipeline (a VAE override, a ControlNet) the model's placement;
    an offloaded pipeline's hooks (derive) move it instead."""
    if not plan.offload:
        module.to(device)
    if plan.channels_last:
        module.to(memory_format=torch.channels_last)


def derive(pipe, plan: Plan, device: torch.device) -> None:
    """The settings that belong to a pipeline rather than to its modules, so a pipeline made by from_pipe() (which
    shares the modules, not the offload hooks) needs them again."""
    if plan.offload:
        pipe.enable_model_cpu_offload(device=device)  # moves each model to the GPU only while it runs
    if plan.attention_slicing:
        pipe.enable_attention_slicing()
