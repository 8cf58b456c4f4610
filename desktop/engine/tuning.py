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

The flow-matching families (FLUX.1, SD3.5, Z-Image, FLUX.2 klein) have 4-12B
parameter transformers and text encoders of 4-8B. On a GPU too small for all of
it, model offload keeps only the running model on the GPU (it needs the largest
one, usually the transformer, to fit with one step's activations); when even
that does not fit, sequential offload moves each layer in as it runs (it runs
on any GPU, much slower). `estimate` says so in a sentence before loading, and
on the CPU how long a step will take from a measured matrix-multiply speed.

Weight storage (the "weight_storage" setting): where a flow model would need sequential offload on a CUDA GPU,
"auto" stores its transformer's Linear weights in int8 instead (torchao's weight-only int8: 1 byte a weight and
a scale a row, computed in the working dtype), which halves the transformer in bf16, so model offload fits: FLUX.1's
23.8 GB transformer becomes about 11.9 GB, model offload on a 16 GiB GPU instead of sequential offload, some 3x
faster. Pictures are close to, not the same as, bf16 ones (the infotext says "Weights: int8"). Never on the CPU or
MPS unless the setting says "int8"; never with sequential offload (accelerate's hooks cannot move torchao's
tensors), nor for a GGUF transformer (already quantized).

A plan is made from plain numbers (so it is tested without a GPU) and applied
once per loaded model.

