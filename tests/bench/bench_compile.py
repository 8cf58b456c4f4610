"""Does torch.compile pay off on this machine? The full-size SD1.5 UNet in Sfumato's CPU setup at 512x512.

Measured in a fresh process with an empty inductor cache, as a user's first compile would be: the first
compiled call (the warm-up) and the best compiled step after it, each against the eager step. Sfumato
leaves compile off on the CPU because on the 2-core AVX512-BF16 machine it was measured on, the warm-up
was 85 s and the compiled step was no faster (5.76 s against 5.56 s eager).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

from .bench_engine import MODEL, ROOT, full_size_model
from .common import Figure

SIZE = 512


def run() -> list[Figure]:
    full_size_model()
    code = textwrap.dedent(f"""
        import json, time, torch
        from diffusers import UNet2DConditionModel
        from desktop.engine import devices
        dtype = devices.choose("cpu").dtype
        unet = UNet2DConditionModel.from_pretrained({str(MODEL)!r}, subfolder="unet", torch_dtype=dtype).eval()
        layout = torch.channels_last if dtype != torch.float32 else torch.contiguous_format
        unet = unet.to(memory_format=layout)
        x = torch.randn(2, 4, {SIZE // 8}, {SIZE // 8}, dtype=dtype).to(memory_format=layout)
        t, text = torch.tensor([500]), torch.randn(2, 77, 768, dtype=dtype)

        def best(f, n=2):
            times = []
            for _ in range(n):
                start = time.perf_counter(); f(); times.append(time.perf_counter() - start)
            return min(times)

        with torch.inference_mode():
            unet(x, t, text)
            eager = best(lambda: unet(x, t, text))
            compiled = torch.compile(unet)
            start = time.perf_counter(); compiled(x, t, text); warmup = time.perf_counter() - start
            step = best(lambda: compiled(x, t, text))
        print(json.dumps({{"eager": eager, "warmup": warmup, "compiled": step}}))
    """)
    with tempfile.TemporaryDirectory(prefix="sfumato-inductor-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                             timeout=900)
    if out.returncode != 0:  # no C++ compiler, or inductor failed: say so rather than fail the whole run
        print(f"bench_compile: torch.compile did not run here:\n{out.stderr[-2000:]}", file=sys.stderr)
        return []
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return [
        Figure(f"UNet step {SIZE}x{SIZE} with torch.compile", result["compiled"], "s", "eager (Sfumato's setup)",
               result["eager"]),
        Figure("torch.compile warm-up (first call, empty cache)", result["warmup"], "s", "one eager step",
               result["eager"]),
    ]
