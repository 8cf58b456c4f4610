"""Tiny random-weight ControlNets for the tiny models (desktop/engine/tiny.py): the demo ControlNet and the tests'.

Each is ``ControlNetModel.from_unet`` of a tiny model's UNet, so it fits that model exactly. from_unet starts the
ControlNet's output convolutions (the "zero convs", the middle block's output and the control picture embedding's
last convolution) at zero, so that a new ControlNet changes nothing; here they get small seeded random weights
instead, or no control picture would ever change a picture. Written two ways, which the loader must both read:

* ``root/tiny-control-<kind>/``: a diffusers folder (config.json + diffusion_pytorch_model.safetensors);
* ``root/tiny-control-<kind>.safetensors``: one file as ControlNets are shared. SD 1.x in the original
  (A1111 / ldm) key layout: ``control_model.input_blocks...``, ``control_model.zero_convs...``,
  ``control_model.input_hint_block...``, ``control_model.middle_block_out...``; SDXL in diffusers' key layout, as the
  SDXL ControlNet files people use are (diffusers reads no ldm layout for SDXL ControlNets). Beside it
  ``tiny-control-<kind>.config/config.json``, the config ``from_single_file(config=...)`` reads offline.

Same seed, same bytes on every build; a stamp file, written last, marks a finished build.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from desktop.core import atomic, paths

from . import tiny

VERSION = 1
KINDS = ("sd1", "sdxl")
_SEED_TAG = "sfumato-tiny-control"
LDM_PREFIX = "control_model."


@dataclass(frozen=True)
class TinyControlNet:
    kind: str
    folder: Path  # diffusers folder
    file: Path  # single file
    config: Path  # the single file's sidecar config folder


def paths_for(root: Path, kind: str) -> TinyControlNet:
    if kind not in KINDS:
        raise ValueError(f"unknown tiny ControlNet kind {kind!r}; expected one of {KINDS}")
    name = f"tiny-control-{kind}"
    root = Path(root)
    return TinyControlNet(kind, root / name, root / f"{name}.safetensors", root / f"{name}.config")


def build(root: Path, kind: str = "sd1", models_root: Path | None = None) -> TinyControlNet:
    """Build (or find built) the tiny ControlNet of the tiny model `kind` (built under `models_root`, default root)."""
    target = paths_for(root, kind)
    root = Path(root)
    stamp = root / f".tiny-control-{kind}.stamp"
    if _is_current(stamp, target):
        return target
    model = tiny.build(Path(models_root or root), kind)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tiny-control-{kind}.", suffix=".tmp", dir=root))
    try:
        staged = paths_for(work, kind)
        _write(model, staged)
        atomic.fsync_tree(work)
        if not _is_current(stamp, target):
            stamp.unlink(missing_ok=True)
            for src, dst in ((staged.folder, target.folder), (staged.config, target.config), (staged.file, target.file)):
                if dst.is_dir():
                    shutil.rmtree(dst)
                os.replace(src, dst)
            atomic.write_json(stamp, {"version": VERSION, "bytes": target.file.stat().st_size})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def demo(kind: str = "sd1") -> Path:
    """The demo ControlNet (the single file), built beside the demo model on first use."""
    demo_dir = paths.demo_model_dir()
    return build(demo_dir / "controlnet", kind, models_root=demo_dir).file


def _is_current(stamp: Path, target: TinyControlNet) -> bool:
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
        return (data.get("version") == VERSION and (target.folder / "config.json").is_file()
                and (target.config / "config.json").is_file() and target.file.stat().st_size == data.get("bytes"))
    except (OSError, ValueError):
        return False


def controlnet(unet, kind: str):
    """ControlNetModel.from_unet(unet) with seeded random weights where from_unet leaves zeros."""
    import torch
    from diffusers import ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(f"{_SEED_TAG}/{kind}".encode()))
        net = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for name, param in sorted(net.named_parameters()):
            if bool(param.any()):
                continue
            gen = torch.Generator().manual_seed(zlib.crc32(f"{_SEED_TAG}/{kind}/{name}".encode()))
            bound = 1.0 / float(param[0].numel()) ** 0.5 if param.ndim > 1 else 0.05
            param.copy_(torch.empty(param.shape).uniform_(-bound, bound, generator=gen))
    return net


def ldm_state_dict(net) -> dict:
    """An SD 1.x ControlNet's weights in the original key layout (``control_model.*``)."""
    import re

    from .ldm_layout import unet_to_ldm

    state = net.state_dict()
    shared = {k: v for k, v in state.items() if not k.startswith(("controlnet_", "controlnet_cond_embedding"))}
    out = {LDM_PREFIX + k: v for k, v in unet_to_ldm(shared, net.config.layers_per_block).items()}
    blocks = len({k.split(".")[2] for k in state if k.startswith("controlnet_cond_embedding.blocks.")})
    for key, value in state.items():
        if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(weight|bias)", key):
            new = f"zero_convs.{m[1]}.0.{m[2]}"
        elif m := re.fullmatch(r"controlnet_mid_block\.(weight|bias)", key):
            new = f"middle_block_out.0.{m[1]}"
        elif m := re.fullmatch(r"controlnet_cond_embedding\.conv_in\.(weight|bias)", key):
            new = f"input_hint_block.0.{m[1]}"
        elif m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(weight|bias)", key):
            new = f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"
        elif m := re.fullmatch(r"controlnet_cond_embedding\.conv_out\.(weight|bias)", key):
            new = f"input_hint_block.{2 * (blocks + 1)}.{m[1]}"
        else:
            continue
        out[LDM_PREFIX + new] = value
    if len(out) != len(state):
        raise ValueError("a ControlNet weight has no place in the original layout")
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def _write(model: tiny.TinyModel, target: TinyControlNet) -> None:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(model.folder / "unet", local_files_only=True)
    net = controlnet(unet, target.kind)
    net.save_pretrained(target.folder, safe_serialization=True)
    target.config.mkdir(parents=True)
    shutil.copyfile(target.folder / "config.json", target.config / "config.json")
    if target.kind == "sd1":
        state = ldm_state_dict(net)
    else:
        state = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    save_file(state, str(target.file), metadata={"format": "pt", "sfumato": f"tiny-control-{target.kind}-{VERSION}"})


