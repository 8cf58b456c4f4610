"""ControlNet guidance: find and load ControlNets, and give a pass's pipeline their control pictures.

A request's controls (desktop/core/control.py) become a `Guidance` before the first pass: each ControlNet found
("demo", a file or diffusers folder, or a name in the ControlNet folders: desktop/core/controlnets.py), loaded
once and kept by the ModelManager like the upscalers (kind "controlnet", in the memory the model's weights are in:
system memory when it is offloaded), checked against the loaded model's family before it is kept, and each control
picture preprocessed when asked (desktop/engine/preprocess.py). Making room for one never unloads the checkpoint
or a ControlNet the run already holds. `Guidance.attach` then turns a pass's Prepared into the ControlNet
pipeline's: extra ("controlnet", the net, or one MultiControlNetModel for several) and the control pictures fitted
to what the pass generates: resized to the picture's size and padded to the 8-pixel grid as the pass's own inputs
are, placed where the photo is on an outpaint's enlarged canvas (outpaint_control), cut as the inpaint "only
masked" crop is cut, and upscaled and cut as the hires fix's first pass is for its second pass.

Weights are the ControlNets' conditioning scales; start and end the fraction of the steps they act on. A control
whose start is not before its end never acts: it runs at scale 0 (diffusers refuses start >= end).

Single files are read here (safetensors, or a pickle with weights_only=True and no fallback) and handed to
diffusers' ``from_single_file`` with a local config: the sidecar ``<name>.config/`` when there is one, else one
read off the weights' shapes (blocks, widths, attention layers), so no config is downloaded.

SDXL "union" ControlNets (ControlNetUnionModel, such as xinsir/controlnet-union-sdxl-1.0 and its promax variant)
are read from their diffusers folder (diffusers reads no single-file union ControlNet: such a file is refused with a
sentence) and run by diffusers' ControlNet union pipelines, told what each picture shows by its control's type
(UNION_MODES, xinsir's numbering). Several controls use one MultiControlNetUnionModel with one picture per entry,
the same net as often as controls name it (loaded once), rather than one net given a list of pictures: in that
form diffusers neither scales the net's output by the weights nor stops it where the controls end, so a control at
weight 0 would still act. A union ControlNet and an ordinary one cannot run together (diffusers has no pipeline for
both): that is refused with a sentence.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from desktop.core import controlnets, preprocessors
from desktop.core.control import DEMO_CONTROLNET, Control
from desktop.core.errors import OutOfMemory, SfumatoError
from desktop.core.geometry import Extent
from desktop.core.progress import TaskState
from desktop.core.request import Mode

from . import inpaint, tiny_control, tuning

KIND = "controlnet"  # the ModelManager kind ControlNets are held under
DEMO_NAME = "demo"
_MULTI: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # ids of nets -> their MultiControlNetModel


class ControlNetError(SfumatoError):
    """A ControlNet could not be used; the message says why and what to do."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"Could not use the ControlNet {name}: {reason}")
        self.name, self.reason = name, reason


# -- finding and loading ---------------------------------------------------------------------------------------


def resolve(ref: str, models_folders=()) -> Path:
    """The file or diffusers folder of a ControlNet reference: "demo", a path, or a name in the ControlNet folders."""
    if ref == DEMO_CONTROLNET:
        return tiny_control.demo("sd1")
    path = Path(ref).expanduser()
    if path.exists():
        return path
    found = controlnets.find_controlnet(ref, models_folders)
    if found is None:
        raise ControlNetError(ref, f"there is no such file or folder, and no ControlNet of that name in "
                                   f"{controlnets.own_folder()} or the ControlNet / controlnet folders of your other "
                                   "apps. Give its path, or put it there.")
    return found


def load(ref: str, manager, state: TaskState, models_folders=(), spare=()):
    """The ControlNetModel of `ref`, from the ModelManager when it is still loaded, else from its file. `spare`:
    ModelManager keys never unloaded to make room for it (the checkpoint it is loaded for)."""
    path = resolve(ref, models_folders)
    current = manager.current
    pool = tuning.pool(manager.device, current.plan if current is not None else tuning.Plan())
    return _load(path, _name(ref, path), manager, state, pool, spare)


def _name(ref: str, path: Path) -> str:
    return DEMO_NAME if ref == DEMO_CONTROLNET else controlnets.display_name(path)


def _key(path: Path) -> tuple[str, str]:
    """The ModelManager key a ControlNet is held under."""
    return KIND, str(path.resolve())


