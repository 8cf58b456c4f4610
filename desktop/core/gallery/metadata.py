"""What a picture says about how it was made, whichever tool made it.

- Sfumato: the `sfumato` JSON chunk (the whole request) and `parameters`;
- AUTOMATIC1111, Forge, Fooocus, Civitai: the `parameters` text (in a PNG
  text chunk, or the EXIF UserComment of a JPEG or WebP);
- ComfyUI: the `prompt` JSON (its API graph; the sampler, prompts and model
  are found by following the sampler node's links) and `workflow`;
- InvokeAI: the `invokeai_metadata` JSON (and the older `sd-metadata`).

Everything becomes one ImageMeta with an A1111-style `parameters` text, so
"Copy parameters" and "Use all parameters" work the same for all of them.
Readers never raise on bad metadata: what cannot be read is left empty.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .. import imageio  # noqa: F401 - sets Pillow's size and text-chunk limits
from ..infotext import Infotext, InfotextError, format_infotext, parse_infotext, parse_size
from ..request import MAX_SEED, GenerationRequest, InvalidRequest
from ..samplers import AUTOMATIC, SAMPLERS, split_sampler_name

MAX_JSON = 4 * 2**20
USER_COMMENT = 0x9286
EXIF_IFD = 0x8769

#: ComfyUI and InvokeAI sampler names -> (A1111 sampler, schedule).
_SAMPLER_NAMES = {
    "euler": ("Euler", ""), "euler_ancestral": ("Euler a", ""), "euler_a": ("Euler a", ""),
    "heun": ("Heun", ""), "dpm_2": ("DPM2", ""), "kdpm_2": ("DPM2", ""), "dpm_2_ancestral": ("DPM2 a", ""),
    "kdpm_2_a": ("DPM2 a", ""), "lms": ("LMS", ""), "lms_k": ("LMS", "Karras"),
    "dpmpp_2m": ("DPM++ 2M", ""), "dpmpp_2m_k": ("DPM++ 2M", "Karras"), "dpmpp_sde": ("DPM++ SDE", ""),
    "dpmpp_sde_k": ("DPM++ SDE", "Karras"), "dpmpp_2m_sde": ("DPM++ 2M SDE", ""),
    "dpmpp_2m_sde_k": ("DPM++ 2M SDE", "Karras"), "ddim": ("DDIM", ""), "uni_pc": ("UniPC", ""),
    "unipc": ("UniPC", ""),
}
_SCHEDULE_NAMES = {"karras": "Karras", "exponential": "Exponential", "beta": "Beta"}


@dataclass(frozen=True)
class ImageMeta:
    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""
    seed: int | None = None
    sampler: str = ""
    schedule: str = ""
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None  # the size it was generated at (the file's own size is read separately)
    height: int | None = None
    parameters: str = ""  # A1111-style text, for Copy parameters
    source: str = ""  # "sfumato", "a1111", "comfyui", "invokeai" or "" (nothing found)
    request: dict = field(default_factory=dict)  # Sfumato's own request, when the picture is ours


def read_image_meta(path: str | Path) -> tuple[ImageMeta, int, int]:
    """The metadata and pixel size of a picture file, without decoding its pixels when it can.

    Raises OSError or ValueError when the file is not a readable picture (a decompression bomb included).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # big is fine: only the header is read
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ValueError(f"it is too large to open ({error})") from None
    with image:
        width, height = image.size
        chunks = {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
        if image.format == "PNG" and not _known(chunks):
            try:  # text chunks after the pixels are only read with them
                image.load()
                chunks.update({k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)})
            except (OSError, ValueError, SyntaxError):
                pass
        if not _known(chunks):
            comment = user_comment(image)
            if comment:
                chunks["parameters"] = comment
    return meta_from_chunks(chunks), width, height


def _known(chunks: dict) -> bool:
    return any(key in chunks for key in ("sfumato", "parameters", "prompt", "workflow", "invokeai_metadata",
                                         "sd-metadata"))


