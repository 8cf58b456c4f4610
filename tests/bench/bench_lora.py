"""LoRA speed on the CPU with the tiny SD 1.x model, each figure against a baseline of the same run.

- seconds per UNet step at 512x512 (batch 2, as with CFG), fp32: the model with a LoRA merged by Sfumato
  (engine/lora.py), diffusers' PEFT adapter left unfused (load_lora_weights) and diffusers' fused one
  (fuse_lora), each against the bare model (goal: Sfumato's ratio ~1.0, as fused);
- what switching the LoRA set costs: apply() from one set to another, and back to no LoRA, against one step.

The LoRA changes every layer of every attention block (kohya layout, rank 8): what a typical
character or style LoRA touches.

    python -m tests.bench lora
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from .common import Figure, best_of

TARGETS = ("unet.*attentions.*", "text_encoder.*self_attn.*", "text_encoder.*mlp.*")
SIZE = 512


def run() -> list[Figure]:
    import torch
    from diffusers import StableDiffusionPipeline

    from desktop.engine import tiny, tiny_addons
    from desktop.engine.lora import LoraPatcher, LoraUse

    work = Path(tempfile.mkdtemp(prefix="sfumato-bench-lora-"))
    try:
        model = tiny.build(work, "sd1")

        def load():
            return StableDiffusionPipeline.from_pretrained(model.folder, local_files_only=True)

        pipe = load()
        a = tiny_addons.build_lora(pipe, "kohya", work / "a.safetensors", rank=8, targets=TARGETS)
        b = tiny_addons.build_lora(pipe, "kohya", work / "b.safetensors", rank=8, seed=1, targets=TARGETS)
        x = torch.randn(2, 4, SIZE // 8, SIZE // 8)
        t = torch.tensor([500])
        text = torch.randn(2, 77, pipe.unet.config.cross_attention_dim)

        def step_time(unet) -> float:
            def step():
                with torch.inference_mode():
                    unet(x, t, text)

            step()  # warm-up
            return best_of(step, repeat=3)

        base = step_time(pipe.unet)
        patcher = LoraPatcher({"unet": pipe.unet, "text_encoder": pipe.text_encoder}, "sd1")
        patcher.apply([LoraUse(a, 0.8)])
        merged = step_time(pipe.unet)

        def switch():
            patcher.apply([LoraUse(b, 0.8)])
            patcher.apply([LoraUse(a, 0.8)])

        switching = best_of(switch, repeat=3) / 2
        start = time.perf_counter()
        patcher.apply([])
        removing = time.perf_counter() - start

        peft = load()
        peft.load_lora_weights(str(a))
        peft.set_adapters(peft.get_active_adapters(), adapter_weights=0.8)
        unfused = step_time(peft.unet)
        peft.fuse_lora(lora_scale=1.0)  # the 0.8 is already the adapter's weight
        peft.unload_lora_weights()
        fused = step_time(peft.unet)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    step_name = f"UNet step, tiny SD1 {SIZE}x{SIZE} fp32"
    return [
        Figure(f"{step_name}, LoRA merged by Sfumato", merged, "s", "same model, no LoRA", base),
        Figure(f"{step_name}, diffusers PEFT adapter unfused", unfused, "s", "same model, no LoRA", base),
        Figure(f"{step_name}, diffusers LoRA fused", fused, "s", "same model, no LoRA", base),
        Figure("apply(): switch to another LoRA set", switching, "s", "one UNet step", base),
        Figure("apply(): remove every LoRA", removing, "s", "one UNet step", base),
    ]