Several models stay loaded at once (ModelManager) while they fit a budget per
memory pool: on the GPU, its free memory less the working memory of a run; in
system memory (the CPU, Apple's unified memory, models offloaded from a GPU), a
share of it (SYSTEM_SHARE), so the app, its pictures and the rest of the
computer keep the remainder.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace

import torch

from desktop.core import families
from desktop.core.modelfiles import Family

from .devices import DeviceChoice

GiB = 1024**3
# Working memory on top of the weights at the family's usual size: activations, attention and the VAE decode.
WORKING_MEMORY = {Family.SD1: 2 * GiB, Family.SD2: 2.5 * GiB, Family.SDXL: 3.5 * GiB}
MPS_SLICING_BELOW = 64 * GiB


@dataclass(frozen=True)
class FlowWorking:
    """Working memory of a flow family at 1024x1024, batch 1 (bytes), in its two phases."""

    step: float  # one transformer step's activations (the step a model offload must fit beside the transformer)
    decode: float  # the VAE decoding the picture


# Estimates, not measurements (no GPU was at hand). Step: the transformer keeps no activations between its blocks
# at inference and SDPA attention does not materialise the token x token matrix, so a step's peak is a few
# (tokens x widest layer) tensors: FLUX.1 at 1024x1024 has 4096 image + 512 text tokens, its single blocks'
# fused projection is 21,504 wide, 4608 x 21504 x 2 bytes = 0.2 GB each, with the MLP and attention outputs beside
# them under 1 GiB; SD3.5 runs its two CFG passes as a batch of 2 (4096 + 333 tokens, 2432 wide). Decode: all
# four use SD's VAE decoder (128-512 channels; FLUX.2's differs in its latent channels only), whose 1024x1024
# decode in half precision is the bulk of SDXL's 3.5 GiB above: 1024 x 1024 x 128 channels x 2 bytes = 256 MiB a
# tensor at full size, several alive in the last up-block.
FLOW_WORKING = {
    Family.FLUX1: FlowWorking(step=1 * GiB, decode=2.5 * GiB),
    Family.SD3: FlowWorking(step=1.25 * GiB, decode=2.5 * GiB),
    Family.ZIMAGE: FlowWorking(step=1 * GiB, decode=2.5 * GiB),
    Family.FLUX2_KLEIN: FlowWorking(step=1 * GiB, decode=2.5 * GiB),
}
# Text tokens the transformer attends to beside the image's: the pipelines' max_sequence_length (T5 and Qwen3:
# 512); SD3 joins CLIP's 77 to T5's 256.
TEXT_TOKENS = {Family.FLUX1: 512, Family.SD3: 77 + 256, Family.ZIMAGE: 512, Family.FLUX2_KLEIN: 512}
# Every flow family turns a 16x16 pixel patch into one token (an 8x VAE and 2x2 patches; FLUX.2: a 16x VAE).
PIXELS_PER_TOKEN_SIDE = 16

# How much slower than the model whole on the GPU. Model offload moves each model over PCIe once per picture, not
# per step: about 32 GB for FLUX.1 at 10-25 GB/s is 1.5-3 s beside some 25 s of steps (diffusers' memory guide:
# "negligible impact on inference time"), more for few-step models. Sequential offload moves the transformer's
# weights in every step (24 GB at an effective ~10 GB/s from unpinned memory is about 2.4 s against 0.6-1 s of
# compute on a GPU that has to use it), so 3-5x: we say 4.
MODEL_OFFLOAD_SLOWDOWN = 1.3
SEQUENTIAL_OFFLOAD_SLOWDOWN = 4.0
# Attention's share of a flow transformer's multiply-adds on top of its linear layers (2 x parameters x tokens):
# 4 x tokens^2 x width x blocks = 4 x 4608^2 x 3072 x 57 = 15 TFLOP against 2 x 11.9e9 x 4608 = 110 TFLOP for
# FLUX.1 at 1024x1024: about 14%.
ATTENTION_SHARE = 0.14
MEASURE_SIDE = 512  # the square matrices whose product measures the CPU (0.27 GFLOP each: 27 ms at 10 GFLOP/s)
MEASURE_SECONDS = 0.1  # time spent multiplying them, after one warm-up product
GPU, SYSTEM = "gpu", "system"  # the memory pools loaded weights live in
SYSTEM_SHARE = 0.5  # of the system's memory that loaded models may hold between them


@dataclass(frozen=True)
class Plan:
    channels_last: bool = False
    offload: bool = False  # the weights stay in system memory: model offload, or with `sequential`, layer by layer
    attention_slicing: bool = False
    note: str = ""  # what the status bar says about it, e.g. "model offload: ... the GPU has 3.2 GiB free"
    sequential: bool = False  # sequential CPU offload (always with offload): each layer moves in as it runs
    int8: bool = False  # the transformer's Linear weights stored in int8 (never with sequential)


STORAGES = ("auto", "full", "int8")  # the weight_storage setting: "full" keeps the working dtype


@dataclass(frozen=True)
class Int8Sizes:
    """A pipeline's bytes with its transformer's Linear weights in int8 (int8_sizes)."""

    weights: int  # every weight it holds
    largest: int  # its largest model (the transformer, or a text encoder larger than it)


def plan(choice: DeviceChoice, family: Family, weights: int, gpu_memory: int | None = None,
         system_memory: int | None = None, *, largest: int | None = None, int8: Int8Sizes | None = None,
         storage: str = "auto") -> Plan:
    """What to do for a model of `weights` bytes on `choice`, given the GPU's free and the system's memory.

    `largest`: bytes of its largest model (largest_component(pipe)); without it a model too big for the GPU
    gets model offload, with it sequential offload when even that model does not fit. `int8`: its sizes with
    the transformer in int8 (int8_sizes; None: it cannot be, e.g. a GGUF one); `storage`: the weight_storage
    setting: "auto" uses them where the model would otherwise need sequential offload on a CUDA GPU, "int8"
    always (but never with sequential offload), "full" never.
    """
    decided = _plan(choice, family, weights, gpu_memory, system_memory, largest)
    would_crawl = decided.sequential and choice.device.type == "cuda"
    if int8 is None or storage == "full" or (storage == "auto" and not would_crawl):
        return decided
    smaller = _plan(choice, family, int8.weights, gpu_memory, system_memory, int8.largest)
    if smaller.sequential:  # even in int8 it needs sequential offload, which cannot move int8 weights
        return decided
    stored = _stored(decided)
    if choice.device.type == "cuda":  # what the GPU has to hold
        stored += f": about {_need(family, int8, smaller) / GiB:.1f} GiB"
    return replace(smaller, int8=True, note=f"{smaller.note}; {stored}" if smaller.note else stored)


def _stored(full: Plan) -> str:
    """How the int8 weights are described beside the plan the model had in its working dtype."""
    return "stored in int8 to fit" if full.sequential else "stored in int8"


def _need(family: Family, int8: Int8Sizes, placed: Plan) -> int:
    """GPU bytes a run of the int8 model needs placed so: all of it, or its largest model (model offload)."""
    return offload_need(family, int8.largest) if placed.offload else int8.weights + working_memory(family)


def _plan(choice: DeviceChoice, family: Family, weights: int, gpu_memory: int | None, system_memory: int | None,
          largest: int | None) -> Plan:
    half = choice.dtype in (torch.float16, torch.bfloat16)
    kind = choice.device.type
    if kind == "cuda" and gpu_memory is not None:
        need = weights + working_memory(family)
        if need > gpu_memory:
            part = None if largest is None else offload_need(family, largest)
            if part is not None and part > gpu_memory:
                # channels-last is left off: the hooks keep the weights on the meta device between uses
                return Plan(offload=True, sequential=True,
                            note=f"sequential offload: even its largest part needs about {part / GiB:.1f} GiB, "
                                 f"the GPU has {gpu_memory / GiB:.1f} GiB free")
            return Plan(channels_last=half, offload=True,
                        note=f"model offload: it needs about {need / GiB:.1f} GiB, the GPU has "
                             f"{gpu_memory / GiB:.1f} GiB free")
    if kind == "mps" and system_memory is not None and system_memory < MPS_SLICING_BELOW:
        return Plan(channels_last=half, attention_slicing=True, note="sliced attention")
    return Plan(channels_last=half)


def working_memory(family: Family) -> int:
    """Bytes a run needs beside the weights when the whole model is on the GPU (1024x1024 for the flow families)."""
    if family in FLOW_WORKING:
        return int(max(FLOW_WORKING[family].step, FLOW_WORKING[family].decode))
    return int(WORKING_MEMORY.get(family, 2 * GiB))


def offload_need(family: Family, largest: int) -> int:
    """GPU bytes a model-offloaded run needs: its largest model with a step's activations, or the VAE decode."""
    working = FLOW_WORKING.get(family)
    if working is None:  # a UNet family: its working memory is mostly the UNet's own activations
        return largest + working_memory(family)
    return int(max(largest + working.step, working.decode))


def largest_component(pipe) -> int:
    """Bytes of the pipeline's largest model (the transformer or UNet, or a big text encoder)."""
    return max(_component_bytes(pipe).values(), default=0)


def _component_bytes(pipe) -> dict[str, int]:
    """Bytes of each model in the pipeline, by component name."""
    return {name: sum(tensor_bytes(p) for p in m.parameters())
            for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


def tensor_bytes(tensor) -> int:
    """Bytes a tensor holds: a quantized one (torchao's, whose element_size is its working dtype's) counts the
    tensors inside it (int8 data, scales)."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def int8_sizes(pipe) -> Int8Sizes | None:
    """The pipeline's sizes with its transformer's Linear weights in int8 (one byte each, and a scale a row in the
    working dtype); None when it has no transformer or one already quantized (GGUF)."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is None or getattr(transformer, "is_quantized", False):
        return None
    saved = sum(m.weight.numel() * (m.weight.element_size() - 1) - m.weight.shape[0] * (m.weight.element_size() + 1)
                for m in transformer.modules() if isinstance(m, torch.nn.Linear))  # a scale and a zero a row
    sizes = _component_bytes(pipe)
    sizes["transformer"] -= saved
    return Int8Sizes(sum(sizes.values()), max(sizes.values()))


def store_int8(pipe) -> None:
    """Store the transformer's Linear weights in int8 (torchao; raises ImportError without it)."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(pipe.transformer, Int8WeightOnlyConfig())


def denoiser_parameters(pipe) -> int:
    """Parameters of the model that runs every step (the transformer, or the UNet)."""
    model = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
    return 0 if model is None else sum(p.numel() for p in model.parameters())


def estimate(choice: DeviceChoice, family: Family, weights: int, gpu_memory: int | None = None, *,
             largest: int | None = None, denoiser: int | None = None, variant: str = "",
             size: tuple[int, int] = (1024, 1024), int8: Int8Sizes | None = None, storage: str = "auto") -> str:
    """One sentence for the status line before a model loads ("" when there is nothing worth saying).

    CUDA: what it needs against the GPU's free memory and how it will run, e.g. "needs about 33.9 GiB; this GPU
    has 24.0 GiB free: it will run with model offload, about 1.3x slower", or where the plan stores the
    transformer in int8 "needs about 33.9 GiB; this GPU has 16.0 GiB free: stored in int8 to fit: about 12.9 GiB,
    it will run with model offload, about 1.3x slower". CPU (flow families, given the
    `denoiser`'s parameter count): "about 95 s per step at 1024x1024 on this CPU".
    """
    kind = choice.device.type
    if kind == "cuda" and gpu_memory is not None:
        need = weights + working_memory(family)
        head = f"needs about {need / GiB:.1f} GiB; this GPU has {gpu_memory / GiB:.1f} GiB free"
        decided = plan(choice, family, weights, gpu_memory, largest=largest, int8=int8, storage=storage)
        if decided.int8:
            how = f"with model offload, about {MODEL_OFFLOAD_SLOWDOWN:g}x slower" if decided.offload else \
                "whole on the GPU"
            full = plan(choice, family, weights, gpu_memory, largest=largest, storage="full")
            return f"{head}: {_stored(full)}: about {_need(family, int8, decided) / GiB:.1f} GiB, it will run {how}"
        if decided.sequential:
            return f"{head}: it will run with sequential offload, about {SEQUENTIAL_OFFLOAD_SLOWDOWN:g}x slower"
        if decided.offload:
            return f"{head}: it will run with model offload, about {MODEL_OFFLOAD_SLOWDOWN:g}x slower"
        return f"{head}: it runs whole on the GPU"
    if kind == "cpu" and denoiser and family in TEXT_TOKENS:
        seconds = cpu_step_seconds(choice, family, denoiser, variant, size)
        return f"about {_round(seconds)} s per step at {size[0]}x{size[1]} on this CPU"
    return ""


def cpu_step_seconds(choice: DeviceChoice, family: Family, denoiser: int, variant: str = "",
                     size: tuple[int, int] = (1024, 1024)) -> float:
    """Seconds one step of a flow transformer of `denoiser` parameters takes on this CPU, from its measured speed.

    A step is 2 multiply-adds per parameter per token (image and text tokens), plus attention, once per
    classifier-free guidance pass (2 when the variant's recommended CFG scale is above 1).
    """
    tokens = (size[0] // PIXELS_PER_TOKEN_SIDE) * (size[1] // PIXELS_PER_TOKEN_SIDE) + TEXT_TOKENS[family]
    spec = families.spec(family)
    passes = 2 if spec is not None and spec.variant(variant).cfg_scale > 1 else 1
    flops = 2 * denoiser * tokens * passes * (1 + ATTENTION_SHARE)
    return flops / cpu_flops(choice.dtype)


@functools.lru_cache(maxsize=None)
def cpu_flops(dtype: torch.dtype) -> float:
    """Multiply-add throughput (FLOP/s) of this CPU in `dtype`, measured once (in about 0.1 s; under 0.2 s even at
    10 GFLOP/s) and remembered."""
    a = torch.randn(MEASURE_SIDE, MEASURE_SIDE).to(dtype)
    b = torch.randn(MEASURE_SIDE, MEASURE_SIDE).to(dtype)
    torch.mm(a, b)  # warm-up: thread pool, kernel choice
    count, start = 0, time.perf_counter()
    while True:
        torch.mm(a, b)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= MEASURE_SECONDS:
            return count * 2 * MEASURE_SIDE**3 / elapsed


def _round(seconds: float) -> str:
    """Two significant figures: 0.84, 7.3, 95, 1300."""
    if seconds < 10:
        return f"{seconds:.2g}" if seconds < 1 else f"{seconds:.1f}"
    return f"{float(f'{seconds:.2g}'):.0f}"


def pool(choice: DeviceChoice, plan: Plan) -> str:
    """Where a model placed by `plan` keeps its weights: GPU, or SYSTEM (the CPU, a Mac, an offloaded model)."""
    return GPU if choice.device.type == "cuda" and not plan.offload else SYSTEM


def system_budget(system_memory: int | None) -> int | None:
    """Bytes of weights the loaded models may hold in system memory together (None: no limit is known)."""
    return None if system_memory is None else int(system_memory * SYSTEM_SHARE)


def weights_bytes(pipe) -> int:
    """Bytes of every weight the pipeline holds."""
    return sum(_component_bytes(pipe).values())


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
    if plan.channels_last:  # convolutions: a UNet and a VAE (a flow model's transformer works on tokens)
        for name in ("unet", "vae"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.to(memory_format=torch.channels_last)


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


def lighter(plan: Plan) -> Plan | None:
    """The plan of a model-offloaded model whose run ran out of GPU memory even so: sequential offload (each layer
    moves to the GPU only while it runs). None when the plan has nothing lighter (int8 weights: accelerate's
    sequential hooks cannot move them)."""
    if not plan.offload or plan.sequential or plan.int8:
        return None
    return replace(plan, sequential=True, note="sequential offload: the GPU ran out of memory with model offload")


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
    if plan.sequential:
        pipe.enable_sequential_cpu_offload(device=device)  # moves each layer to the GPU only while it runs
    elif plan.offload:
        pipe.enable_model_cpu_offload(device=device)  # moves each model to the GPU only while it runs
    if plan.attention_slicing:
        pipe.enable_attention_slicing()
