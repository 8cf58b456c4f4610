"""Tiny add-on files for the tiny models (tiny.py), written on the fly for tests and benchmarks.

LoRAs: ``build_lora(pipe, layout, path)`` writes random LoRA factors for a few layers
of a loaded tiny SD 1.x or SDXL pipeline, in the layout a trainer writes them. The
changes are as large as the layers' own weights, so a picture visibly changes.

Few-step LoRAs: ``build_few_step_lora(pipe, kind, folder)`` writes a tiny stand-in for
the LCM, TCD, Hyper-SD or Lightning LoRA of the pipeline's family under the file name
and in the key layout its makers released it with (FEW_STEP_LORAS), so recognising it
from its name (desktop/core/fewstep.py) and loading it (lora.py) are exercised.
"""

from __future__ import annotations

import fnmatch
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from . import lora

LORA_LAYOUTS = ("kohya", "peft", "locon", "dora", "loha", "lokr")

# A few layers of every kind a LoRA touches, present in the tiny SD 1.x and SDXL models alike.
LORA_TARGETS = (
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v",
    "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0",
    "unet.up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2",
    "unet.down_blocks.1.attentions.0.proj_in",  # a 1x1 convolution in SD 1.x, a linear layer in SDXL
    "text_encoder.*layers.0.self_attn.q_proj",
    "text_encoder.*layers.1.mlp.fc1",
    "text_encoder_2.*layers.0.self_attn.v_proj",
)
# 3x3 and 1x1 convolutions, added for the layouts that change convolutions (LoCon, LoHa, LoKr).
LORA_CONV_TARGETS = (
    "unet.down_blocks.0.resnets.0.conv1",
    "unet.up_blocks.0.resnets.0.conv_shortcut",
)