# -- a tiny SDXL "union" ControlNet (ControlNetUnionModel), for the union tests ------------------------------------

UNION_NAME = "tiny-control-union-sdxl"
UNION_MODES = 8  # control modes 0-7, as the xinsir "promax" union ControlNet has


def build_union(root: Path, models_root: Path | None = None) -> Path:
    """Build (or find built) a tiny SDXL union ControlNet, a diffusers folder (config.json with "_class_name":
    "ControlNetUnionModel" + diffusion_pytorch_model.safetensors) as union ControlNets are shared."""
    root = Path(root)
    target, stamp = root / UNION_NAME, root / f".{UNION_NAME}.stamp"
    if _union_is_current(stamp, target):
        return target
    model = tiny.build(Path(models_root or root), "sdxl")
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{UNION_NAME}.", suffix=".tmp", dir=root))
    try:
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(model.folder / "unet", local_files_only=True)
        union_controlnet(unet).save_pretrained(work / UNION_NAME, safe_serialization=True)
        atomic.fsync_tree(work)
        if not _union_is_current(stamp, target):
            stamp.unlink(missing_ok=True)
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(work / UNION_NAME, target)
            atomic.write_json(stamp, {"version": VERSION})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _union_is_current(stamp: Path, target: Path) -> bool:
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
        return data.get("version") == VERSION and (target / "diffusion_pytorch_model.safetensors").is_file()
    except (OSError, ValueError):
        return False


def union_controlnet(unet):
    """ControlNetUnionModel.from_unet(unet), its control-type transformer as wide as the UNet's first block (which
    from_unet leaves at the full model's 320), with seeded random weights where it starts at zero."""
    import torch
    from diffusers import ControlNetUnionModel

    width = unet.config.block_out_channels[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(f"{_SEED_TAG}/union".encode()))
        shaped = ControlNetUnionModel.from_unet(unet)
        config = {k: v for k, v in shaped.config.items() if not k.startswith("_")}  # "_use_default_values" too
        config.update({"num_trans_channel": width, "num_proj_channel": width, "num_trans_head": 2,
                       "num_control_type": UNION_MODES})
        net = ControlNetUnionModel.from_config(config)
    own = net.state_dict()
    net.load_state_dict({k: v for k, v in shaped.state_dict().items() if own[k].shape == v.shape}, strict=False)
    with torch.no_grad():
        for name, param in sorted(net.named_parameters()):
            if bool(param.any()):
                continue
            gen = torch.Generator().manual_seed(zlib.crc32(f"{_SEED_TAG}/union/{name}".encode()))
            bound = 1.0 / float(param[0].numel()) ** 0.5 if param.ndim > 1 else 0.05
            param.copy_(torch.empty(param.shape).uniform_(-bound, bound, generator=gen))
    return net
