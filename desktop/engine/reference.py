"""Reference pictures through IP-Adapter: steer a generation's content or style with pictures.

prepare() finds each reference's adapter file and the CLIP image encoder it needs (desktop/core/references.py),
loads the encoder as an auxiliary model of the ModelManager (held under "image encoder", under the memory
budget, shared by every adapter and pipeline) and encodes the pictures once per run, so both passes of the
hires fix and every pipeline reuse them. use() loads the adapters into the pipeline's UNet with diffusers'
own loader (``pipe.load_ip_adapter``) and sets their scales; the pipeline gets the encodings as
``ip_adapter_image_embeds``. release() takes them out again (``pipe.unload_ip_adapter``, then the UNet's own
attention processors back): the UNet is shared by every pipeline of the model (from_pipe), so an adapter
left in it would change, or break, every later run and every later pipeline.

References that share an adapter file, a mode and a weight are one adapter with several pictures (their
image tokens side by side); the others load the file again as a further adapter, so every reference keeps
its own weight and mode. "content" scales every layer by the weight; "style" only InstantStyle's style
layers (core.references.style_scale).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from desktop.core import controlnets, paths
from desktop.core import references as files
from desktop.core.control import Reference
from desktop.core.progress import TaskState
from desktop.core.references import ReferenceError

from . import tuning
from .models import CHECKPOINT

ENCODER = "image encoder"  # the kind the image encoders are held under in the ModelManager


@dataclass(frozen=True)
class Group:
    """One adapter of the run: the references that share its file, mode and weight."""

    adapter: Path
    mode: str
    weight: float
    embeds: torch.Tensor  # the pictures' encodings: (1, pictures, ...), after the zero ones when guided


@dataclass(frozen=True)
class Plan:
    groups: tuple[Group, ...]
    scales: tuple  # set_ip_adapter_scale's value per group
    params: tuple[tuple[str, str], ...]  # the infotext's "IP-Adapter N" entries

    @property
    def key(self) -> tuple[Path, ...]:
        return tuple(group.adapter for group in self.groups)


@dataclass
class _Applied:
    key: tuple[Path, ...]
    pipe: object  # the pipeline they were loaded through
    saved: dict  # the UNet's attention processors before


_applied: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # UNet -> _Applied


def prepare(references: tuple[Reference, ...], models, folders, state: TaskState, guided: bool) -> Plan | None:
    """Find the adapters and encoder of the current model's references and encode their pictures; None
    without references. Raises ReferenceError with a sentence for a missing or unsuitable file."""
    if not references:
        return None
    loaded = models.current
    unet = next(iter(loaded.pipelines.values())).unet
    width = unet.config.cross_attention_dim
    adapters, layouts = [], {}
    for ref in references:
        path = _adapter_path(ref.adapter, loaded, unet, folders)
        if path not in layouts:
            layouts[path] = _check(files.read_adapter(path), path, width)
        adapters.append(path)
    encoders = {files.find_encoder(path, layout, folders) for path, layout in layouts.items()}
    if len(encoders) > 1:
        raise ReferenceError("The references' IP-Adapters need different image encoders; use adapters made for "
                             "one encoder (all ViT-H, or all ViT-bigG) together.")
    encoder, extractor = _encoder(encoders.pop(), models, state)
    up = [len(getattr(block, "attentions", ())) for block in unet.up_blocks]
    grouped: dict[tuple, list[Image.Image]] = {}
    for ref, path in zip(references, adapters, strict=True):
        grouped.setdefault((path, ref.mode, float(ref.weight)), []).append(_picture(ref.image))
    groups, scales = [], []
    with torch.inference_mode():
        for (path, mode, weight), pictures in grouped.items():
            embeds = _encode(encoder, extractor, pictures, layouts[path].hidden_states, guided)
            groups.append(Group(path, mode, weight, embeds.to(unet.dtype)))
            scales.append(files.style_scale(loaded.family, up, weight) if mode == "style" else weight)
    params = files.params((_name(path), _short_hash(path), float(ref.weight), ref.mode)
                          for ref, path in zip(references, adapters, strict=True))
    return Plan(tuple(groups), tuple(scales), params)


def use(pipe, plan: Plan | None) -> dict:
    """The pipeline inputs of the references, with their adapters loaded into `pipe`'s UNet; {} for none."""
    if plan is None:
        return {}
    applied = _applied.get(pipe.unet)
    if applied is None or applied.key != plan.key:
        release_unet(pipe.unet)
        _load(pipe, plan)
    pipe.set_ip_adapter_scale(list(plan.scales))
    return {"ip_adapter_image_embeds": [group.embeds for group in plan.groups]}


def loaded(unet) -> bool:
    """Whether IP-Adapters are in `unet` now (between use() and release())."""
    return unet in _applied


def release() -> None:
    """Take every adapter out of the UNets they were loaded into (after each run)."""
    for unet in list(_applied.keys()):
        release_unet(unet)


def release_unet(unet) -> None:
    applied = _applied.pop(unet, None)
    if applied is None:
        return
    applied.pipe.unload_ip_adapter()
    unet.set_attn_processor(applied.saved)