def build_lora(
    model,
    layout: str,
    path: Path,
    rank: int = 4,
    seed: int = 0,
    targets: Sequence[str] | None = None,
    tucker: bool = False,
    strength: float = 1.0,
) -> Path:
    """Write a random LoRA for a loaded tiny pipeline (or {component: module}) and return its path.

    layout: "kohya" (lora_down/up + alpha, kohya names: diffusers names for an SD 1.x UNet,
    the LDM layout for SDXL's), "peft" (unet./text_encoder. + lora_A/lora_B, no alpha),
    "locon" (kohya with 3x3 convolutions; ``tucker`` adds lora_mid), "dora" (kohya +
    dora_scale per input column), "loha" and "lokr" (LyCORIS; ``tucker`` gives their 3x3
    convolutions a Tucker core). targets: fnmatch patterns over "component.module_path".
    strength: the size of each change against the layer's own weights. A path ending in
    .safetensors is written with safetensors, any other with torch.save.
    """
    if layout not in LORA_LAYOUTS:
        raise ValueError(f"unknown LoRA layout {layout!r}; expected one of {LORA_LAYOUTS}")
    components = _components(model)
    family = "sdxl" if components.get("text_encoder_2") is not None else "sd1"
    if targets is None:
        targets = LORA_TARGETS + (LORA_CONV_TARGETS if layout in ("locon", "loha", "lokr") else ())
    names = _kohya_names(components, family)
    state: dict[str, torch.Tensor] = {}
    for (component, name), module in _chosen(components, targets).items():
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{layout}/{component}.{name}".encode()))
        weight = module.weight.detach().float()
        size = strength * float(weight.std())
        key = f"{component}.{name}" if layout == "peft" else names[(component, name)]
        parts = _FACTORS[layout if layout in ("loha", "lokr") else "lora"](weight, rank, size, gen, tucker, layout)
        if layout == "peft":
            state[f"{key}.lora_A.weight"] = parts.pop("down")
            state[f"{key}.lora_B.weight"] = parts.pop("up")
        else:
            for role, tensor in parts.items():
                state[f"{key}.{role}" + (".weight" if role.startswith("lora_") else "")] = tensor
    if not state:
        raise ValueError("no layer of the model matches the targets")
    path = Path(path)
    state = {k: v.contiguous() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


# (few-step kind, family) -> (the released file's name, its key layout). LCM's and TCD's were trained with diffusers
# (PEFT keys); Hyper-SD's and Lightning's are kohya-style files for A1111 and ComfyUI.
FEW_STEP_LORAS = {
    ("lcm", "sd1"): ("lcm-lora-sdv1-5.safetensors", "peft"),
    ("lcm", "sdxl"): ("lcm-lora-sdxl.safetensors", "peft"),
    ("tcd", "sd1"): ("TCD-SD15-LoRA.safetensors", "peft"),
    ("tcd", "sdxl"): ("TCD-SDXL-LoRA.safetensors", "peft"),
    ("hyper", "sd1"): ("Hyper-SD15-8steps-lora.safetensors", "kohya"),
    ("hyper", "sdxl"): ("Hyper-SDXL-8steps-lora.safetensors", "kohya"),
    ("lightning", "sdxl"): ("sdxl_lightning_4step_lora.safetensors", "kohya"),
}
_UNET_TARGETS = tuple(t for t in LORA_TARGETS if t.startswith("unet."))  # few-step LoRAs change the UNet only


def build_few_step_lora(model, kind: str, folder: Path, strength: float = 0.5) -> Path:
    """Write the tiny few-step LoRA of `kind` ("lcm", "tcd", "hyper", "lightning") for a loaded tiny SD 1.x or
    SDXL pipeline into `folder`, named as released (FEW_STEP_LORAS); ValueError for a kind not made for its
    family (Lightning is SDXL's only)."""
    family = "sdxl" if _components(model).get("text_encoder_2") is not None else "sd1"
    if (kind, family) not in FEW_STEP_LORAS:
        raise ValueError(f"no {kind} LoRA was released for {family}")
    name, layout = FEW_STEP_LORAS[(kind, family)]
    Path(folder).mkdir(parents=True, exist_ok=True)
    return build_lora(model, layout, Path(folder) / name, seed=zlib.crc32(name.encode()), targets=_UNET_TARGETS,
                      strength=strength)


def _components(model) -> dict[str, torch.nn.Module]:
    if isinstance(model, Mapping):
        return dict(model)
    return {name: getattr(model, name, None) for name in ("unet", "text_encoder", "text_encoder_2")}


def _chosen(components: Mapping[str, torch.nn.Module], targets: Sequence[str]) -> dict:
    chosen = {}
    for component, model in components.items():
        if model is None:
            continue
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and any(
                fnmatch.fnmatchcase(f"{component}.{name}", t) for t in targets
            ):
                chosen[(component, name)] = module
    return chosen


def _kohya_names(components: Mapping[str, torch.nn.Module], family: str) -> dict[tuple[str, str], str]:
    """(component, module path) -> the name kohya's sd-scripts give the layer."""
    out = {}
    prefix = {"text_encoder": "lora_te1_" if family == "sdxl" else "lora_te_", "text_encoder_2": "lora_te2_"}
    for component, model in components.items():
        if model is None:
            continue
        layers = {n: m for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
        ldm = lora.ldm_names(model, layers) if component == "unet" and family == "sdxl" else {}
        for name in layers:
            if component == "unet":
                out[(component, name)] = "lora_unet_" + ldm.get(name, name).replace(".", "_")
            else:
                full = name if name.startswith(("text_model.", "text_projection")) else "text_model." + name
                out[(component, name)] = prefix[component] + full.replace(".", "_")
    return out


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=gen)


def _lora_factors(weight, rank, size, gen, tucker, layout) -> dict[str, torch.Tensor]:
    """lora_down / lora_up (+ lora_mid), alpha = rank / 2 (except PEFT), dora_scale for DoRA."""
    out_ch, in_ch, kernel = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
    conv = weight.ndim == 4
    scale = 1.0 if layout == "peft" else 0.5
    if tucker and conv and kernel != (1, 1):
        down, mid = _randn(gen, rank, in_ch, 1, 1), _randn(gen, rank, rank, *kernel)
        up = _randn(gen, out_ch, rank, 1, 1)
        spread = rank  # each entry sums rank * rank unit products
        parts = {"lora_down": down, "lora_mid": mid}
    else:
        down = _randn(gen, rank, in_ch, *kernel)
        up = _randn(gen, out_ch, rank, 1, 1) if conv else _randn(gen, out_ch, rank)
        spread = math.sqrt(rank)
        parts = {"lora_down": down}
    parts["lora_up"] = up * (size / spread / scale)
    if layout == "peft":
        return {"down": parts["lora_down"], "up": parts["lora_up"]}
    parts["alpha"] = torch.tensor(rank * scale)
    if layout == "dora":
        dims = [d for d in range(weight.ndim) if d != 1]
        column = torch.linalg.vector_norm(weight, dim=dims, keepdim=True)  # (1, in, 1, 1) for a convolution
        parts["dora_scale"] = column * (1 + 0.5 * torch.rand(column.shape, generator=gen))
    return parts


def _loha_factors(weight, rank, size, gen, tucker, layout) -> dict[str, torch.Tensor]:
    out_ch, in_ch, kernel = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
    parts: dict[str, torch.Tensor] = {}
    for i in ("1", "2"):
        if tucker and kernel and kernel != (1, 1):
            parts[f"hada_t{i}"] = _randn(gen, rank, rank, *kernel)
            parts[f"hada_w{i}_a"] = _randn(gen, rank, out_ch)
            parts[f"hada_w{i}_b"] = _randn(gen, rank, in_ch)
            spread = rank
        else:
            parts[f"hada_w{i}_a"] = _randn(gen, out_ch, rank)
            parts[f"hada_w{i}_b"] = _randn(gen, rank, in_ch * math.prod(kernel))
            spread = math.sqrt(rank)
    # the product of the two halves has std spread**2 before scaling; alpha = rank / 2 halves it
    parts["hada_w1_a"] = parts["hada_w1_a"] * (size / spread**2 / 0.5)
    parts["alpha"] = torch.tensor(rank * 0.5)
    return parts


def _lokr_factors(weight, rank, size, gen, tucker, layout) -> dict[str, torch.Tensor]:
    out_ch, in_ch, kernel = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
    a, b = _small_factor(out_ch), _small_factor(in_ch)
    c, d = out_ch // a, in_ch // b
    parts = {"lokr_w1": _randn(gen, a, b)}
    if tucker and kernel and kernel != (1, 1):
        parts["lokr_t2"] = _randn(gen, rank, rank, *kernel)
        parts["lokr_w2_a"] = _randn(gen, rank, c)
        parts["lokr_w2_b"] = _randn(gen, rank, d)
        spread = rank
    else:
        parts["lokr_w2_a"] = _randn(gen, c, rank)
        parts["lokr_w2_b"] = _randn(gen, rank, d * math.prod(kernel))
        spread = math.sqrt(rank)
    parts["lokr_w1"] = parts["lokr_w1"] * (size / spread / 0.5)
    parts["alpha"] = torch.tensor(rank * 0.5)  # w2 is split in two, so alpha / rank applies
    return parts


def _small_factor(n: int) -> int:
    """The largest divisor of n not above its square root (LoKr's smaller Kronecker factor)."""
    return max(f for f in range(1, math.isqrt(n) + 1) if n % f == 0)


_FACTORS = {"lora": _lora_factors, "loha": _loha_factors, "lokr": _lokr_factors}
