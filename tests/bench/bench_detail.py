"""Upscale with detail: seconds per megapixel of the detail pass (desktop/engine/detail.py: img2img in blended
latent tiles) against a plain img2img of the same picture in one piece (generate.run), same model (the tiny
demo model), same sampler, steps and strength, same run. The tiles cost the overlap's extra UNet work and the
per-tile calls; the one-piece run's attention grows with the square of the area on a real model, which the tiny
model (attention at one small resolution) hardly shows. SFUMATO_BENCH_DETAIL_SIDE sets the picture's side
(default 768: 96x96 latents, 2x2 tiles of 64 with 16 shared).

    python -m tests.bench detail
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from tests.bench.common import Figure, sfumato_home

SIDE = int(os.environ.get("SFUMATO_BENCH_DETAIL_SIDE", "768"))
STEPS, STRENGTH = 20, 0.35


def run() -> list[Figure]:
    os.environ["SFUMATO_HOME"] = sfumato_home("detail")
    from desktop.core.postprocess import DetailSettings
    from desktop.core.progress import TaskState
    from desktop.core.request import Conditioning, GenerationRequest, Images, Mode, Sampling
    from desktop.engine import detail, devices, generate, tiny
    from desktop.engine.models import ModelManager

    model = str(tiny.build(Path(os.environ["SFUMATO_HOME"]) / "tiny", "sd1").folder)
    manager = ModelManager(devices.choose("cpu"))
    sampling = Sampling(sampler="Euler a", schedule="Automatic", steps=STEPS, seed=1, strength=STRENGTH)
    conditioning = Conditioning("a lighthouse at dusk, detailed")
    image = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    settings = DetailSettings(model, conditioning, sampling)
    plain = GenerationRequest(mode=Mode.IMG2IMG, model=model, width=SIDE, height=SIDE, sampling=sampling,
                              conditioning=conditioning, images=Images(image))
    detail.run(settings, image[:64, :64], TaskState(), manager)  # warm up: load, encode the prompt
    start = time.perf_counter()
    detail.run(settings, image, TaskState(), manager)
    tiled = time.perf_counter() - start
    start = time.perf_counter()
    generate.run(plain, TaskState(), manager)
    whole = time.perf_counter() - start
    megapixels = SIDE * SIDE / 1e6
    return [Figure(f"detail pass {SIDE}x{SIDE}, {int(STEPS * STRENGTH)} steps, 64-latent tiles: time",
                   tiled / megapixels, "s/MP", "plain img2img in one piece", whole / megapixels)]
