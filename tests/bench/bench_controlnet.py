"""ControlNet cost per denoising step on the CPU with the tiny SD 1.x model, against no ControlNet in the same run.

- seconds per step at 512x512 (batch 2, as with CFG), fp32: the UNet alone, then one ControlNet (the tiny one made
  from that UNet, desktop/engine/tiny_control.py) and two at once (diffusers' MultiControlNetModel) whose residuals
  the UNet adds, as the ControlNet pipelines run each step.

A ControlNet is a copy of the UNet's encoder and middle block, so one should cost a little over half a UNet step
more, and each more ControlNet as much again.

    python -m tests.bench controlnet
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .common import Figure, best_of

SIZE = 512


def run() -> list[Figure]:
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel
    from diffusers.models.controlnets import MultiControlNetModel

    from desktop.engine import tiny_control

    work = Path(tempfile.mkdtemp(prefix="sfumato-bench-controlnet-"))
    try:
        built = tiny_control.build(work, "sd1")
        unet = UNet2DConditionModel.from_pretrained(work / "tiny-sd1" / "unet", local_files_only=True).eval()
        net = ControlNetModel.from_pretrained(built.folder, local_files_only=True).eval()
        other = ControlNetModel.from_pretrained(built.folder, local_files_only=True).eval()
        multi = MultiControlNetModel([net, other])
        x = torch.randn(2, 4, SIZE // 8, SIZE // 8)
        t = torch.tensor([500])
        text = torch.randn(2, 77, unet.config.cross_attention_dim)
        cond = torch.rand(2, 3, SIZE, SIZE)

        def step_time(controls) -> float:
            def step():
                with torch.inference_mode():
                    extra = {}
                    if controls is not None:
                        if isinstance(controls, MultiControlNetModel):
                            down, mid = controls(x, t, text, [cond, cond], [1.0, 0.5], return_dict=False)
                        else:
                            down, mid = controls(x, t, text, cond, 1.0, return_dict=False)
                        extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
                    unet(x, t, text, **extra)

            step()  # warm-up
            return best_of(step, repeat=3)

        base = step_time(None)
        one = step_time(net)
        two = step_time(multi)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    name = f"denoising step, tiny SD1 {SIZE}x{SIZE} fp32 batch 2"
    return [
        Figure(f"{name}, one ControlNet", one, "s", "same step, no ControlNet", base),
        Figure(f"{name}, two ControlNets", two, "s", "same step, no ControlNet", base),
    ]