def _load(pipe, plan: Plan) -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet = pipe.unet
    saved = dict(unet.attn_processors)
    # The loader re-creates each processor it keeps by its class: a sliced one cannot be, so plain ones first.
    unet.set_attn_processor(AttnProcessor2_0())
    _applied[unet] = _Applied(plan.key, pipe, saved)
    try:
        pipe.load_ip_adapter([str(path.parent) for path in plan.key], subfolder=[""] * len(plan.key),
                             weight_name=[path.name for path in plan.key], image_encoder_folder=None,
                             local_files_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged or unsuitable file becomes one sentence
        release_unet(unet)
        name = plan.key[0].name if len(set(plan.key)) == 1 else "files"
        raise ReferenceError(f"Could not load the IP-Adapter {name}: {_explain(error)}") from error


def _adapter_path(name: str, loaded, unet, folders) -> Path:
    if name.strip().lower() != files.DEMO:
        return files.find_adapter(name, folders)
    width = unet.config.cross_attention_dim
    if width in files.FAMILY_WIDTHS:
        example = f" (such as {files.EXAMPLES[width]})" if width in files.EXAMPLES else ""
        raise ReferenceError(f"The demo IP-Adapter only works with the demo model. Choose an IP-Adapter file for "
                             f"{files.models_of_width(width)}{example} and put it in {files.own_folder()}.")
    from . import tiny_reference

    return tiny_reference.build(paths.demo_model_dir(), "sdxl" if loaded.family == "sdxl" else "sd1",
                                dict(unet.config)).adapter


def _check(layout: files.AdapterLayout, path: Path, width: int) -> files.AdapterLayout:
    if layout.cross_width != width:
        model = files.models_of_width(width)
        raise ReferenceError(f"{path.name} is an IP-Adapter for {files.models_of_width(layout.cross_width)}; the "
                             f"model is one of the {model}. Choose an IP-Adapter made for {model}.")
    return layout


def _encoder(folder: Path, models, state: TaskState):
    """The image encoder `folder` (or single file) and its picture preparation, loaded once and held by the
    ModelManager."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    key = str(folder)
    held = models.held(ENCODER, key)
    if held is not None:
        return held
    loaded = models.current
    state.status(f"Loading the image encoder {folder.name}...")
    try:
        if folder.is_file():  # ComfyUI's single file: its config from its shapes
            from safetensors.torch import load_file
            from transformers import CLIPVisionConfig

            config = CLIPVisionConfig(**files.encoder_file_config(folder))
            encoder = CLIPVisionModelWithProjection.from_pretrained(None, config=config, state_dict=load_file(folder),
                                                                    dtype=models.device.dtype)
        else:
            encoder = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True,
                                                                    dtype=models.device.dtype)
    except Exception as error:  # noqa: BLE001
        raise ReferenceError(f"Could not load the image encoder {folder.name}: {_explain(error)}") from error
    encoder.requires_grad_(False).eval()
    size = _bytes(encoder)
    pool = tuning.pool(models.device, loaded.plan)
    models.make_room(pool, size, folder.name, state, spare={(CHECKPOINT, loaded.ref)})
    tuning.adopt(encoder, loaded.plan, models.device.device)
    side = encoder.config.image_size
    held = (encoder, CLIPImageProcessor(size=side, crop_size=side))
    models.keep(ENCODER, key, held, size, pool, folder.name)
    return held


def _encode(encoder, extractor, pictures: list[Image.Image], hidden: bool, guided: bool) -> torch.Tensor:
    """The pictures' encodings as diffusers' encode_image makes them: the image embedding (IP-Adapter) or the
    last-but-one hidden states (Plus), with the zero picture's (or zeros) before them when guided."""
    param = next(encoder.parameters())
    pixels = extractor(pictures, return_tensors="pt").pixel_values.to(param.device, param.dtype)
    if hidden:
        positive = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        negative = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    else:
        positive = encoder(pixels).image_embeds
        negative = torch.zeros_like(positive)
    positive, negative = positive[None], negative[None]
    return torch.cat([negative, positive]) if guided else positive


def _picture(image: np.ndarray) -> Image.Image:
    """RGB, centred on a white square (a transparent part of an RGBA layer is white, as it is shown): the image
    encoder sees the whole picture, and a thin one (a single stroke on a reference layer, 1x4000) is not first
    scaled to a 224-pixel short side (224x896000, seconds and gigabytes in CLIP's processor)."""
    if image.shape[2] == 3:
        rgb = np.asarray(image)
    else:
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        rgb = (image[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    height, width = rgb.shape[:2]
    side = max(height, width)
    square = np.full((side, side, 3), 255, np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top:top + height, left:left + width] = rgb
    return Image.fromarray(square)


def _bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _name(path: Path) -> str:
    return path.stem


def _short_hash(path: Path) -> str:
    """A1111's old-style model hash of the adapter file (controlnets.short_hash), as its ControlNet extension
    names every file of its models/ControlNet folder, IP-Adapters included: ``ip-adapter_sd15 [a1b2c3d4]``."""
    try:
        return controlnets.short_hash(path)
    except OSError:
        return ""  # the picture matters more than the hash in its metadata


def _explain(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    lowered = text.lower()
    if "size mismatch" in lowered or "shape" in lowered:
        text = "its weights do not match the model. It may be damaged or made for another model family"
    elif "header" in lowered or "deserializ" in lowered or "incomplete" in lowered:
        text = "the file is damaged or incomplete. Download it again"
    return text if text.endswith((".", "!", "?")) else text + "."
