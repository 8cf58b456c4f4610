"""Generation speed on the CPU with a full-size SD1.5 (random weights), each figure against a baseline of the same run.

- engine overhead: Sfumato's engine (previews on) vs the bare diffusers pipeline call, same model, size,
  steps and seed, per step (goal: ratio <= 1.02);
- previews: one approximate preview vs one step (goal: < 1%);
- CPU policy: Sfumato's CPU setup (bf16 where the CPU multiplies it natively, channels-last) vs diffusers'
  default (fp32), seconds per UNet step at 256 and 512 (goal: twice as fast);
- achieved GFLOP/s of a step vs a bf16 matrix multiply measured here (goal: 70%), attention included, and the
  throughput of the one part that holds 512x512 back, attention over 4096 tokens;
- switching txt2img -> inpaint -> img2img on the loaded model vs loading it;
- peak memory of one 512x512 generation, Sfumato vs the bare pipeline in fp32 (separate processes);
- start-up (window shown) and the largest GUI stall while generating, from `main.py --smoke`, vs a bare
  Qt window and an idle event loop.

The model is written once (fp16, 1.7 GB) to ~/.cache/sfumato-bench and reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from .common import Figure, best_of
from tests.support.requests import make_request

MODEL = Path(os.environ.get("SFUMATO_BENCH_CACHE", Path.home() / ".cache" / "sfumato-bench")) / "sd15-random"
ROOT = Path(__file__).resolve().parents[2]
PROMPT = "a lighthouse on a cliff at dusk, oil painting"


def full_size_model() -> Path:
    """A full-size SD1.5 diffusers folder with random weights (made once)."""
    if (MODEL / "model_index.json").is_file():
        return MODEL
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from desktop.engine import bundled_configs

    config = bundled_configs.assemble_config("sd1", Path(tempfile.mkdtemp()) / "sd1")
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(config / "tokenizer"),
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet")),
        scheduler=PNDMScheduler.from_pretrained(config / "scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(MODEL)
    return MODEL


def run() -> list[Figure]:
    import torch

    from desktop.core.progress import TaskState
    from desktop.core.request import GenerationRequest
    from desktop.engine import devices, generate
    from desktop.engine.models import ModelManager

    model = full_size_model()
    figures: list[Figure] = []
    choice = devices.choose("cpu")
    manager = ModelManager(choice)
    load = best_of(lambda: (manager.unload(), manager.load(str(model))), repeat=1)
    pipe = manager.pipeline("txt2img")

    # -- engine overhead and previews: 256x256, 4 steps ---------------------------------------------
    steps = 4
    request = make_request(prompt=PROMPT, model=str(model), width=256, height=256, steps=steps, seed=1,
                                sampler="Euler", schedule="Automatic")
    engine = best_of(lambda: generate.run(request, TaskState(), manager), repeat=2) / steps

    def bare():
        from diffusers import EulerDiscreteScheduler

        pipe.scheduler = EulerDiscreteScheduler.from_config(manager.current.scheduler_config)
        with torch.inference_mode():
            pipe(prompt=PROMPT, width=256, height=256, num_inference_steps=steps, guidance_scale=7.0,
                 generator=torch.Generator("cpu").manual_seed(1), output_type="np")

    bare_step = best_of(bare, repeat=2) / steps
    figures.append(Figure("engine step, previews on (SD1.5 256x256, bf16)", engine, "s",
                          "bare diffusers pipeline step", bare_step))
    previewer = manager.previewer("sd1", "approximate")
    latents = torch.randn(1, 4, 32, 32, dtype=choice.dtype)
    preview = best_of(lambda: previewer(latents), repeat=20, number=5)
    figures.append(Figure("one preview (approximate, 256x256)", preview * 1000, "ms", "one step", bare_step * 1000))

    # -- mode switching on the loaded model ------------------------------------------------------------
    def switch():
        for kind in ("inpaint", "img2img"):
            manager.current.pipelines.pop(kind, None)
            manager.pipeline(kind)

    figures.append(Figure("switch txt2img -> inpaint -> img2img (no reload)", best_of(switch, repeat=3), "s",
                          "loading the model", load))
    unet = pipe.unet
    manager.unload()
    pipe = None  # noqa: F841 - the UNet alone is measured next

    # -- the CPU policy, and how close a step comes to the matrix-multiply throughput ----------------------
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_attention_flops(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    # torch's FLOP counter knows the CUDA attention kernels but not the CPU one: without this, a third of an SD1.5
    # step at 512x512 (its self-attention over 4096 tokens) would be left out of the count.
    attention_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu

    def unet_step(dtype, channels_last: bool, size: int):
        u = unet.to(dtype).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        x = torch.randn(2, 4, size // 8, size // 8, dtype=dtype)
        x = x.to(memory_format=torch.channels_last) if channels_last else x
        t, text = torch.tensor([500]), torch.randn(2, 77, 768, dtype=dtype)

        def step():
            with torch.inference_mode():
                u(x, t, text)

        step()  # warm-up: oneDNN picks its kernels
        return best_of(step, repeat=4 if size <= 256 else 2), (u, x, t, text)

    a, b = torch.randn(4096, 4096, dtype=torch.bfloat16), torch.randn(4096, 4096, dtype=torch.bfloat16)
    matmul = 2 * 4096**3 / best_of(lambda: a @ b, repeat=5) / 1e9
    sfumato_dtype = choice.dtype
    for size in (256, 512):
        ours, (u, x, t, text) = unet_step(sfumato_dtype, sfumato_dtype != torch.float32, size)
        counter = FlopCounterMode(display=False, custom_mapping={attention_op: cpu_attention_flops})
        with torch.inference_mode(), counter:
            u(x, t, text)
        gflops = counter.get_total_flops() / 1e9
        default, _ = unet_step(torch.float32, False, size)
        figures.append(Figure(f"UNet step {size}x{size}, Sfumato CPU setup ({str(sfumato_dtype)[6:]}, channels-last)",
                              ours, "s", "diffusers default (fp32)", default))
        figures.append(Figure(f"achieved throughput of that step ({gflops:.0f} GFLOP)", gflops / ours, "GFLOP/s",
                              "bf16 matrix multiply, 4096^3", matmul))
    # The limit at 512x512: attention over the 64x64 latent (8 heads of 40). torch runs it at the same speed in bf16
    # and fp32, so it does not gain from bf16 as the convolutions do.
    q, k, v = (torch.randn(2, 8, 4096, 40, dtype=sfumato_dtype) for _ in range(3))
    attention = best_of(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), repeat=3)
    figures.append(Figure(f"attention, 4096 tokens x 8 heads of 40 ({str(sfumato_dtype)[6:]})",
                          sdpa_flop_count(q.shape, k.shape, v.shape) / attention / 1e9, "GFLOP/s",
                          "bf16 matrix multiply, 4096^3", matmul))
    unet = u = None  # noqa: F841 - free it before the memory measurements

    # -- peak memory of one 512x512 generation, in fresh processes -------------------------------------------
    figures.append(Figure("peak memory, one 512x512 generation (Sfumato)", _peak_rss("sfumato", model), "MiB",
                          "bare diffusers pipeline (fp32)", _peak_rss("bare", model)))

    # -- start-up and GUI stalls, from the real window --------------------------------------------------------
    smoke = _smoke()
    bare_window = _bare_window_seconds()
    figures.append(Figure("window shown after launch (--smoke)", smoke["window_shown_s"], "s",
                          "a bare PySide6 window", bare_window))
    figures.append(Figure("largest GUI stall while generating (--smoke)", smoke["max_ui_stall_ms"], "ms",
                          "the same 10 ms timer, idle", _idle_stall_ms()))
    return figures


def _peak_rss(kind: str, model: Path) -> float:
    code = textwrap.dedent(f"""
        import resource, torch
        model = {str(model)!r}
        if {kind!r} == "sfumato":
            from desktop.core.progress import TaskState
            from desktop.core.request import GenerationRequest
            from desktop.engine import devices, generate
            from desktop.engine.models import ModelManager
            manager = ModelManager(devices.choose("cpu"))
            generate.run(make_request(prompt="a cat", model=model, width=512, height=512, steps=2, seed=1),
                         TaskState(), manager)
        else:
            from diffusers import StableDiffusionPipeline
            pipe = StableDiffusionPipeline.from_pretrained(model, torch_dtype=torch.float32)
            with torch.inference_mode():
                pipe("a cat", width=512, height=512, num_inference_steps=2)
        # VmHWM, not ru_maxrss: ru_maxrss outlives exec, so it would count the bench process's own memory
        # that the child shared between fork and exec.
        try:
            status = open("/proc/self/status").read()
            print(int(status.split("VmHWM:")[1].split()[0]) / 1024)
        except (OSError, IndexError):
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def _smoke() -> dict:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("SFUMATO_HOME", None)
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "--smoke"], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=env, timeout=600)
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def _bare_window_seconds() -> float:
    code = textwrap.dedent("""
        import time, psutil
        from PySide6.QtWidgets import QApplication, QMainWindow
        app = QApplication([])
        window = QMainWindow()
        window.show()
        print(time.time() - psutil.Process().create_time())
    """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def _idle_stall_ms() -> float:
    code = textwrap.dedent("""
        import time
        from PySide6.QtCore import QCoreApplication, QTimer
        app = QCoreApplication([])
        state = {"last": time.perf_counter(), "worst": 0.0}
        def tick():
            now = time.perf_counter()
            state["worst"] = max(state["worst"], (now - state["last"]) * 1000 - 10)
            state["last"] = now
        timer = QTimer(interval=10)
        timer.timeout.connect(tick)
        timer.start()
        QTimer.singleShot(2000, app.quit)
        app.exec()
        print(max(0.1, state["worst"]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])