def meta_from_chunks(chunks: dict[str, str]) -> ImageMeta:
    """Read the text chunks of a picture (key -> text). Never raises."""
    for reader in (_sfumato, _a1111, _comfyui, _invokeai):
        try:
            meta = reader(chunks)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, InfotextError):
            meta = None
        if meta is not None:
            return meta
    return ImageMeta()


def user_comment(image: Image.Image) -> str:
    """The EXIF UserComment of a JPEG or WebP (where AUTOMATIC1111 keeps the parameters), or ""."""
    try:
        raw = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, AttributeError):
        return ""
    return decode_user_comment(raw) if isinstance(raw, bytes) else (raw if isinstance(raw, str) else "")


def decode_user_comment(raw: bytes) -> str:
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":
        # piexif (which AUTOMATIC1111 uses) writes UTF-16 big-endian; a few tools write little-endian. Latin
        # text has its zero bytes first in each pair when big-endian; text with none (CJK) stays big-endian.
        big_endian = body[1::2].count(0) <= body[0::2].count(0)
        return body.decode("utf-16-be" if big_endian else "utf-16-le", errors="replace").rstrip("\0")
    if prefix in (b"ASCII\0\0\0", b"\0" * 8):
        return body.decode("utf-8", errors="replace").rstrip("\0")
    return raw.decode("utf-8", errors="replace").rstrip("\0")


def encode_user_comment(text: str) -> bytes:
    return b"UNICODE\0" + text.encode("utf-16-be")


def to_request(meta: ImageMeta, base: GenerationRequest) -> GenerationRequest:
    """`base` (the prompt panel's values) with everything the picture says about how it was made.

    The model stays the one chosen in the panel: metadata names a model, not a file.
    """
    if meta.request:
        try:
            request = GenerationRequest.from_dict({**meta.request, "model": base.model, "batch_size": 1})
            request.validate()
            return request.replace(init_image=None, mask=None)
        except (InvalidRequest, TypeError):
            pass  # read what can be read, below
    changes: dict = {"prompt": meta.prompt, "negative_prompt": meta.negative_prompt}
    try:  # "DPM++ 2M Karras" (A1111 before 1.9, most Civitai pictures) is "DPM++ 2M" with "Karras"
        sampler, schedule = split_sampler_name(meta.sampler, meta.schedule or AUTOMATIC)
    except ValueError:
        sampler = schedule = None
    if sampler is not None:
        changes["sampler"] = sampler
        changes["schedule"] = schedule if schedule == AUTOMATIC or schedule in SAMPLERS[sampler] else AUTOMATIC
    if meta.steps and 1 <= meta.steps <= 150:
        changes["steps"] = meta.steps
    if meta.cfg_scale is not None and 0 <= meta.cfg_scale <= 30:
        changes["cfg_scale"] = float(meta.cfg_scale)
    if meta.seed is not None and 0 <= meta.seed <= MAX_SEED:
        changes["seed"] = meta.seed
    for name, value in (("width", meta.width), ("height", meta.height)):
        if value and 64 <= value <= 4096 and value % 8 == 0:
            changes[name] = value
    return base.replace(**changes)


# -- the readers ---------------------------------------------------------------------------


def _sfumato(chunks: dict) -> ImageMeta | None:
    if "sfumato" not in chunks:
        return None
    record = _json(chunks["sfumato"])
    request = record.get("request") if isinstance(record, dict) else None
    if not isinstance(request, dict):
        return None
    base = _a1111(chunks) or ImageMeta()
    return ImageMeta(  # the prompts exactly as typed: the parameters text holds them as A1111 writes them
        prompt=_exact(request.get("prompt")), negative_prompt=_exact(request.get("negative_prompt")),
        model=_text(record.get("model_name") or request.get("model")), seed=_int(request.get("seed")),
        sampler=_text(request.get("sampler")), schedule=_text(request.get("schedule")),
        steps=_int(request.get("steps")), cfg_scale=_float(request.get("cfg_scale")),
        width=_int(request.get("width")), height=_int(request.get("height")),
        parameters=base.parameters, source="sfumato", request=request,
    )


