"""Memory of a model upscale to another scale than the model's: a 4096x4096 picture x2 with the demo upscaler (Real-
ESRGAN Compact, x4 native, so the model makes 16384x16384 and Lanczos makes 8192x8192). Sfumato's run
(desktop/engine/upscale.py run(): tiled, the x4 rows resampled band by band as they are done, LanczosRows) against
the same tiled upscale holding the whole x4 intermediate and resampling it at the end (what run() did before), same
picture, same tiles, same run.

Each variant runs in a fresh process; its figure is the peak resident memory (VmHWM, reset through
/proc/self/clear_refs after the model is loaded and warmed up, where Linux allows it) above its resident memory
then, and the seconds. SFUMATO_BENCH_UPSCALE_MEMORY_SIDES sets the sides (default "2048,4096").

    python -m tests.bench upscale_memory
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.bench.common import Figure, sfumato_home

SIDES = [int(s) for s in os.environ.get("SFUMATO_BENCH_UPSCALE_MEMORY_SIDES", "2048,4096").split(",")]
TILE = 512

_CHILD = r"""
import json, resource, sys, time
import numpy as np
from PIL import Image
from desktop.core.postprocess import UpscaleRequest
from desktop.core.progress import TaskState
from desktop.engine import devices, upscale
from desktop.engine.models import ModelManager

variant, side, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
manager = ModelManager(devices.choose("cpu", "fp32"))
up = upscale.load("demo", manager, TaskState())
upscale.tile_side = lambda *args: tile  # the same tiles in both variants, whatever memory is free
image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
upscale.upscale_image(up, image[:64, :64], TaskState(), 64, size=(128, 128))  # warm up

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the resident memory now
except OSError:
    pass
before = status("VmRSS")
start = time.perf_counter()
if variant == "streamed":
    out = upscale.run(UpscaleRequest(image, 2.0, upscaler="demo"), TaskState(), manager)[0].image
else:  # the whole x4 intermediate, then Lanczos of the whole picture
    native = upscale.upscale_image(up, image, TaskState(), tile)
    out = np.asarray(Image.fromarray(native).resize((2 * side, 2 * side), Image.LANCZOS))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak": status("VmHWM") - before, "shape": list(out.shape)}))
"""


def _measure(variant: str, side: int) -> dict:
    env = {**os.environ, "SFUMATO_HOME": sfumato_home("upscale")}
    done = subprocess.run([sys.executable, "-c", _CHILD, variant, str(side), str(TILE)], capture_output=True,
                          text=True, env=env, timeout=1800, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run() -> list[Figure]:
    figures = []
    for side in SIDES:
        streamed, whole = _measure("streamed", side), _measure("whole", side)
        what = f"upscale x2 {side}x{side} -> {2 * side}x{2 * side} (x4 model, {TILE}-pixel tiles)"
        baseline = f"the {4 * side}x{4 * side} intermediate held whole"
        figures += [
            Figure(f"{what}: peak memory", streamed["peak"] / 2**20, "MiB", baseline, whole["peak"] / 2**20),
            Figure(f"{what}: time", streamed["seconds"], "s", baseline, whole["seconds"]),
        ]
    return figures
