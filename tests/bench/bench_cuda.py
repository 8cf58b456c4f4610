"""On a CUDA GPU (when there is one): Sfumato's engine against the bare diffusers pipeline.

Both in fp16 with SDPA attention, on the full-size random SD1.5 of bench_engine, 512x512, 20 steps, the
same seed and sampler: seconds per step (previews on for Sfumato) and peak GPU memory. Without a GPU it
reports nothing. Run it on its own on a GPU machine: `python -m tests.bench cuda`.
"""

from __future__ import annotations

import sys

from .bench_engine import PROMPT, full_size_model
from .common import Figure, best_of
from tests.support.requests import make_request

STEPS = 20


def run() -> list[Figure]:
    import torch

    if not torch.cuda.is_available():
        print("bench_cuda: no CUDA GPU here, nothing measured", file=sys.stderr)
        return []
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from desktop.core.progress import TaskState
    from desktop.engine import devices, generate
    from desktop.engine.models import ModelManager

    model = full_size_model()
    name = torch.cuda.get_device_name(0)
    manager = ModelManager(devices.choose("cuda"))
    request = make_request(prompt=PROMPT, model=str(model), width=512, height=512, steps=STEPS, seed=1,
                                sampler="Euler", schedule="Automatic")

    pictures = {}

    def engine():
        pictures["whole"] = generate.run(request, TaskState(), manager)[0].image
        torch.cuda.synchronize()

    engine()  # warm-up: loading, cuDNN's first choices
    torch.cuda.reset_peak_memory_stats()
    engine_step = best_of(engine, repeat=3) / STEPS
    engine_peak = torch.cuda.max_memory_allocated() / 2**20
    manager.unload()
    torch.cuda.empty_cache()
    offload_step, offload_peak, difference = offloaded(request, pictures["whole"])  # before the bare pipeline loads

    pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=torch.float16, safety_checker=None,
                                                   requires_safety_checker=False).to("cuda")
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def bare():
        with torch.inference_mode():
            pipe(prompt=PROMPT, width=512, height=512, num_inference_steps=STEPS, guidance_scale=7.0,
                 generator=torch.Generator("cpu").manual_seed(1), output_type="np")
        torch.cuda.synchronize()

    bare()
    torch.cuda.reset_peak_memory_stats()
    bare_step = best_of(bare, repeat=3) / STEPS
    bare_peak = torch.cuda.max_memory_allocated() / 2**20
    return [
        Figure(f"engine step on {name} (SD1.5 512x512, fp16, previews on)", engine_step, "s",
               "bare diffusers pipeline (fp16)", bare_step),
        Figure(f"peak GPU memory on {name}, 512x512", engine_peak, "MiB", "bare diffusers pipeline (fp16)",
               bare_peak),
        Figure(f"engine step with model offload (as on a GPU with {SMALL_GPU >> 30} GiB free)", offload_step, "s",
               "the model whole on the GPU", engine_step),
        Figure("peak GPU memory with model offload, 512x512", offload_peak, "MiB", "the model whole on the GPU",
               engine_peak),
        Figure("offloaded picture against the whole model's, mean abs difference", difference, "levels of 255",
               "one level", 1.0),
    ]


SMALL_GPU = 3 << 30  # a 4 GB card with a desktop on it: SD1.5 in fp16 does not fit with room to work


def offloaded(request, whole) -> tuple[float, float, float]:
    """The engine as it runs on a small GPU: the device plan is told the GPU has SMALL_GPU free."""
    from unittest import mock

    import numpy as np
    import psutil
    import torch

    from desktop.core.progress import TaskState
    from desktop.engine import devices, generate, tuning
    from desktop.engine.models import ModelManager

    print(f"bench_cuda: GPU memory still held before the offloaded run: {torch.cuda.memory_allocated() >> 20} MiB",
          file=sys.stderr)
    statuses = []
    with mock.patch.object(tuning, "measure", lambda choice: (SMALL_GPU, psutil.virtual_memory().total)):
        manager = ModelManager(devices.choose("cuda"))
        pictures = []

        def engine():
            pictures.append(generate.run(request, TaskState(on_status=statuses.append), manager)[0].image)
            torch.cuda.synchronize()

        engine()
        torch.cuda.reset_peak_memory_stats()
        step = best_of(engine, repeat=2) / STEPS
        peak = torch.cuda.max_memory_allocated() / 2**20
        manager.unload()
    print("bench_cuda: offload status:", [s for s in statuses if "offload" in s.lower()][:1], file=sys.stderr)
    difference = float(np.abs(pictures[-1].astype(np.int16) - whole.astype(np.int16)).mean())
    return step, peak, difference