def _a1111(chunks: dict) -> ImageMeta | None:
    text = chunks.get("parameters")
    if not isinstance(text, str) or not text.strip():
        return None
    info = parse_infotext(text)
    params = info.params
    width = height = None
    if "Size" in params:
        try:
            width, height = parse_size(params["Size"])
        except InfotextError:
            pass
    return ImageMeta(
        prompt=info.prompt, negative_prompt=info.negative_prompt, model=params.get("Model", ""),
        seed=_int(params.get("Seed")), sampler=params.get("Sampler", ""), schedule=params.get("Schedule type", ""),
        steps=_int(params.get("Steps")), cfg_scale=_float(params.get("CFG scale")), width=width, height=height,
        parameters=text.strip(), source="a1111",
    )


def _comfyui(chunks: dict) -> ImageMeta | None:
    graph = _json(chunks["prompt"]) if "prompt" in chunks else None
    if not isinstance(graph, dict):
        graph = _workflow_as_graph(_json(chunks.get("workflow", "")))
    if not isinstance(graph, dict) or not graph:
        return None
    nodes = {str(key): node for key, node in graph.items() if isinstance(node, dict)}
    sampler = next((n for n in nodes.values() if "KSampler" in _text(n.get("class_type"))
                    or "SamplerCustom" in _text(n.get("class_type"))), None)
    if sampler is None:
        return None
    inputs = sampler.get("inputs") or {}
    prompt = _follow_text(nodes, inputs.get("positive"))
    negative = _follow_text(nodes, inputs.get("negative"))
    model = _follow_model(nodes, inputs.get("model"))
    width = height = None
    latent = nodes.get(_link_id(inputs.get("latent_image")))
    if latent is not None:
        width, height = _int((latent.get("inputs") or {}).get("width")), _int((latent.get("inputs") or {}).get("height"))
    sampler_name, schedule = _SAMPLER_NAMES.get(_text(inputs.get("sampler_name")), ("", ""))
    schedule = _SCHEDULE_NAMES.get(_text(inputs.get("scheduler")), schedule)
    return _with_parameters(ImageMeta(
        prompt=prompt, negative_prompt=negative, model=model,
        seed=_int(inputs.get("seed", inputs.get("noise_seed"))), sampler=sampler_name, schedule=schedule,
        steps=_int(inputs.get("steps")), cfg_scale=_float(inputs.get("cfg")), width=width, height=height,
        source="comfyui",
    ))


def _workflow_as_graph(workflow: object) -> dict | None:
    """ComfyUI's UI "workflow" (when there is no "prompt"): nodes with widget values, as an API-like graph."""
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        return None
    links = {}
    for link in workflow.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            links[link[0]] = [str(link[1]), link[2]]
    graph = {}
    for node in workflow["nodes"]:
        if not isinstance(node, dict):
            continue
        kind, values = _text(node.get("type")), node.get("widgets_values") or []
        inputs = {i.get("name"): links.get(i.get("link")) for i in node.get("inputs") or [] if isinstance(i, dict)}
        if kind == "KSamplerAdvanced" and len(values) >= 7:
            inputs.update(zip(("add_noise", "noise_seed", "control", "steps", "cfg", "sampler_name", "scheduler"),
                              values))
        elif "KSampler" in kind and len(values) >= 6:
            inputs.update(zip(("seed", "control", "steps", "cfg", "sampler_name", "scheduler"), values))
        elif kind == "CLIPTextEncode" and values:
            inputs["text"] = values[0]
        elif kind.startswith("CheckpointLoader") and values:
            inputs["ckpt_name"] = values[0]
        elif kind == "EmptyLatentImage" and len(values) >= 2:
            inputs["width"], inputs["height"] = values[0], values[1]
        graph[str(node.get("id"))] = {"class_type": kind, "inputs": inputs}
    return graph