def _load(path: Path, name: str, manager, state: TaskState, pool: str, spare=(), accept=None):
    """Load and keep the ControlNet in `pool` (tuning.pool of the model it is for: the GPU's, or system memory when
    that model is offloaded). `accept(net)` raises for a net that cannot be used: it is then not kept."""
    _, key = _key(path)
    held = manager.held(KIND, key)
    if held is not None:
        if accept is not None:
            accept(held)
        return held
    state.status(f"Loading the ControlNet {name}...")
    net = read(path, name, manager.device.dtype)
    if accept is not None:
        accept(net)  # refused before it is kept: a ControlNet of another family is not left loaded
    size = sum(p.numel() * p.element_size() for p in net.parameters())
    manager.make_room(pool, size, name, state, spare)
    manager.keep(KIND, key, net, size, pool, name)
    return net


def read(path: Path, name: str, dtype: torch.dtype):
    """A ControlNetModel from a diffusers folder or a single file; ControlNetError with one sentence otherwise."""
    from diffusers import ControlNetModel

    try:
        if path.is_dir():
            config = _folder_config(path, name)
            if config.get("_class_name") == "ControlNetUnionModel":
                from diffusers.models.controlnets import ControlNetUnionModel

                if config.get("addition_embed_type") != "text_time" or not config.get("addition_time_embed_dim"):
                    raise ControlNetError(name, "its config.json is not that of an SDXL \"union\" ControlNet, the "
                                                "only kind diffusers runs. Download the ControlNet again.")

                return ControlNetUnionModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True).eval()
            return ControlNetModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True).eval()
        state = _read_weights(path, name)
        sidecar = path.with_name(path.stem + ".config")  # as a checkpoint's sidecar configs (desktop/engine/tiny.py)
        if (sidecar / "config.json").is_file():
            return _from_single_file(state, sidecar, dtype)
        state = _diffusers_layout(state, name)
        with tempfile.TemporaryDirectory(prefix="sfumato-controlnet-") as folder:
            Path(folder, "config.json").write_text(json.dumps(infer_config(state, name)), encoding="utf-8")
            return _from_single_file(state, Path(folder), dtype)
    except (ControlNetError, OutOfMemory):
        raise
    except torch.OutOfMemoryError:
        raise OutOfMemory(f"The ControlNet {name} does not fit in memory.") from None
    except Exception as error:  # noqa: BLE001 - any loader failure becomes one clear sentence
        from .models import _explain

        raise ControlNetError(name, _explain(error)) from error


_UNION = ("it is an SDXL \"union\" ControlNet (several control types in one file) as a single file, which diffusers "
          "cannot read. Use its diffusers folder (config.json and diffusion_pytorch_model.safetensors, as "
          "xinsir/controlnet-union-sdxl-1.0 is shared), or a ControlNet of one type.")


def _from_single_file(state: dict, config: Path, dtype: torch.dtype):
    from diffusers import ControlNetModel

    return ControlNetModel.from_single_file(state, config=str(config), torch_dtype=dtype,
                                            local_files_only=True).eval()


def _folder_config(path: Path, name: str) -> dict:
    if not controlnets.is_diffusers_folder(path):
        raise ControlNetError(name, "it is a folder without a ControlNet's config.json and "
                                    "diffusion_pytorch_model.safetensors. Give the ControlNet's file or folder.")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ControlNetError(name, "its config.json cannot be read. Download the ControlNet again.") from None
    if not isinstance(config, dict) or config.get("_class_name") not in ("ControlNetModel", "ControlNetUnionModel"):
        raise ControlNetError(name, "its config.json is not a ControlNet's. Give the ControlNet's file or folder.")
    return config


