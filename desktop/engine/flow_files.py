"""Single-file checkpoints of the flow-matching families, loaded offline.

Two forms, as people have them:

* a full file (transformer, text encoders and VAE in one, as ComfyUI's checkpoints
  folder holds FLUX.1 and SD3.5 ones): the family's pipeline ``from_single_file``;
* a transformer-only file (ComfyUI's ``diffusion_models`` folder; every Z-Image and
  FLUX.2 klein file, most FLUX.1 ones, and GGUF files): the transformer from the
  file, each text encoder and the VAE from its own file in a ``text_encoders`` (or
  ComfyUI's older ``clip``) and a ``vae`` folder beside the file or beside the
  folder it is in (``models/diffusion_models/x.safetensors`` finds
  ``models/text_encoders`` and ``models/vae``). Of the files there whose names fit
  (``clip_l*``, ``t5xxl*``, ``qwen_3*``, ``ae*``, ``flux2*vae*``, ...) the first whose
  shapes fit the model's config is used.

The configs come from the sidecar ``<name>.config`` folder beside the file, else
from Sfumato's bundled ones (desktop/engine/bundled_configs.py). The T5 and Qwen3
tokenizers are not bundled: they are taken from a ``tokenizers/t5xxl`` or
``tokenizers/qwen3`` folder found the same way as the text encoders, and their
absence is a sentence saying which files to put there.

fp8 safetensors (e4m3 / e5m2) load upcast to the working dtype; ComfyUI's
"scaled fp8" files (a ``scale_weight`` per layer) are refused. GGUF transformers
load through diffusers' GGUF quantizer (the ``gguf`` package) and stay quantized.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path

from desktop.core.errors import ModelLoadError, OutOfMemory

# The width every released FLUX.1 has; diffusers 0.42's converter assumes it (see _flux1_checkpoint).
FLUX1_WIDTH = 3072


@dataclass(frozen=True)
class Part:
    """A pipeline component that a transformer-only file leaves to a file of its own."""

    name: str  # the pipeline's component: "text_encoder_2"
    label: str  # "the T5-XXL text encoder"
    folders: tuple[str, ...]  # ComfyUI folders it lives in
    patterns: tuple[str, ...]  # lower-case file name patterns
    example: str  # the file name ComfyUI's guides use
    inside: tuple[str, ...] = ()  # key prefixes of this part in a full file


_TEXT = ("text_encoders", "clip")
_CLIP_L = Part("text_encoder", "the CLIP-L text encoder", _TEXT, ("*clip_l*",), "clip_l.safetensors",
               ("text_encoders.clip_l.",))
_T5 = ("*t5*xxl*",)  # t5xxl_fp16, t5xxl_fp8_e4m3fn, google_t5-v1_1-xxl_encoderonly, ...
_FLUX_AE = ("ae.*", "ae_*", "ae-*", "flux1*vae*", "flux_vae*", "flux-vae*")

PARTS: dict[str, tuple[Part, ...]] = {
    "flux1": (
        _CLIP_L,
        Part("text_encoder_2", "the T5-XXL text encoder", _TEXT, _T5, "t5xxl_fp16.safetensors",
             ("text_encoders.t5xxl.",)),
        Part("vae", "the FLUX.1 VAE", ("vae",), _FLUX_AE, "ae.safetensors", ("vae.", "first_stage_model.")),
    ),
    "sd3": (
        _CLIP_L,
        Part("text_encoder_2", "the CLIP-G text encoder", _TEXT, ("*clip_g*",), "clip_g.safetensors",
             ("text_encoders.clip_g.",)),
        Part("text_encoder_3", "the T5-XXL text encoder", _TEXT, _T5, "t5xxl_fp16.safetensors",
             ("text_encoders.t5xxl.",)),
        Part("vae", "the SD3 VAE", ("vae",), ("sd3*vae*", "sd35*vae*", "sd3.5*vae*"), "sd3_vae.safetensors",
             ("first_stage_model.", "vae.")),
    ),
    "zimage": (
        Part("text_encoder", "the Qwen3-4B text encoder", _TEXT, ("*qwen_3*", "*qwen3*"), "qwen_3_4b.safetensors"),
        Part("vae", "the FLUX.1 VAE", ("vae",), _FLUX_AE, "ae.safetensors"),
    ),
    "flux2-klein": (
        Part("text_encoder", "the Qwen3 text encoder", _TEXT, ("*qwen_3*", "*qwen3*"), "qwen_3_4b.safetensors"),
        Part("vae", "the FLUX.2 VAE", ("vae",), ("flux2*vae*", "flux2*ae*", "flux-2*vae*"), "flux2-vae.safetensors"),
    ),
}

# Tokenizers Sfumato does not bundle: the folder (beside the text encoders) the user puts them in.
_TOKENIZER_FOLDERS = {"the T5-XXL tokenizer": "t5xxl", "the Qwen3 tokenizer": "qwen3"}


def load_single_file(path, info, cls, dtype):
    """The pipeline class `cls` (the one a diffusers folder of the same model loads as, flow.pipeline_class) of
    the flow-family file `path` (ModelInfo `info`), loaded offline in `dtype`. Raises ModelLoadError with a sentence for what it can tell is wrong
    (models.ModelManager words the loaders' other errors)."""
    path = Path(path)
    family = info.family.value
    if family not in PARTS:
        raise ModelLoadError(path, f"it is not a model of a flow-matching family ({', '.join(PARTS)}).")
    gguf = path.suffix.lower() == ".gguf"
    shapes = {} if gguf else _header(path)
    _refuse_scaled_fp8(path, shapes)
    config = _config_folder(path, info)

    inside = {part.name for part in PARTS[family] if shapes and _has_prefix(shapes, part.inside)}
    if len(inside) == len(PARTS[family]):  # a full file
        extra = {}
        if family == "flux1" and _flux1_width(shapes) != FLUX1_WIDTH:
            extra["transformer"] = _transformer(path, family, config, dtype)
        return _finish(cls.from_single_file(str(path), config=str(config), local_files_only=True,
                                            dtype=dtype, **extra, **_pipeline_kwargs(family, info)))

    found = {part.name: _find_part(path, part, config) for part in PARTS[family] if part.name not in inside}
    missing = [part for part in PARTS[family] if part.name in found and found[part.name] is None]
    if missing:
        raise ModelLoadError(path, _missing_sentence(path, missing))
    components = {}
    for part in PARTS[family]:
        if part.name in inside:  # a partial file (e.g. a transformer with its VAE): the rest of what it holds
            prefix = next(p for p in part.inside if _has_prefix(shapes, (p,)))
            components[part.name] = _load_part(path, path, part, config, dtype, prefix)
        else:
            components[part.name] = _load_part(path, found[part.name], part, config, dtype)
    transformer = _transformer(path, family, config, dtype)
    # every module is passed, already in dtype: the config folder gives the scheduler and tokenizers
    return _finish(cls.from_pretrained(str(config), transformer=transformer, **components, local_files_only=True,
                                       **_pipeline_kwargs(family, info)))


def _finish(pipe):
    import torch

    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()  # diffusers' single-file T5 comes back in training mode: dropout on every prompt
    pipe.set_progress_bar_config(disable=True)  # a windowed app has no stderr to draw bars on
    return pipe


def _pipeline_kwargs(family: str, info) -> dict:
    if family == "flux2-klein" and info.variant.startswith("base"):
        return {"is_distilled": False}  # the bundled configs are the distilled klein's
    return {}


# ---------------------------------------------------------------------------- configs and tokenizers


def bundled_name(family: str, variant: str) -> str:
    """The bundled config folder (desktop/engine/bundled_configs.py) of a family's variant."""
    if family == "flux1":
        return {"schnell": "flux1-schnell", "fill": "flux1-fill"}.get(variant, "flux1-dev")
    if family == "sd3":
        return "sd3.5-large" if variant.startswith("large") else "sd3.5-medium"
    if family == "zimage":
        return "zimage-turbo"
    return "flux2-klein-9b" if variant.endswith("9b") else "flux2-klein-4b"


def _config_folder(path: Path, info) -> Path:
    from desktop.core import modelfiles
    from desktop.engine import bundled_configs

    sidecar = modelfiles.sidecar_config(path)
    if sidecar is not None:
        return sidecar
    name = bundled_name(info.family.value, info.variant)
    supplied = {}
    for folder in bundled_configs.missing_tokenizers(name):
        need = bundled_configs.tokenizer_need(name, folder)
        where = _find_folder(path, ("tokenizers",), _TOKENIZER_FOLDERS.get(need.label, folder))
        if where is None or any(not (where / f).is_file() for f in need.files):
            raise ModelLoadError(path, _tokenizer_sentence(path, need))
        supplied[folder] = where
    return bundled_configs.cached_config(name, supplied)


def _tokenizer_sentence(path: Path, need) -> str:
    folder = _TOKENIZER_FOLDERS.get(need.label, "tokenizer")
    return (f"{need.label} is not bundled with Sfumato: put {_and(need.files)} from {need.source} in a folder "
            f"tokenizers/{folder} beside this file or in {path.parent.parent}, "
            "or load the model's diffusers folder or Hugging Face id instead.")


def _and(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _search_roots(path: Path) -> list[Path]:
    """Where ComfyUI-style folders are looked for: beside the file, and beside the folder it is in."""
    return [path.parent, path.parent.parent]


def _find_folder(path: Path, parents: tuple[str, ...], name: str) -> Path | None:
    for root in _search_roots(path):
        for parent in parents:
            if (root / parent / name).is_dir():
                return root / parent / name
    return None


# ---------------------------------------------------------------------------- headers


def _header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, dtype) from the safetensors header, without reading tensors."""
    from desktop.core.safetensors_header import ModelFileError, read_safetensors_header

    try:
        header = read_safetensors_header(path)
    except ModelFileError as error:
        raise ModelLoadError(path, error.reason) from None
    return {name: (t.shape, t.dtype) for name, t in header.tensors.items()}


def _read_prefixed(path: Path, prefix: str, dtype) -> dict:
    """The tensors under `prefix`, the prefix taken off, without reading the rest of the file; the floating ones
    in `dtype` (fp8 files upcast).

    Each tensor is read in pieces through one buffer of at most READ_BUFFER bytes and converted into its place,
    so the process holds the result and that buffer. (safetensors' own reader maps the whole file, whose pages
    count in the process's memory beside the converted copy: a T5-XXL in fp16 made bf16 took twice its size.)
    """
    import torch
    from desktop.core.safetensors_header import read_safetensors_header

    header = read_safetensors_header(path)
    wanted = sorted(((key, info) for key, info in header.tensors.items() if key.startswith(prefix)),
                    key=lambda item: item[1].data_offsets)
    buffer = memoryview(bytearray(min(READ_BUFFER, max((i.data_offsets[1] - i.data_offsets[0] for _, i in wanted),
                                                       default=0))))
    state = {}
    with open(path, "rb") as f:
        for key, info in wanted:
            if info.dtype not in _TORCH_DTYPES:
                raise ValueError(f"{key} is of type {info.dtype}, which Sfumato does not read")
            kind = getattr(torch, _TORCH_DTYPES[info.dtype])
            out = torch.empty(info.shape, dtype=dtype if kind.is_floating_point else kind)
            flat, itemsize = out.view(-1), torch.empty(0, dtype=kind).element_size()
            f.seek(8 + header.header_size + info.data_offsets[0])
            done, step = 0, len(buffer) // itemsize
            while done < flat.numel():
                piece = buffer[: min(step, flat.numel() - done) * itemsize]
                if f.readinto(piece) != len(piece):
                    raise ValueError("the file ends inside a tensor")
                flat[done:done + len(piece) // itemsize].copy_(torch.frombuffer(piece, dtype=kind))
                done += len(piece) // itemsize
            state[key[len(prefix):]] = out
    return state


READ_BUFFER = 16 * 2**20


# safetensors dtype -> torch's name for it (torch is imported only when a file is read)
_TORCH_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "U16": "uint16", "I16": "int16", "F16": "float16", "BF16": "bfloat16", "U32": "uint32", "I32": "int32",
    "F32": "float32", "U64": "uint64", "I64": "int64", "F64": "float64",
}


def _has_prefix(shapes, prefixes) -> bool:
    return any(key.startswith(prefixes) for key in shapes) if prefixes else False


def _refuse_scaled_fp8(path: Path, shapes) -> None:
    if any(key.endswith((".scale_weight", "scaled_fp8")) for key in shapes):
        raise ModelLoadError(path, "it is a \"scaled fp8\" file (ComfyUI's own format), which diffusers cannot load; "
                                   "use an fp8 file without scales, a GGUF or a bf16 version of the model.")


def _flux1_width(shapes) -> int:
    for key in ("model.diffusion_model.img_in.weight", "img_in.weight"):
        if key in shapes:
            return shapes[key][0][0]
    return FLUX1_WIDTH


# ---------------------------------------------------------------------------- the transformer


def _transformer(path: Path, family: str, config: Path, dtype):
    import diffusers

    cls = getattr(diffusers, {
        "flux1": "FluxTransformer2DModel",
        "sd3": "SD3Transformer2DModel",
        "zimage": "ZImageTransformer2DModel",
        "flux2-klein": "Flux2Transformer2DModel",
    }[family])
    kwargs = dict(config=str(config), subfolder="transformer", local_files_only=True, dtype=dtype)
    source = str(path)
    if path.suffix.lower() == ".gguf":
        from diffusers import GGUFQuantizationConfig

        kwargs["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    if family == "flux1" and (path.suffix.lower() == ".gguf" or _flux1_width(_header(path)) != FLUX1_WIDTH):
        from diffusers.loaders.single_file_utils import load_single_file_checkpoint

        source = load_single_file_checkpoint(source, local_files_only=True)
        if _flux1_width({k: (tuple(v.shape), "") for k, v in source.items() if k.endswith("img_in.weight")}) \
                != FLUX1_WIDTH:
            source = _flux1_checkpoint(source)
    return cls.from_single_file(source, **kwargs)


def _flux1_checkpoint(checkpoint: dict) -> dict:
    """A FLUX.1 transformer of another width than 3072 (a pruned model, the tiny test model) in diffusers keys.

    diffusers 0.42's converter splits each single block's ``linear1`` (q, k, v and the MLP input side by side)
    at FLUX.1's 3072 width. Here the split is made at the file's own width and the converter does the rest.
    """
    import torch
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    checkpoint = {k.removeprefix("model.diffusion_model."): v for k, v in checkpoint.items()}
    width = checkpoint["img_in.weight"].shape[0]
    pieces = {}
    for key in [k for k in checkpoint if re.fullmatch(r"single_blocks\.\d+\.linear1\.(weight|bias)", k)]:
        value = checkpoint[key]
        pieces[key] = torch.split(value, [width, width, width, value.shape[0] - 3 * width], dim=0)
        # a stand-in of the shape the converter splits; its parts are replaced below
        checkpoint[key] = torch.empty((3 * FLUX1_WIDTH + 4 * FLUX1_WIDTH, *value.shape[1:]), dtype=torch.float32)
    converted = convert_flux_transformer_checkpoint_to_diffusers(checkpoint)
    for key, (q, k, v, mlp) in pieces.items():
        block, param = re.fullmatch(r"single_blocks\.(\d+)\.linear1\.(weight|bias)", key).groups()
        prefix = f"single_transformer_blocks.{block}."
        for name, value in (("attn.to_q", q), ("attn.to_k", k), ("attn.to_v", v), ("proj_mlp", mlp)):
            converted[f"{prefix}{name}.{param}"] = value
    return converted


# ---------------------------------------------------------------------------- separate component files


def _find_part(path: Path, part: Part, config: Path) -> Path | None:
    """The first file in the part's ComfyUI folders whose name and shapes fit; None when there is none.
    Raises ModelLoadError naming a file of a fitting name whose header cannot be read when no other fits."""
    damaged = None
    for root in _search_roots(path):
        for folder in part.folders:
            try:
                files = sorted(p for p in (root / folder).iterdir() if p.is_file())
            except OSError:
                continue
            for file in files:
                name = file.name.lower()
                if file.suffix.lower() == ".safetensors" and any(fnmatch.fnmatch(name, p) for p in part.patterns):
                    try:
                        shapes = _header(file)
                    except ModelLoadError:
                        damaged = damaged or file
                        continue
                    if _fits(shapes, part.name, config):
                        return file
    if damaged is not None:
        raise ModelLoadError(path, f"{damaged.name} in {damaged.parent} is damaged or incomplete: download it again.")
    return None


def _fits(shapes: dict, name: str, config: Path) -> bool:
    """Whether a file's shapes (from its header) are those the config's component has."""
    try:
        conf = json.loads((config / name / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if name == "vae":
        out = shapes.get("encoder.conv_out.weight") or shapes.get("encoder.conv_out.conv.weight")
        return out is not None and out[0][0] == 2 * conf.get("latent_channels", 16)
    width = conf.get("hidden_size") or conf.get("d_model")
    for key in ("text_model.embeddings.position_embedding.weight", "embeddings.position_embedding.weight",
                "shared.weight", "encoder.embed_tokens.weight", "model.embed_tokens.weight", "embed_tokens.weight"):
        if key in shapes:
            return shapes[key][0][-1] == width
    return False


def _missing_sentence(path: Path, missing: list[Part]) -> str:
    names = _and([f"{part.label} ({part.example})" for part in missing])
    folders = _and(sorted({part.folders[0] for part in missing}))
    return (f"it holds only the transformer, and {names} {'was' if len(missing) == 1 else 'were'} not found: "
            f"put {'it' if len(missing) == 1 else 'them'} in the {folders} folder{'s' if ' and ' in folders else ''} "
            f"beside {path.parent} (as ComfyUI's models folder has them), "
            "or load the model's diffusers folder instead.")


def _load_part(path: Path, file: Path, part: Part, config: Path, dtype, prefix: str = ""):
    """The component `part` from `file` (its tensors under `prefix` when it is the model file `path` itself).
    Raises ModelLoadError naming the file when its weights are not all the part's."""
    import torch

    try:
        return _build(_read_prefixed(file, prefix, dtype), part.name, config, dtype)
    except (OutOfMemory, torch.OutOfMemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - missing, unexpected or misshapen weights: the file is not the part
        what = part.label.removeprefix("the ")
        if file == path:
            raise ModelLoadError(path, f"the {what} inside it is incomplete: download it again.") from error
        raise ModelLoadError(path, f"{file.name} ({file.parent.name} folder) is not a complete {what}: "
                                   "download it again.") from error


def _build(state: dict, name: str, config: Path, dtype):
    """The component `name` built from its config and loaded from `state` (in its usual single-file keys, its
    floating tensors in `dtype`)."""
    import importlib

    import torch

    library, class_name = json.loads((config / "model_index.json").read_text(encoding="utf-8"))[name]
    cls = getattr(importlib.import_module(library), class_name)
    if name == "vae":
        model = cls.from_config(cls.load_config(str(config), subfolder="vae", local_files_only=True))
        state = _vae_to_diffusers(state, model.config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"the VAE file's weights do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return model.to(dtype).eval()

    from accelerate import init_empty_weights

    model_config = cls.config_class.from_pretrained(str(config / name), local_files_only=True)
    with init_empty_weights():
        model = cls(model_config)
    expected = set(model.state_dict())
    state = _match_keys(state, expected)
    if "text_projection.weight" in expected and "text_projection.weight" not in state:
        width = model_config.hidden_size  # SD3's CLIP-L: its pooled output is used unprojected
        state["text_projection.weight"] = torch.eye(width, dtype=dtype)
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    meta = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if meta:
        raise ValueError(f"the {name} file lacks weights (e.g. {meta[0]}); it is not {class_name}'s")
    return model.to(dtype).eval()


_WRAPPERS = ("transformer.", "model.", "text_model.")


def _canonical(key: str) -> str:
    """A text encoder key without the wrapper levels files and transformers versions differ in."""
    while key.startswith(_WRAPPERS):
        key = key.split(".", 1)[1]
    return key


def _match_keys(state: dict, expected: set[str]) -> dict:
    """The file's tensors under the model's own keys ("model.layers.0..." and "layers.0..." are one weight)."""
    by_canonical = {_canonical(k): k for k in expected}
    return {by_canonical[_canonical(k)]: v for k, v in state.items() if _canonical(k) in by_canonical}


def _vae_to_diffusers(state: dict, config) -> dict:
    """An LDM-layout VAE (ae.safetensors, flux2-vae.safetensors) in diffusers keys; a diffusers one as it is."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    if "encoder.conv_in.weight" not in state or not any(k.startswith("encoder.down.") for k in state):
        return state
    state = dict(state)
    extra = {k: state.pop(k) for k in ("bn.running_mean", "bn.running_var") if k in state}
    for src, dst in (("encoder.quant_conv", "quant_conv"), ("decoder.post_quant_conv", "post_quant_conv")):
        for param in ("weight", "bias"):  # FLUX.2's VAE keeps them inside encoder and decoder
            if f"{src}.{param}" in state:
                state[f"{dst}.{param}"] = state.pop(f"{src}.{param}")
    converted = convert_ldm_vae_checkpoint(state, config)
    converted.update(extra)
    return converted