def _follow_text(nodes: dict, link: object, depth: int = 0) -> str:
    """The text a conditioning input comes from (CLIPTextEncode, or a node feeding it text)."""
    node = nodes.get(_link_id(link))
    if node is None or depth > 8:
        return ""
    inputs = node.get("inputs") or {}
    for key in ("text", "text_g", "string", "value", "prompt"):
        value = inputs.get(key)
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, list):
            return _follow_text(nodes, value, depth + 1)
    for key in ("conditioning", "conditioning_1", "positive"):
        if key in inputs:
            return _follow_text(nodes, inputs[key], depth + 1)
    return ""


def _follow_model(nodes: dict, link: object, depth: int = 0) -> str:
    """The checkpoint the sampler's model input comes from (through LoRA loaders and the like)."""
    node = nodes.get(_link_id(link))
    if node is None or depth > 8:
        return ""
    inputs = node.get("inputs") or {}
    for key in ("ckpt_name", "unet_name"):
        if isinstance(inputs.get(key), str):
            return Path(inputs[key].replace("\\", "/")).stem
    return _follow_model(nodes, inputs.get("model"), depth + 1)


def _link_id(link: object) -> str:
    return str(link[0]) if isinstance(link, list) and link else ""


def _invokeai(chunks: dict) -> ImageMeta | None:
    data = _json(chunks["invokeai_metadata"]) if "invokeai_metadata" in chunks else None
    if isinstance(data, dict):
        model = data.get("model")
        model_name = _text(model.get("name") or model.get("model_name")) if isinstance(model, dict) else _text(model)
        sampler, schedule = _SAMPLER_NAMES.get(_text(data.get("scheduler")), ("", ""))
        return _with_parameters(ImageMeta(
            prompt=_text(data.get("positive_prompt")), negative_prompt=_text(data.get("negative_prompt")),
            model=model_name, seed=_int(data.get("seed")), sampler=sampler, schedule=schedule,
            steps=_int(data.get("steps")), cfg_scale=_float(data.get("cfg_scale")),
            width=_int(data.get("width")), height=_int(data.get("height")), source="invokeai",
        ))
    legacy = _json(chunks["sd-metadata"]) if "sd-metadata" in chunks else None
    if isinstance(legacy, dict) and isinstance(legacy.get("image"), dict):
        image = legacy["image"]
        prompts = image.get("prompt")
        prompt = _text(prompts[0].get("prompt")) if isinstance(prompts, list) and prompts and isinstance(
            prompts[0], dict) else _text(prompts)
        sampler, schedule = _SAMPLER_NAMES.get(_text(image.get("sampler")), ("", ""))
        return _with_parameters(ImageMeta(
            prompt=prompt, model=_text(legacy.get("model_weights")), seed=_int(image.get("seed")),
            sampler=sampler, schedule=schedule, steps=_int(image.get("steps")), cfg_scale=_float(image.get("cfg_scale")),
            width=_int(image.get("width")), height=_int(image.get("height")), source="invokeai",
        ))
    return None


def _with_parameters(meta: ImageMeta) -> ImageMeta:
    """Write the A1111 parameters text of metadata read from another tool."""
    params = {"Steps": meta.steps, "Sampler": meta.sampler, "Schedule type": meta.schedule, "CFG scale": meta.cfg_scale,
              "Seed": meta.seed, "Size": f"{meta.width}x{meta.height}" if meta.width and meta.height else None,
              "Model": meta.model}
    text = {k: (f"{v:g}" if isinstance(v, float) else str(v)) for k, v in params.items() if v not in (None, "")}
    try:
        parameters = format_infotext(Infotext(meta.prompt, meta.negative_prompt, text))
    except InfotextError:
        parameters = meta.prompt
    return ImageMeta(**{**meta.__dict__, "parameters": parameters})


# -- values --------------------------------------------------------------------------------------


def _json(text: object) -> object:
    if not isinstance(text, str) or len(text) > MAX_JSON:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _exact(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int | None:
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) and value is not None else None
    except (ValueError, TypeError):
        return None
    return number if number is None or -(2**63) <= number < 2**63 else None


def _float(value: object) -> float | None:
    try:
        number = float(str(value).strip()) if not isinstance(value, bool) and value is not None else None
    except (ValueError, TypeError):
        return None
    return number if number is None or number == number and abs(number) < 1e9 else None
