"""LoRA and LyCORIS files merged straight into a loaded model's weights.

As AUTOMATIC1111's built-in Lora extension does it: before a layer is changed
the first time, a CPU copy of its original weight (and bias, when a file touches
it) is kept; a new set of LoRAs first copies those originals back, bit for bit,
then adds the deltas of every LoRA in the set. A run with an unchanged set costs
nothing extra: the model simply has different weights, exactly as fast as a
model fused with them.

What loads (layer names are built from the model itself, so nothing depends on
its sizes):

* kohya / A1111 / sd-scripts: ``lora_unet_*``, ``lora_te_*`` (SD 1.x/2.x),
  ``lora_te1_*`` / ``lora_te2_*`` (SDXL), UNet layers under their diffusers
  names or the original LDM / SGM names (``input_blocks_4_1_...``, as kohya
  names SDXL), with ``lora_down`` / ``lora_up`` / optional ``lora_mid`` (LoCon
  Tucker) and ``alpha`` (scale alpha / rank, no alpha: 1), Linear and Conv2d.
* diffusers / PEFT: ``unet.`` / ``text_encoder.`` / ``text_encoder_2.`` (or no
  prefix: the UNet) with ``lora_A`` / ``lora_B``, the older ``.lora.down`` /
  ``.lora_linear_layer.down`` and ``processor.to_q_lora.down`` forms.
* DoRA: ``dora_scale`` (LyCORIS: one norm per input column, shape (1, in), or
  per output row, shape (out, 1)) or PEFT's ``lora_magnitude_vector`` (per
  output row). The merged layer is ``decompose(W + s * dW)`` as LyCORIS trains
  it; the user's weight m scales the resulting change, so m = 0 is the base
  and m = 1 is what the trainer saw.
* LyCORIS LoHa (``hada_*``), LoKr (``lokr_*``; alpha / rank only when a factor
  is split in two) and full ``diff`` / ``diff_b`` (also ``w_norm`` / ``b_norm``).

Anything else (OFT, GLoRA, (IA)^3, an embedding, a checkpoint) is refused with
a sentence. Pickle files (.pt/.ckpt/.bin) are read with weights_only=True only.

The flow-matching families' LoRAs (FLUX.1, FLUX.2 klein, SD 3.5, Z-Image) are read by flow_lora.py through
diffusers' converters and merged here the same way. Their layers may have the sizes of another family's, so a
LoRA whose header names another family than the model's, where either is a flow family, is refused at once.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from desktop.core import families as specs
from desktop.core.errors import SfumatoError
from desktop.core.modelfiles import Family, identify
from desktop.core.safetensors_header import read_safetensors_header

from .ldm_layout import unet_to_ldm

FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
_LAYER_TYPES = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)

# Key suffix -> the role of its tensor. Longer suffixes are tried first.
_ROLES = {
    "lora_down.weight": "down", "lora_up.weight": "up", "lora_mid.weight": "mid",
    "lora_A.weight": "down", "lora_B.weight": "up",
    "lora.down.weight": "down", "lora.up.weight": "up",
    "lora_linear_layer.down.weight": "down", "lora_linear_layer.up.weight": "up",
    "down.weight": "down", "up.weight": "up",  # old diffusers: <...>.processor.to_q_lora.down.weight
    "alpha": "alpha", "dora_scale": "dora", "lora_magnitude_vector": "dora", "lora_magnitude_vector.weight": "dora",
    "hada_w1_a": "hada_w1_a", "hada_w1_b": "hada_w1_b", "hada_w2_a": "hada_w2_a", "hada_w2_b": "hada_w2_b",
    "hada_t1": "hada_t1", "hada_t2": "hada_t2",
    "lokr_w1": "lokr_w1", "lokr_w1_a": "lokr_w1_a", "lokr_w1_b": "lokr_w1_b",
    "lokr_w2": "lokr_w2", "lokr_w2_a": "lokr_w2_a", "lokr_w2_b": "lokr_w2_b", "lokr_t2": "lokr_t2",
    "diff": "diff", "diff_b": "diff_b", "w_norm": "diff", "b_norm": "diff_b",
}  # fmt: skip
_SUFFIXES = sorted(_ROLES, key=len, reverse=True)

# Key parts of LyCORIS and other adapter kinds this module does not merge, and what to call them.
_OTHER_KINDS = (
    ("oft_blocks", "OFT"), ("oft_diag", "OFT"), ("oft_r", "OFT"), ("boft", "BOFT"),
    (".a1.weight", "GLoRA"), (".b1.weight", "GLoRA"), ("on_input", "(IA)\u00b3"),
    ("lora_a.bias", "LoRA with biases"), ("lora_b.bias", "LoRA with biases"),
)  # fmt: skip


class LoraError(SfumatoError):
    """A LoRA file that cannot be used; str() is one sentence naming the file."""


@dataclass(frozen=True)
class LoraUse:
    """One ``<lora:name:te_weight:unet_weight>`` of a prompt (A1111's order), resolved to a file."""

    path: Path
    unet: float = 1.0
    text: float = 1.0


@dataclass(frozen=True)
class Layer:
    """A layer of the loaded model a LoRA may change: (component, module path) and the module."""

    component: str
    name: str
    module: torch.nn.Module


@dataclass
class _Patch:
    """The factors one file gives one layer, and the user's weight for it."""

    layer: Layer
    kind: str  # "lora" | "loha" | "lokr" | "full"
    tensors: dict[str, torch.Tensor]
    multiplier: float
    source: str  # the file's name, for messages


class LoraPatcher:
    """Owns the merged state of one loaded model (its unet, text_encoder, text_encoder_2 modules)."""

    def __init__(self, components: Mapping[str, torch.nn.Module], family: str):
        self.family = family
        self._layers = layer_names(components, family)
        self._saved: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        self._signature: tuple = ()

    def signature(self) -> tuple:
        """Hashable identity of the applied set (files with size and mtime, weights); () for none."""
        return self._signature

    def apply(self, uses: Sequence[LoraUse]) -> list[str]:
        """Make the model's weights base + the deltas of ``uses``; return notes for the status line.

        Nothing happens when the set (the files unchanged on disk, the weights) is the one
        applied last; notes come only when something was applied. A use whose two weights are
        0 is left out (its file is not even read). A file that cannot be used
        raises LoraError before any weight changes; should a later step fail, the model is put
        back to its base weights before the error propagates: it is never half-patched.
        """
        uses = [u for u in uses if u.unet or u.text]
        signature = tuple(sorted(_identity(u) for u in uses))
        if signature == self._signature:
            return []
        notes: list[str] = []
        patches: list[_Patch] = []
        for use in uses:
            found, note = self._plan(use)
            patches += found
            if note:
                notes.append(note)
        self.restore()
        try:
            self._merge(patches)
        except BaseException:
            self.restore()
            raise
        self._signature = signature
        return notes

    def restore(self) -> None:
        """Copy every changed weight back from its saved original: the model is exactly its base again."""
        with torch.no_grad():
            for (component, name), saved in self._saved.items():
                module = self._layers[_dotted(component, name)].module
                for param_name, original in saved.items():
                    _tensor(module, param_name).data.copy_(original)
        self._saved.clear()
        self._signature = ()

    # -- planning: read, map and check a file without touching the model

    def _read(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The file's tensors under the names layer_names() gives (flow_lora.py converts other layouts)."""
        return read_lora_file(path)

    def _plan(self, use: LoraUse) -> tuple[list[_Patch], str]:
        path = Path(use.path)
        refuse_other_family(path, self.family)
        tensors, metadata = self._read(path)
        groups = _group(path.name, tensors)
        patches: list[_Patch] = []
        unmatched = misfit = 0
        for stem, parts in groups.items():
            layer = self._layers.get(_canonical_stem(stem))
            kind = _kind(path.name, stem, parts)
            if layer is None:
                unmatched += 1
                continue
            if not _fits(layer.module, kind, parts):
                misfit += 1
                continue
            multiplier = use.unet if layer.component in ("unet", "transformer") else use.text
            if multiplier:
                patches.append(_Patch(layer, kind, parts, float(multiplier), path.name))
        total = len(groups)
        matched = total - unmatched - misfit
        if misfit or not matched:
            families = guess_families(groups, metadata)
            model = _label(self.family)
            if families == {"other"} and self.family in FAMILY_NAMES:
                raise LoraError(f"{path.name} is a LoRA for another kind of model (such as Flux or SD3); "
                                f"the loaded model is {model}. Choose {_article(model)} {model} LoRA.")
            if families - {"other"} and self.family not in families:
                lora = _family_text(families)
                raise LoraError(f"{path.name} is a LoRA for {lora}; the loaded model is {model}. "
                                f"Choose {_article(model)} {model} LoRA or {_article(lora)} {lora} model.")
            if misfit:
                raise LoraError(f"{path.name} does not fit the loaded {model} model: {misfit} of its {total} "
                                "layers have other sizes. It was probably trained for another model type.")
            raise LoraError(f"{path.name} changes no layer of the loaded {model} model. "
                            "It was probably trained for another model type.")
        note = f"{path.name}: {unmatched} of {total} layers match nothing in this model" if unmatched else ""
        return patches, note

    # -- merging

    def _merge(self, patches: list[_Patch]) -> None:
        by_layer: dict[tuple[str, str], list[_Patch]] = {}
        for patch in patches:
            by_layer.setdefault((patch.layer.component, patch.layer.name), []).append(patch)
        with torch.no_grad():
            for key, group in by_layer.items():
                module = group[0].layer.module
                weight = _tensor(module, "weight")
                base = weight.detach().to(torch.float32)
                total = torch.zeros_like(base)
                bias_total = None
                for patch in group:
                    try:
                        delta, bias = _delta(patch, base)
                    except torch.OutOfMemoryError:
                        raise
                    except (RuntimeError, ValueError, IndexError) as error:
                        raise LoraError(f"{patch.source} could not be merged into the model: its layer "
                                        f"{patch.layer.name} does not compute ({error}). "
                                        "The file may be damaged; download it again.") from error
                    total += delta * patch.multiplier
                    if bias is not None:
                        bias_total = bias * patch.multiplier + (0 if bias_total is None else bias_total)
                saved = self._saved.setdefault(key, {})
                saved.setdefault("weight", weight.detach().to("cpu", copy=True))
                weight.data.copy_((base + total).to(weight.dtype))
                if bias_total is not None:
                    bias = _tensor(module, "bias")
                    saved.setdefault("bias", bias.detach().to("cpu", copy=True))
                    new_bias = bias.detach().to(torch.float32) + bias_total
                    bias.data.copy_(new_bias.to(bias.dtype))


def _tensor(module: torch.nn.Module, name: str) -> torch.Tensor:
    """The module's weight or bias as it is stored. Under sequential CPU offload (accelerate) the module holds
    an empty meta tensor between runs and its hook the real one, which each run moves in: that one is merged."""
    value = getattr(module, name)
    if value.device.type == "meta":
        weights = getattr(getattr(module, "_hf_hook", None), "weights_map", None)
        if weights is not None:
            return weights[name]
    return value


# ---------------------------------------------------------------------------
# layer names


def layer_names(components: Mapping[str, torch.nn.Module], family: str) -> dict[str, Layer]:
    """Every name a LoRA file may give a layer of this model -> the layer.

    Each layer is known by its kohya name (``lora_unet_`` + module path with '.' -> '_'; the
    UNet also by its LDM path, the text encoders with the ``text_model.`` level whatever the
    transformers version) and its dotted name (``unet.<path>``, ``text_encoder.<path>``).
    """
    names: dict[str, Layer] = {}
    te_prefix = {"text_encoder": "lora_te1_" if family == "sdxl" else "lora_te_", "text_encoder_2": "lora_te2_"}
    for component, model in components.items():
        if model is None or component not in ("unet", "transformer", *TEXT_ENCODERS):
            continue
        layers = {n: m for n, m in model.named_modules() if isinstance(m, _LAYER_TYPES)}
        for name, module in layers.items():
            layer = Layer(component, name, module)
            names[_dotted(component, name)] = layer
            if component == "unet":
                names[_kohya("lora_unet_", name)] = layer
            elif component == "transformer":  # flow models: diffusers names, as flow_lora.py converts them
                continue
            else:
                full = name if name.startswith(("text_model.", "text_projection")) else "text_model." + name
                names[_kohya(te_prefix[component], full)] = layer
                names[_dotted(component, full)] = layer
                names[_dotted(component, full.removeprefix("text_model."))] = layer
        if component == "unet":
            for name, ldm in ldm_names(model, layers).items():
                names.setdefault(_kohya("lora_unet_", ldm), Layer(component, name, layers[name]))
    return names


def ldm_names(unet: torch.nn.Module, layers: dict[str, torch.nn.Module]) -> dict[str, str]:
    """Diffusers UNet module path -> its path in the original LDM / SGM layout (as kohya names SDXL)."""
    try:
        ldm = unet_to_ldm({f"{name}.weight": name for name in layers}, unet.config.layers_per_block)
    except (AttributeError, ValueError):
        return {}  # a UNet without an LDM layout: its LoRAs use diffusers names
    return {name: key.removesuffix(".weight") for key, name in ldm.items()}


def _kohya(prefix: str, path: str) -> str:
    return prefix + path.replace(".", "_")


def _dotted(component: str, path: str) -> str:
    return f"{component}.{path}"


def _canonical_stem(stem: str) -> str:
    """A file's layer name -> the name layer_names() uses for it."""
    if stem.startswith("lora_"):
        return stem
    stem = stem.removeprefix("base_model.model.")
    stem = re.sub(r"\.processor\.(to_[qkv])_lora$", r".\1", stem)
    stem = re.sub(r"\.processor\.to_out_lora$", ".to_out.0", stem)
    if not stem.startswith(("unet.", "transformer.", "text_encoder.", "text_encoder_2.")):
        stem = "unet." + stem  # diffusers assumes the UNet for keys without a component
    return stem


# ---------------------------------------------------------------------------
# reading and grouping files


def read_lora_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a LoRA file, read safely; LoraError when it cannot be used."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".safetensors", ".sft"):
        header = read_safetensors_header(path)  # ModelFileError (a sentence) when damaged
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                tensors = {key: f.get_tensor(key) for key in f.keys()}
        except Exception as error:
            raise LoraError(f"{path.name} is damaged and could not be read ({error}). Download it again.") from error
        return tensors, dict(header.metadata)
    if suffix in PICKLE_SUFFIXES:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
        except FileNotFoundError as error:
            raise LoraError(f"{path.name} is no longer there. Choose another LoRA.") from error
        except Exception as error:
            text = str(error).lower()
            if "weights only load failed" in text or "weights_only" in text:
                raise LoraError(f"{path.name} contains code, not only weights, so it was not opened. "
                                "Use a .safetensors version of the LoRA.") from error
            raise LoraError(f"{path.name} is damaged and could not be read. Download it again.") from error
        if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
            data = data["state_dict"]
        if not isinstance(data, dict):
            raise LoraError(f"{path.name} holds no table of weights, so it is not a LoRA.")
        return {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}, {}
    raise LoraError(f"{path.name}: Sfumato reads LoRAs from .safetensors, .pt, .ckpt and .bin files only.")


def _group(filename: str, tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Keys -> {layer name: {role: tensor}}; raises for anything that is not a LoRA we can merge."""
    _refuse_other_files(filename, tensors)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        for suffix in _SUFFIXES:
            if key.endswith("." + suffix):
                stem = key[: -len(suffix) - 1]
                if suffix in ("down.weight", "up.weight") and not stem.endswith("_lora"):
                    continue
                groups.setdefault(stem, {})[_ROLES[suffix]] = tensor
                break
        else:
            lowered = key.lower()
            kind = next((name for part, name in _OTHER_KINDS if part in lowered), None)
            if kind:
                raise LoraError(f"{filename} holds {kind} weights, which Sfumato cannot merge yet. "
                                "Use a LoRA, LoCon, LoHa, LoKr or DoRA file.")
            raise LoraError(f"{filename} holds weights Sfumato does not know how to merge (such as {key!r}). "
                            "Use a LoRA, LoCon, LoHa, LoKr or DoRA file.")
    groups = {stem: parts for stem, parts in groups.items() if set(parts) != {"alpha"}}
    if not groups:
        raise LoraError(f"{filename} holds no LoRA weights.")
    return groups


def _refuse_other_files(filename: str, tensors: Mapping[str, torch.Tensor]) -> None:
    keys = tensors.keys()
    if {"emb_params", "string_to_param", "clip_l", "clip_g"} & set(keys) or any(
        k.startswith("string_to_param.") for k in keys
    ):
        raise LoraError(f"{filename} is a textual-inversion embedding, not a LoRA: "
                        "write its name in the prompt without <lora:...>.")
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.", "conditioner.")) for k in keys):
        raise LoraError(f"{filename} is a full model checkpoint, not a LoRA: choose it as the model instead.")


def _kind(filename: str, stem: str, parts: dict[str, torch.Tensor]) -> str:
    roles = set(parts)
    if {"down", "up"} <= roles:
        kind, needed = "lora", {"down", "up"}
    elif any(r.startswith("hada_") for r in roles):
        kind, needed = "loha", {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"}
    elif any(r.startswith("lokr_") for r in roles):
        kind, needed = "lokr", set()
        if "lokr_w1" not in roles and not {"lokr_w1_a", "lokr_w1_b"} <= roles:
            needed = {"lokr_w1"}
        if "lokr_w2" not in roles and not {"lokr_w2_a", "lokr_w2_b"} <= roles:
            needed |= {"lokr_w2"}
    elif roles & {"diff", "diff_b"}:
        kind, needed = "full", set()
    else:
        kind, needed = "lora", {"down", "up"}
    missing = needed - roles
    if missing:
        raise LoraError(f"{filename} is incomplete: its layer {stem} lacks {', '.join(sorted(missing))}. "
                        "Download it again.")
    return kind


# ---------------------------------------------------------------------------
# the maths


def _f32(t: torch.Tensor, device) -> torch.Tensor:
    return t.to(device=device, dtype=torch.float32)


def _tucker(core: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rebuild (out, in, kh, kw) from a Tucker core (r1, r2, kh, kw), a (r1, out) and b (r2, in)."""
    return torch.einsum("i j k l, i p, j r -> p r k l", core, a, b).contiguous()


def _delta_shape(kind: str, p: dict[str, torch.Tensor]) -> tuple[int, int] | None:
    """(numel of the weight delta, rank) without computing it; None when the factors do not chain."""
    if kind == "full":
        return (p["diff"].numel() if "diff" in p else 0), 0
    if kind == "lora":
        down, up = p["down"], p["up"]
        rank = down.shape[0]
        if up.ndim < 2 or up.shape[1] != (p["mid"].shape[0] if "mid" in p else rank):
            return None
        if "mid" in p:
            mid = p["mid"]
            if mid.ndim != 4 or mid.shape[1] != rank:
                return None
            return up.shape[0] * down.shape[1] * mid.shape[2] * mid.shape[3], rank
        return up.shape[0] * math.prod(down.shape[1:]), rank
    if kind == "loha":
        numel = None
        for i in ("1", "2"):
            a, b = p[f"hada_w{i}_a"], p[f"hada_w{i}_b"]
            if f"hada_t{i}" in p:
                t = p[f"hada_t{i}"]
                if t.ndim != 4 or t.shape[0] != a.shape[0] or t.shape[1] != b.shape[0]:
                    return None
                n = a.shape[1] * b.shape[1] * t.shape[2] * t.shape[3]
            else:
                if a.ndim != 2 or a.shape[1] != b.shape[0]:
                    return None
                n = a.shape[0] * math.prod(b.shape[1:])
            if numel is not None and n != numel:
                return None
            numel = n
        return numel, p["hada_w1_b"].shape[0]
    if kind == "lokr":
        sizes = []
        for i in ("1", "2"):
            if f"lokr_w{i}" in p:
                sizes.append(p[f"lokr_w{i}"].numel())
                continue
            a, b = p[f"lokr_w{i}_a"], p[f"lokr_w{i}_b"]
            if i == "2" and "lokr_t2" in p:
                t = p["lokr_t2"]
                if t.ndim != 4 or t.shape[0] != a.shape[0] or t.shape[1] != b.shape[0]:
                    return None
                sizes.append(a.shape[1] * b.shape[1] * t.shape[2] * t.shape[3])
            else:
                if a.shape[1] != b.shape[0]:
                    return None
                sizes.append(a.shape[0] * math.prod(b.shape[1:]))
        rank = p["lokr_w1_b"].shape[0] if "lokr_w1_b" in p else p["lokr_w2_b"].shape[0] if "lokr_w2_b" in p else 0
        return sizes[0] * sizes[1], rank
    return None


def _fits(module: torch.nn.Module, kind: str, p: dict[str, torch.Tensor]) -> bool:
    """Whether these factors make a change of exactly this layer's size."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or ("alpha" in p and p["alpha"].numel() != 1):
        return False
    try:
        shape = _delta_shape(kind, p)
    except IndexError:  # a factor with too few dimensions
        return False
    if shape is None or (shape[0] and shape[0] != weight.numel()):
        return False
    if "diff_b" in p and (getattr(module, "bias", None) is None or p["diff_b"].numel() != module.bias.numel()):
        return False
    if "dora" in p:
        out, inn = weight.shape[0], weight.shape[1] if weight.ndim > 1 else 1
        if p["dora"].numel() not in (out, inn):
            return False
    return True


def _delta(patch: _Patch, base: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The change to the layer's weight (shaped like base) and bias, float32, before the user's weight."""
    p, device = patch.tensors, base.device
    bias = _f32(p["diff_b"], device).reshape(-1) if "diff_b" in p else None
    if patch.kind == "full":
        delta = _f32(p["diff"], device).reshape(base.shape) if "diff" in p else torch.zeros_like(base)
        return delta, bias
    if patch.kind == "lora":
        down, up = _f32(p["down"], device), _f32(p["up"], device)
        if "mid" in p:
            delta = _tucker(_f32(p["mid"], device), up.flatten(1).T, down.flatten(1))
        else:
            delta = up.flatten(1) @ down.flatten(1)
        rank = down.shape[0]
    elif patch.kind == "loha":
        halves = []
        for i in ("1", "2"):
            a, b = _f32(p[f"hada_w{i}_a"], device), _f32(p[f"hada_w{i}_b"], device)
            if f"hada_t{i}" in p:
                halves.append(_tucker(_f32(p[f"hada_t{i}"], device), a, b))
            else:
                halves.append(a @ b.flatten(1))
        delta = halves[0] * halves[1]
        rank = p["hada_w1_b"].shape[0]
    else:  # lokr
        if "lokr_w1" in p:
            w1 = _f32(p["lokr_w1"], device)
        else:
            w1 = _f32(p["lokr_w1_a"], device) @ _f32(p["lokr_w1_b"], device)
        if "lokr_w2" in p:
            w2 = _f32(p["lokr_w2"], device)
        elif "lokr_t2" in p:
            w2 = _tucker(_f32(p["lokr_t2"], device), _f32(p["lokr_w2_a"], device), _f32(p["lokr_w2_b"], device))
        else:
            w2 = _f32(p["lokr_w2_a"], device) @ _f32(p["lokr_w2_b"], device).flatten(1)
        if w2.ndim == 4:
            w1 = w1[:, :, None, None]
        delta = torch.kron(w1, w2)
        factorised = "lokr_w1_b" in p or "lokr_w2_b" in p
        rank = (p["lokr_w1_b"] if "lokr_w1_b" in p else p["lokr_w2_b"]).shape[0] if factorised else 0
    delta = delta.reshape(base.shape)
    if "alpha" in p and rank:
        delta = delta * (float(p["alpha"].float().reshape(-1)[0]) / rank)
    if "dora" in p:
        delta = _decompose(base, delta, _f32(p["dora"], device))
    return delta, bias


def _decompose(base: torch.Tensor, delta: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """DoRA: the change that takes base to (base + delta) rescaled to the trained norms.

    The norms are per input column when the magnitude has shape (1, in, ...) (LyCORIS'
    default, A1111's convention), else per output row (PEFT, LyCORIS ``wd_on_out``).
    """
    merged = base + delta
    out, inn = base.shape[0], base.shape[1] if base.ndim > 1 else 1
    if inn != out:
        per_column = magnitude.numel() == inn
    else:  # square: the stored shape tells, (1, in) per column, (out,) or (out, 1) per row
        per_column = magnitude.ndim >= 2 and magnitude.shape[0] == 1 and inn > 1
    if per_column:
        dims = [d for d in range(merged.ndim) if d != 1]
        shape = [1, inn] + [1] * (merged.ndim - 2)
    else:
        dims = list(range(1, merged.ndim))
        shape = [out] + [1] * (merged.ndim - 1)
    norm = torch.linalg.vector_norm(merged, dim=dims, keepdim=True) + torch.finfo(torch.float32).eps
    return merged * (magnitude.reshape(shape) / norm) - base


# ---------------------------------------------------------------------------
# identity and families


def _identity(use: LoraUse) -> tuple:
    path = Path(use.path)
    try:
        stat = os.stat(path)
    except OSError as error:
        reason = "it is no longer there" if isinstance(error, FileNotFoundError) else (error.strerror or str(error))
        raise LoraError(f"The LoRA {path.name} could not be read: {reason}. Choose another LoRA.") from error
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, float(use.unet), float(use.text))


def guess_families(groups: Mapping[str, Mapping[str, torch.Tensor]], metadata: Mapping[str, str]) -> set[str]:
    """The model families a LoRA may be for, from its metadata, names and (real-size) widths; empty: unknown."""
    base = " ".join(metadata.get(k, "") for k in ("ss_base_model_version", "modelspec.architecture")).lower()
    stems = list(groups)
    if any(name in base for name in ("flux", "sd3", "stable-diffusion-3", "pixart", "hunyuan", "auraflow")):
        return {"other"}
    if "xl" in base:
        return {"sdxl"}
    if "v2" in base or metadata.get("ss_v2") == "True":
        return {"sd2"}
    if "v1" in base:
        return {"sd1"}
    if any(s.startswith(("lora_te1_", "lora_te2_", "text_encoder_2.")) or "label_emb" in s for s in stems):
        return {"sdxl"}
    if any(("double_blocks" in s or "single_blocks" in s or s.startswith(("transformer.", "lora_transformer_")))
           for s in stems):
        return {"other"}
    widths = set()
    for stem, parts in groups.items():
        first = parts.get("down")
        if first is None or first.ndim != 2:
            continue
        if ("attn2" in stem and "to_k" in stem) or ("lora_te_" in stem or stem.startswith("text_encoder.")):
            widths.add(first.shape[1])
    real = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
    found = {real[w] for w in widths if w in real}
    if len(found) == 1:
        return found
    has_text = any(s.startswith(("lora_te_", "text_encoder.")) for s in stems)
    ldm_unet = any(s.startswith(("lora_unet_input_blocks_", "lora_unet_output_blocks_", "lora_unet_middle_block_"))
                   for s in stems)
    if has_text:
        return {"sd1", "sd2"}
    if ldm_unet:
        return {"sdxl"}  # kohya names SDXL UNets in the SGM layout, SD 1.x/2.x ones in diffusers'
    return set()


def refuse_other_family(path: Path, family: str) -> None:
    """Raise LoraError when the file's header names a model family other than `family` and either is a
    flow-matching family (whose layers may have the same sizes as another's, so fitting cannot tell)."""
    try:
        info = identify(path)
    except Exception:  # noqa: BLE001 - read_lora_file says what is wrong with the file
        return
    if info.kind != "lora" or info.family in (Family.UNKNOWN, family) or not (
            specs.is_flow(info.family) or specs.is_flow(family)):
        return
    lora, model = _label(info.family.value), _label(family)
    raise LoraError(f"{path.name} is a LoRA for {lora}; the loaded model is {model}. "
                    f"Choose {_article(model)} {model} LoRA or {_article(lora)} {lora} model.")


def _label(family: str) -> str:
    spec = specs.spec(family)
    return FAMILY_NAMES.get(family) or (spec.label if spec else family)


def _family_text(families: set[str]) -> str:
    if families == {"sd1", "sd2"}:
        return "SD 1.x or 2.x"
    return " or ".join(FAMILY_NAMES.get(f, f) for f in sorted(families))


def _article(text: str) -> str:
    return "an" if text.startswith("SD") else "a"  # "an SD 1.x", "an SDXL": the letters are read out