def _read_weights(path: Path, name: str) -> dict:
    """The state dict of a single file: safetensors, or a pickle read with weights_only=True (never without)."""
    if path.suffix.lower() not in controlnets.SUFFIXES:
        raise ControlNetError(name, f"Sfumato reads ControlNets from {', '.join(controlnets.SUFFIXES)} files and "
                                    "diffusers folders.")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        text = str(error).lower()
        if "weights only load failed" in text or "weights_only" in text:
            raise ControlNetError(name, "the file contains code, not only weights, so it was not opened. Use a "
                                        ".safetensors version of it.") from None
        raise ControlNetError(name, "the file is damaged or incomplete. Download it again.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ControlNetError(name, "it holds no weights Sfumato can read. Give a ControlNet file.")
    if any(k.startswith(("task_embedding", "control_type_proj", "transformer_layes")) for k in state):
        raise ControlNetError(name, _UNION)
    if not any(k.startswith(("control_model.", "controlnet_cond_embedding.", "input_hint_block.")) for k in state):
        raise ControlNetError(name, "it is not a ControlNet (it has no control picture input). Give a ControlNet file.")
    return state


def _diffusers_layout(state: dict, name: str) -> dict:
    """An original-layout (``control_model.*``) SD ControlNet's weights in diffusers' keys, by diffusers' converter."""
    if "time_embedding.linear_1.weight" in state:
        return state
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    stripped = {k.removeprefix("control_model."): v for k, v in state.items()}
    ops = sorted(int(m[1]) for k in stripped if (m := re.fullmatch(r"input_blocks\.(\d+)\.0\.op\.weight", k)))
    if not ops:
        raise ControlNetError(name, "its weights are not laid out as a ControlNet's. The file may be damaged.")
    return convert_controlnet_checkpoint(state, {"layers_per_block": ops[0] - 1})


def infer_config(state: dict, name: str = "") -> dict:
    """A ControlNetModel config read off a diffusers-layout state dict's shapes: what the sizes say (blocks,
    widths, attention layers, SDXL's added embedding), and the head counts of SD 1.x (8) and SD 2.x / SDXL (one
    per 64 channels), which the weights do not show."""
    try:
        blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("down_blocks.")})
        channels = [int(state[f"down_blocks.{b}.resnets.0.conv2.weight"].shape[0]) for b in blocks]
        per_block = len({k.split(".")[3] for k in state if k.startswith("down_blocks.0.resnets.")})
        types, layers = [], []
        for b in blocks:
            found = {k.split(".")[5] for k in state if k.startswith(f"down_blocks.{b}.attentions.0.transformer_blocks.")}
            types.append("CrossAttnDownBlock2D" if found else "DownBlock2D")
            layers.append(max(1, len(found)))
        cross = int(state[next(k for k in state if k.endswith("attn2.to_k.weight"))].shape[1])
        linear = state[next(k for k in state if k.endswith("proj_in.weight"))].ndim == 2
        hint = [int(state["controlnet_cond_embedding.conv_in.weight"].shape[0])]
        count = len({k.split(".")[2] for k in state if k.startswith("controlnet_cond_embedding.blocks.")})
        hint += [int(state[f"controlnet_cond_embedding.blocks.{i}.weight"].shape[0]) for i in range(1, count, 2)]
        config = {
            "_class_name": "ControlNetModel",
            "in_channels": int(state["conv_in.weight"].shape[1]),
            "conditioning_channels": int(state["controlnet_cond_embedding.conv_in.weight"].shape[1]),
            "block_out_channels": channels,
            "down_block_types": types,
            "layers_per_block": per_block,
            "cross_attention_dim": cross,
            "attention_head_dim": 8 if cross == 768 else [max(1, c // 64) for c in channels],
            "use_linear_projection": linear,
            "transformer_layers_per_block": layers,
            "conditioning_embedding_out_channels": hint,
            "mid_block_type": "UNetMidBlock2DCrossAttn" if any(k.startswith("mid_block.attentions.") for k in state)
            else "UNetMidBlock2D",
        }
        if "add_embedding.linear_1.weight" in state:
            config.update(addition_embed_type="text_time", addition_time_embed_dim=256,
                          projection_class_embeddings_input_dim=int(state["add_embedding.linear_1.weight"].shape[1]))
        return config
    except (KeyError, StopIteration, IndexError, ValueError):
        raise ControlNetError(name, "its weights are not laid out as a ControlNet's. The file may be damaged.") from None


# -- family ------------------------------------------------------------------------------------------------------


def family_name(config) -> str:
    if config.get("addition_embed_type") == "text_time":
        return "SDXL"
    return "SD 2.x" if config.get("cross_attention_dim") == 1024 else "SD 1.x"


def check_family(net, name: str, unet, model_name: str) -> None:
    """Refuse a ControlNet made for another family than the loaded model's, naming both."""
    mine, theirs = net.config.get("cross_attention_dim"), unet.config.get("cross_attention_dim")
    xl_net = net.config.get("addition_embed_type") == "text_time"
    xl_unet = unet.config.get("addition_embed_type") == "text_time"
    if mine == theirs and xl_net == xl_unet:
        return
    wanted = family_name(unet.config)
    if name == DEMO_NAME:
        raise ControlNetError(name, f"the demo ControlNet works with the demo model only, and {model_name} is an "
                                    f"{wanted} model. Choose a ControlNet made for {wanted}.")
    raise ControlNetError(name, f"it is an {family_name(net.config)} ControlNet (cross-attention width {mine}) and "
                                f"{model_name} is an {wanted} model (width {theirs}). Choose a ControlNet made for "
                                f"{wanted}.")


# -- union ControlNets ------------------------------------------------------------------------------------------

# A control's type -> the control mode a union ControlNet is told (xinsir's numbering, as ComfyUI's
# SetUnionControlNetType: 0 openpose, 1 depth, 2 hed/pidi/scribble/ted, 3 canny/lineart/anime_lineart/mlsd,
# 4 normal, 5 segment, 6 tile, 7 repaint).
UNION_MODES = {"canny": 3, "lineart": 3, "scribble": 2, "depth": 1}


def is_union(net) -> bool:
    return type(net).__name__ == "ControlNetUnionModel"


def union_mode(control: Control, name: str) -> int:
    """The control mode a union ControlNet is told for `control`; ControlNetError when its type has none."""
    mode = UNION_MODES.get(control.type)
    if mode is None:
        raise ControlNetError(name, "it is a \"union\" ControlNet, which must be told what the control picture "
                                    "shows: choose the control's type (canny, lineart, scribble or depth) instead "
                                    f"of {control.type}.")
    return mode


# -- control pictures and the pipeline ------------------------------------------------------------------------------


def control_picture(control: Control, models_folders=(), state: TaskState | None = None,
                    models=None) -> np.ndarray:
    """The picture the ControlNet sees (HxWx3 uint8): the type's preprocessor's output when the control asks for it
    (desktop/engine/preprocess.py), else the picture as it is, transparent parts black (no line, no edge)."""
    image = control.image
    if control.preprocess and control.type != "none":
        from . import preprocess  # OpenCV and transformers only when a control is preprocessed

        return preprocess.run(control.type, image, models_folders, state, models)  # depth: held by `models`
    if image.shape[2] == 4:
        alpha = image[..., 3:].astype(np.float32) / 255.0
        image = (image[..., :3].astype(np.float32) * alpha + 0.5).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


@dataclass
class Guidance:
    """The ControlNets of a run with their control pictures and settings, for every pass."""

    nets: list  # ControlNetModel per control
    pictures: list  # HxWx3 uint8, as the ControlNet sees them (preprocessed)
    scales: list[float]
    starts: list[float]
    ends: list[float]
    params: tuple  # infotext: ("ControlNet 0", "Module: ..., Model: ...") pairs
    modes: tuple = ()  # union ControlNets: the control mode of each picture (UNION_MODES); () for ordinary ones

    def extras(self) -> tuple:
        extra = "controlnet_union" if self.modes else "controlnet"  # models._PIPELINES: the union pipelines
        if len(self.nets) == 1:
            return ((extra, self.nets[0]),)
        key = (extra, *(id(net) for net in self.nets))
        multi = _MULTI.get(key)
        if multi is None:
            from diffusers.models.controlnets import MultiControlNetModel, MultiControlNetUnionModel

            multi = (MultiControlNetUnionModel if self.modes else MultiControlNetModel)(self.nets)
            _MULTI[key] = multi
        return ((extra, multi),)

    def attach(self, prepared, request, hires_plan=None):
        """`prepared` (generate.Prepared) as the ControlNet pipeline's: its extras and the control pictures fitted
        to what it generates (see the module's notes). `hires_plan`: the hires fix's second pass."""
        from .generate import _resize

        grid, picture = _frame(prepared)
        fitted = []
        for image in self.pictures:
            if request.mode is Mode.OUTPAINT:
                image = outpaint_control(image, request)
            crop = getattr(prepared, "crop", None)
            if crop is not None:  # the inpaint "only masked" crop, in the input picture's pixels
                init = request.images.init
                image = _resize(image, Extent(init.shape[1], init.shape[0]))[crop.slices]
            if hires_plan is not None:
                from .hires import upscale_picture

                image = upscale_picture(_resize(image, request.extent), "Lanczos", hires_plan.upscaled,
                                        hires_plan.target)
            image = _resize(image, picture)
            fitted.append(Image.fromarray(inpaint.pad_to_grid(image) if Extent(*picture) != grid else image))
        several = len(self.nets) > 1
        key = "image" if prepared.task == "txt2img" and not self.modes else "control_image"
        inputs = {
            **prepared.inputs,
            **({"control_mode": list(self.modes)} if self.modes else {}),
            key: fitted if several or self.modes else fitted[0],
            "controlnet_conditioning_scale": self.scales if several else self.scales[0],
            "control_guidance_start": self.starts if several else self.starts[0],
            "control_guidance_end": self.ends if several else self.ends[0],
        }
        return dataclasses.replace(prepared, inputs=inputs, extras=tuple(prepared.extras) + self.extras())


def prepare(request, models, folders, state: TaskState, loaded) -> Guidance | None:
    """Load the request's ControlNets (each checked against the loaded model) and make their control pictures."""
    if not request.controls:
        return None
    from .models import CHECKPOINT

    unet = next(iter(loaded.pipelines.values())).unet
    pool = tuning.pool(models.device, loaded.plan)
    spare = {(CHECKPOINT, loaded.ref)}  # the checkpoint, and every ControlNet of this run already loaded
    nets, pictures, scales, starts, ends, params, modes, names = [], [], [], [], [], [], [], []
    for index, control in enumerate(request.controls):
        path = resolve(control.model, folders)
        name = _name(control.model, path)
        net = _load(path, name, models, state, pool, frozenset(spare),
                    accept=lambda net, name=name: check_family(net, name, unet, loaded.name))
        spare.add(_key(path))
        nets.append(net)
        names.append(name)
        modes.append(union_mode(control, name) if is_union(net) else None)
        if (modes[0] is None) != (modes[-1] is None):  # diffusers has no pipeline for both kinds at once
            union, other = (names[0], name) if modes[-1] is None else (name, names[0])
            raise ControlNetError(union, f"it is a \"union\" ControlNet, which cannot run together with an "
                                         f"ordinary ControlNet such as {other}. Use union ControlNets only, or "
                                         "ordinary ones only.")
        pictures.append(control_picture(control, folders, state, models))
        acts = control.start < control.end  # diffusers refuses start >= end: such a control never acts
        scales.append(float(control.weight) if acts else 0.0)
        starts.append(float(control.start) if acts else 0.0)
        ends.append(float(control.end) if acts else 1.0)
        params.append((f"ControlNet {index}", infotext_value(control, controlnets.infotext_name(path, name))))
    modes = tuple(modes) if None not in modes else ()
    return Guidance(nets, pictures, scales, starts, ends, tuple(params), modes)


def infotext_value(control: Control, model: str) -> str:
    """A1111's value of "ControlNet N"."""
    return (f"Module: {preprocessors.a1111_module(control.type)}, Model: {model}, Weight: {control.weight:g}, "
            f"Guidance Start: {control.start:g}, Guidance End: {control.end:g}")


def _frame(prepared) -> tuple[Extent, Extent]:
    """(the size the pass generates, on the grid; the part of it that is the picture)."""
    inputs = prepared.inputs
    if "width" in inputs:
        grid = Extent(inputs["width"], inputs["height"])
    else:
        image = inputs["image"]
        image = image[0] if isinstance(image, list) else image
        grid = Extent(image.shape[-1] * 8, image.shape[-2] * 8) if isinstance(image, torch.Tensor) \
            else Extent(*image.size)
    shown = prepared.shown
    return grid, Extent(max(1, round(grid.width * shown[0])), max(1, round(grid.height * shown[1])))


def outpaint_control(image: np.ndarray, request) -> np.ndarray:
    """An outpaint's control picture on its enlarged canvas (`request` resolved: its size is the canvas's).

    A picture the size of the init image (one made from the photo) is placed where the photo is, at the left and
    top margins, on black (no line, no edge) and not stretched, so it lines up with the photo; a picture the size
    of the enlarged canvas is used as it is; a picture of any other size is resized to the canvas."""
    from .generate import _resize

    canvas = request.extent
    h, w = request.images.init.shape[:2]
    if image.shape[:2] != (h, w) or (image.shape[1], image.shape[0]) == tuple(canvas):
        return _resize(image, canvas)
    margins = request.outpaint
    placed = np.zeros((canvas.height, canvas.width, image.shape[2]), np.uint8)
    placed[margins.top:margins.top + h, margins.left:margins.left + w] = image
    return placed
