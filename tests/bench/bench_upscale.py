"""Model upscale: seconds per input megapixel and peak memory of Sfumato's tiled run (desktop/engine/upscale.py)
against the naive run (the whole picture through the model at once, as spandrel's own call does), same picture,
same upscaler (the demo's: Real-ESRGAN Compact, x4), same run.

Each variant runs in a fresh process, so its peak resident memory (ru_maxrss) is its own; the figure is the peak
above the process's memory once the model is loaded. SFUMATO_BENCH_UPSCALE_SIDE sets the picture's side (default
1024: a 4096x4096 result).

    python -m tests.bench upscale
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.bench.common import Figure, sfumato_home

SIDE = int(os.environ.get("SFUMATO_BENCH_UPSCALE_SIDE", "1024"))
TILE = 256

_CHILD = r"""
import json, resource, sys, tempfile, time
import numpy as np, torch
from desktop.core.progress import TaskState
from desktop.engine import devices, upscale
from desktop.engine.models import ModelManager

variant, side, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
manager = ModelManager(devices.choose("cpu", "fp32"))
up = upscale.load("demo", manager, TaskState())
image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
upscale.upscale_image(up, image[:64, :64], TaskState(), 64)  # warm up
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
before = peak()
start = time.perf_counter()
if variant == "tiled":
    out = upscale.upscale_image(up, image, TaskState(), tile)
else:  # naive: the whole picture as one tensor, the whole output as float, then uint8
    tensor = torch.from_numpy(image.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255)
    with torch.inference_mode():
        result = up.model(tensor)
    out = (result[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak": peak() - before, "shape": list(out.shape)}))
"""


def _measure(variant: str) -> dict:
    env = {**os.environ, "SFUMATO_HOME": sfumato_home("upscale")}
    done = subprocess.run([sys.executable, "-c", _CHILD, variant, str(SIDE), str(TILE)], capture_output=True,
                          text=True, env=env, timeout=1800, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run() -> list[Figure]:
    tiled, naive = _measure("tiled"), _measure("naive")
    megapixels = SIDE * SIDE / 1e6
    out = f"{SIDE}x{SIDE} -> {SIDE * 4}x{SIDE * 4}"
    return [
        Figure(f"upscale x4 {out}, {TILE}-pixel tiles: time", tiled["seconds"] / megapixels, "s/MP",
               "the whole picture at once", naive["seconds"] / megapixels),
        Figure(f"upscale x4 {out}, {TILE}-pixel tiles: peak memory", tiled["peak"] / 2**20, "MiB",
               "the whole picture at once", naive["peak"] / 2**20),
    ]
