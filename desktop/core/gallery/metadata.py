"""What a picture says about how it was made, whichever tool made it.

- Sfumato: the `sfumato` JSON chunk (the whole request, prompts exactly as
  typed) and `parameters`;
- AUTOMATIC1111, Forge, Fooocus, Civitai: the `parameters` text (in a PNG
  text chunk, or the EXIF UserComment of a JPEG or WebP); "CFG Scale" and
  other keys in any case;
- ComfyUI: the `prompt` JSON (its API graph: one sampler chain is read, see
  _pick_sampler) and `workflow`; in a JPEG or WebP, "prompt:{...}" and
  "workflow:{...}" in the EXIF Model, Make or ImageDescription (ComfyUI's
  WebP saver and the tools built on it), or the graph as the UserComment
  (Civitai, with its `extraMetadata` for what the graph lacks);
- SwarmUI: `sui_image_params` JSON in `parameters` (or a JPEG's comment);
- RuinedFooocus: its JSON (software "RuinedFooocus") in `parameters`;
- InvokeAI: the `invokeai_metadata` JSON, the older `sd-metadata`, and
  InvokeAI 2's `Dream` command line.

Everything becomes one ImageMeta with an A1111-style `parameters` text, so
"Copy parameters" and "Use all parameters" work the same for all of them.
Readers never raise on bad metadata: what cannot be read is left empty, and
JSON no reader knows is never taken as a prompt (ImageMeta.notice says so).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from ..families import demo_kind
from .. import imageio, lineage  # open_picture; importing it sets Pillow's size and text-chunk limits
from ..infotext import (DISTILLED_CFG_KEY, SHIFT_KEY, Infotext, InfotextError, format_infotext, from_fooocus_json,
                        parse_infotext, parse_size, read_decoder, read_flow_sampling)
from ..request import (HIRES_UPSCALERS, MAX_CLIP_SKIP, MAX_HIRES_SCALE, MAX_SEED, GenerationRequest, Hires, Images,
                       InvalidRequest, Mode, is_hires_upscaler, nested)
from ..samplers import AUTOMATIC, SAMPLERS, split_sampler_name
from ..prompts import DEFAULT_EMPHASIS, EMPHASIS_MODES

MAX_JSON = 4 * 2**20
USER_COMMENT = 0x9286
EXIF_IFD = 0x8769
IMAGE_DESCRIPTION, MAKE, MODEL = 0x010E, 0x010F, 0x0110
UNKNOWN_JSON = "The parameters in this picture are JSON that Sfumato cannot read, so no prompt was taken from them."

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
    clip_skip: int | None = None  # A1111's "Clip skip" (1: no layer skipped)
    emphasis: str = ""  # A1111's "Emphasis" mode; "" when not written (its default, "Original")
    hires: dict = field(default_factory=dict)  # A1111's hires-fix values as written: "hires upscale", ... (lower case)
    flow: dict = field(default_factory=dict)  # Forge's "distilled cfg scale" and "shift" as written (lower case)
    decoder: str = "full"  # request.decoder: "tiny" when the text says "Decoder: TAESD" (infotext.read_decoder)
    parameters: str = ""  # A1111-style text, for Copy parameters
    source: str = ""  # "sfumato", "a1111", "comfyui", "invokeai", "swarmui", "ruinedfooocus" or "" (nothing found)
    request: dict = field(default_factory=dict)  # Sfumato's own request (request.nested form), when ours
    notice: str = ""  # a sentence for the user when something could not be read
    pixel_hash: str = ""  # lineage.py: the hash of its pixels it carries, "" when none
    parents: tuple = ()  # lineage.Parent of the pictures it was made from, as it records them


def read_image_meta(path: str | Path) -> tuple[ImageMeta, int, int]:
    """The metadata and pixel size of a picture file, without decoding its pixels when it can.

    Only raster formats are opened (imageio.open_picture: never EPS through Ghostscript). Raises OSError or
    ValueError when the file is not a readable picture (a decompression bomb included).
    """
    try:
        with imageio.open_picture(path) as image:
            width, height = image.size
            chunks = {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
            if image.format == "PNG" and not _known(chunks):
                try:  # text chunks after the pixels are only read with them
                    image.load()
                    chunks.update({k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)})
                except (OSError, ValueError, SyntaxError):
                    pass
            if not _known(chunks):
                chunks.update(exif_chunks(image))
    except Image.DecompressionBombError as error:
        raise ValueError(f"it is too large to open ({error})") from None
    own, parents = lineage.read_chunks(chunks)
    return dataclasses.replace(meta_from_chunks(chunks), pixel_hash=own, parents=parents), width, height


def _known(chunks: dict) -> bool:
    return any(key in chunks for key in ("sfumato", "parameters", "prompt", "workflow", "invokeai_metadata",
                                         "sd-metadata", "Dream"))


def meta_from_chunks(chunks: dict[str, str]) -> ImageMeta:
    """Read the text chunks of a picture (key -> text). Never raises.

    Raw JSON never becomes a prompt: JSON that no reader knows gives an empty prompt and a notice.
    """
    for reader in (_sfumato, _swarmui, _ruined_fooocus, _a1111, _comfyui, _invokeai, _dream):
        try:
            meta = reader(chunks)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError, InfotextError):
            meta = None
        if meta is not None:
            return meta
    text = chunks.get("parameters")
    if isinstance(text, str) and text.strip():
        return ImageMeta(parameters=text.strip()[:MAX_JSON], notice=UNKNOWN_JSON)
    return ImageMeta()


def exif_chunks(image: Image.Image) -> dict[str, str]:
    """The metadata a JPEG or WebP keeps in EXIF, as the PNG text chunks it stands for.

    AUTOMATIC1111 and most tools: the `parameters` text in the UserComment. ComfyUI's WebP saver and the
    tools built on it: "prompt:{...}" and "workflow:{...}" in Model, Make and ImageDescription (some without
    the "key:", some in the UserComment, Civitai as the UserComment's whole JSON, SwarmUI as JSON there or in
    the JPEG comment).
    """
    found: dict[str, str] = {}
    try:
        exif = image.getexif()
        tagged = [exif.get(tag) for tag in (IMAGE_DESCRIPTION, MAKE, MODEL)]
        comments = [exif.get_ifd(EXIF_IFD).get(USER_COMMENT), image.info.get("comment")]
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, AttributeError):
        return found
    for raw, is_comment in [(raw, False) for raw in tagged] + [(raw, True) for raw in comments]:
        text = (decode_user_comment(raw) if is_comment else raw.decode("utf-8", "replace")) if isinstance(
            raw, bytes) else raw
        if not isinstance(text, str) or not text.strip():
            continue
        text = text.strip().rstrip("\0")
        comfy = _comfy_texts(text)
        for key, value in comfy.items():
            found.setdefault(key, value)
        if is_comment and not comfy:
            found.setdefault("parameters", text)
    return found


def _comfy_texts(text: str) -> dict[str, str]:
    """{"prompt": graph JSON, "workflow": workflow JSON} from one EXIF text, when it holds either."""
    key, colon, body = text.partition(":")
    if colon and key.strip().lower() in ("prompt", "workflow") and body.lstrip()[:1] == "{":
        return {key.strip().lower(): body.strip()}
    data = _json(text) if text[:1] == "{" else None
    if _graph_nodes(data):
        return {"prompt": text}
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        return {"workflow": text}
    if isinstance(data, dict) and (_graph_nodes(data.get("prompt")) or isinstance(data.get("workflow"), dict)):
        return {key: json.dumps(data[key]) for key in ("prompt", "workflow") if isinstance(data.get(key), dict)}
    return {}


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


@dataclass(frozen=True)
class PictureModel:
    """The model a picture names: Sfumato's exact reference (a path, a Hub id, "demo:flux1"), else the name and
    A1111 short hash ("Model", "Model hash") other tools write; all "" when it names none."""
    ref: str = ""
    name: str = ""
    hash: str = ""

    def __str__(self) -> str:
        return self.name or Path(self.ref.rstrip("/\\")).name or self.ref


def picture_model(meta: ImageMeta) -> PictureModel:
    ref = meta.request.get("model") if isinstance(meta.request, dict) else None
    params = {}
    if meta.parameters:
        try:
            params = parse_infotext(meta.parameters).params
        except InfotextError:
            pass
    return PictureModel(ref if isinstance(ref, str) else "", meta.model or str(params.get("Model", "")),
                        str(params.get("Model hash", "")))


def match_model(wanted: PictureModel, listed: list[tuple[str, str]],
                hash_of: Callable[[str], str] = lambda ref: "") -> str | None:
    """The reference of the listed model ([(reference, label)]) a picture was made with, as A1111 switches its
    checkpoint: Sfumato's exact reference, else the file whose short hash is the picture's ("Model hash"; `hash_of`
    gives a listed model's hash when known, "" when not), else the one of its name (a demo model is tiny-<kind>,
    a file or folder its stem, or its label); None when none is."""
    refs = [ref for ref, _label in listed]
    if wanted.ref in refs:
        return wanted.ref
    digest = wanted.hash.strip().lower()
    if len(digest) >= 8:
        for ref in refs:
            known = hash_of(ref).lower()
            if known and known[:len(digest)] == digest[:len(known)]:
                return ref
    names = {model_stem(name) for name in (wanted.name, Path(wanted.ref.rstrip("/\\")).name) if name}
    for ref, label in listed:
        kind = demo_kind(ref)
        own = {f"tiny-{kind}"} if kind is not None else {model_stem(Path(ref.rstrip("/\\")).name), model_stem(label)}
        if names & own:
            return ref
    return None


def model_stem(name: str) -> str:
    """A model file's name as infotexts compare it: lower case, without its weights suffix."""
    name = name.strip().lower()
    for suffix in (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def to_request(meta: ImageMeta, base: GenerationRequest) -> GenerationRequest:
    """`base` (the prompt panel's values) with everything the picture says about how it was made.

    The model stays the one chosen in the panel: metadata names a model, not a file (`picture_model` and
    `match_model` find it among the listed ones, for the window to choose first). The batch size
    becomes 1 whichever way the picture is read: the picture is one image, made with its own seed.
    """
    if meta.request:
        try:
            request = GenerationRequest.from_dict({**meta.request, "model": base.model})
            request = request.replace(sampling=request.sampling.replace(batch_size=1))
            # The panel takes no mode or images (the canvas frame decides those): an img2img or inpaint
            # picture is checked as text-to-image, so its strength and inpaint settings come along.
            request.replace(mode=Mode.TXT2IMG, images=Images()).validate()
            return request
        except (InvalidRequest, TypeError):
            pass  # read what can be read, below
    conditioning = base.conditioning.replace(prompt=meta.prompt, negative_prompt=meta.negative_prompt)
    clip_skip = meta.clip_skip
    if clip_skip is None and meta.source in ("a1111", "sfumato"):
        clip_skip = 1  # A1111 and Sfumato leave "Clip skip" out of the text when it is 1
    if clip_skip is not None and 1 <= clip_skip <= MAX_CLIP_SKIP:
        conditioning = conditioning.replace(clip_skip=clip_skip)
    if meta.source in ("a1111", "sfumato"):  # A1111 leaves "Emphasis" out of the text when it is "Original"
        conditioning = conditioning.replace(
            emphasis=meta.emphasis if meta.emphasis in EMPHASIS_MODES else DEFAULT_EMPHASIS)
    changes: dict = {"batch_size": 1}
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
    size = {}
    for name, value in (("width", meta.width), ("height", meta.height)):
        if value and 64 <= value <= 4096:
            size[name] = value
    sampling = read_flow_sampling(meta.flow, base.sampling.replace(**changes), meta.source in ("a1111", "sfumato"))
    return base.replace(sampling=sampling, conditioning=conditioning,
                        hires=_hires(meta.hires, base.hires), decoder=meta.decoder, **size)


# -- the readers ---------------------------------------------------------------------------


def _sfumato(chunks: dict) -> ImageMeta | None:
    if "sfumato" not in chunks:
        return None
    record = _json(chunks["sfumato"])
    request = record.get("request") if isinstance(record, dict) else None
    if not isinstance(request, dict):
        return None
    request = nested(request)  # version 1 pictures hold the flat form
    sampling, conditioning = (part if isinstance(part := request.get(name), dict) else {}
                              for name in ("sampling", "conditioning"))
    base = _a1111(chunks) or ImageMeta()
    return ImageMeta(  # the prompts exactly as typed: the parameters text holds them as A1111 writes them
        prompt=_exact(conditioning.get("prompt")), negative_prompt=_exact(conditioning.get("negative_prompt")),
        model=_text(record.get("model_name") or request.get("model")), seed=_int(sampling.get("seed")),
        sampler=_text(sampling.get("sampler")), schedule=_text(sampling.get("schedule")),
        steps=_int(sampling.get("steps")), cfg_scale=_float(sampling.get("cfg_scale")),
        width=_int(request.get("width")), height=_int(request.get("height")),
        clip_skip=_int(conditioning.get("clip_skip")),
        parameters=base.parameters, source="sfumato", request=request, decoder=base.decoder,
    )


def _parameters_json(chunks: dict) -> object:
    """The `parameters` text as JSON, when it is JSON (RuinedFooocus's is a JSON string holding JSON), else None."""
    text = chunks.get("parameters")
    data = _json(text.strip()) if isinstance(text, str) and text.strip()[:1] in ("{", "[", '"') else None
    return _json(data) if isinstance(data, str) else data


def _swarmui(chunks: dict) -> ImageMeta | None:
    data = _parameters_json(chunks)
    params = data.get("sui_image_params") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        return None
    sampler, schedule = _comfy_sampler(params.get("sampler"), params.get("scheduler"))
    return _with_parameters(ImageMeta(
        prompt=_text(params.get("prompt")), negative_prompt=_text(params.get("negativeprompt")),
        model=_model_name(params.get("model")), seed=_int(params.get("seed")), sampler=sampler, schedule=schedule,
        steps=_int(params.get("steps")), cfg_scale=_float(params.get("cfgscale")),
        width=_int(params.get("width")), height=_int(params.get("height")), source="swarmui",
    ))


def _ruined_fooocus(chunks: dict) -> ImageMeta | None:
    data = _parameters_json(chunks)
    if not isinstance(data, dict) or data.get("software") != "RuinedFooocus":
        return None
    sampler, schedule = _comfy_sampler(data.get("sampler_name"), data.get("scheduler"))
    return _with_parameters(ImageMeta(
        prompt=_text(data.get("Prompt")), negative_prompt=_text(data.get("Negative")),
        model=_model_name(data.get("base_model_name")), seed=_int(data.get("seed")), sampler=sampler,
        schedule=schedule, steps=_int(data.get("steps")), cfg_scale=_float(data.get("cfg")),
        width=_int(data.get("width")), height=_int(data.get("height")), source="ruinedfooocus",
    ))


def _a1111(chunks: dict) -> ImageMeta | None:
    text = chunks.get("parameters")
    if not isinstance(text, str) or not text.strip():
        return None
    info = parse_infotext(text) if _parameters_json(chunks) is None else from_fooocus_json(text.strip())
    if info is None:
        return None  # JSON, and not Fooocus's: never a prompt
    params = {}
    for key, value in info.params.items():  # "CFG Scale" (some tools) is A1111's "CFG scale"
        params.setdefault(key.lower(), value)
    width = height = None
    if "size" in params:
        try:
            width, height = parse_size(params["size"])
        except InfotextError:
            pass
    return ImageMeta(
        prompt=info.prompt, negative_prompt=info.negative_prompt, model=params.get("model", ""),
        seed=_int(params.get("seed")), sampler=params.get("sampler", ""), schedule=params.get("schedule type", ""),
        steps=_int(params.get("steps")), cfg_scale=_float(params.get("cfg scale")), width=width, height=height,
        clip_skip=_int(params.get("clip skip")), emphasis=params.get("emphasis", ""), parameters=text.strip(),
        hires={key: value for key, value in params.items() if key in _HIRES_KEYS}, source="a1111",
        flow={key: value for key, value in params.items() if key in (DISTILLED_CFG_KEY.lower(), SHIFT_KEY.lower())},
        decoder=read_decoder(params),
    )


_HIRES_KEYS = ("denoising strength", "hires upscale", "hires upscaler", "hires steps", "hires resize")


def _hires(values: dict, base: Hires) -> Hires:
    """A1111's hires fix from its infotext, as A1111's "Use all parameters" reads it: on when the text has a
    denoising strength and a hires upscale, upscaler or resize (a txt2img picture made with it), else off
    (`base`, the panel's, turned off). A value left out or unusable takes A1111's default; any other upscaler
    name is kept (an upscaler file's: the window selects the file of that name or says it is missing)."""
    if "denoising strength" not in values or not {"hires upscale", "hires upscaler", "hires resize"} & values.keys():
        return base.replace(enabled=False)
    hires = Hires(upscaler=base.upscaler)
    denoise, scale, steps = (_float(values.get(key)) for key in ("denoising strength", "hires upscale", "hires steps"))
    changes: dict = {"enabled": True}
    if denoise is not None and 0 < denoise <= 1:
        changes["denoise"] = denoise
    if scale is not None and 1 <= scale <= MAX_HIRES_SCALE:
        changes["scale"] = scale
    if steps is not None and steps.is_integer() and 0 <= steps <= 150:
        changes["steps"] = int(steps)
    upscaler = values.get("hires upscaler", "")
    known = {name.lower(): name for name in HIRES_UPSCALERS}
    if upscaler.lower() in known:
        changes["upscaler"] = known[upscaler.lower()]
    elif upscaler and is_hires_upscaler(upscaler):
        changes["upscaler"] = upscaler
    try:
        width, height = parse_size(values.get("hires resize", ""))
        if 0 <= width <= 4096 and 0 <= height <= 4096:
            changes.update(resize_width=width, resize_height=height)
    except InfotextError:
        pass
    return hires.replace(**changes)


# ComfyUI: the "prompt" chunk is the graph that ran (node id -> {"class_type", "inputs"}; an input is a value or
# a link [node id, output]). A graph may hold several samplers (a hires pass, a refiner, a preview): the one
# read is the sampler nearest upstream of the picture's output (a Save node before a Preview node; of several,
# the one with the most samplers upstream, then the last), else the last sampler no other sampler follows.
# Its prompts, seed, steps, model and latent size are read along its own links, so values never mix.


def _comfyui(chunks: dict) -> ImageMeta | None:
    graph = _json(chunks["prompt"]) if "prompt" in chunks else None
    if not _graph_nodes(graph):
        data = _parameters_json(chunks)  # Civitai's JPEGs: the graph in place of the parameters
        graph = data if _graph_nodes(data) else _workflow_as_graph(_json(chunks.get("workflow", "")))
    nodes = _graph_nodes(graph)
    if not nodes:
        return None
    extra = _json(graph.get("extraMetadata")) if isinstance(graph, dict) else None
    extra = extra if isinstance(extra, dict) else {}  # Civitai: the request as its site took it
    sampler_id = _pick_sampler(nodes)
    if sampler_id is None and not extra:
        return None
    inputs = nodes[sampler_id].get("inputs") or {} if sampler_id else {}
    guider = _linked_inputs(nodes, inputs.get("guider"))  # SamplerCustomAdvanced
    positive = _follow_text(nodes, inputs.get("positive", guider.get("positive", guider.get("conditioning"))))
    negative = _follow_text(nodes, inputs.get("negative", guider.get("negative")))
    width, height = _latent_size(nodes, inputs.get("latent_image"))
    sampler_name, schedule = _comfy_sampler(_setting(nodes, inputs, "sampler_name"),
                                            _setting(nodes, inputs, "scheduler"))
    return _with_parameters(ImageMeta(
        prompt=positive or _text(extra.get("prompt")), negative_prompt=negative or _text(extra.get("negativePrompt")),
        model=_follow_model(nodes, inputs.get("model", guider.get("model"))) or _model_name(extra.get("baseModel")),
        seed=_first(_int(_setting(nodes, inputs, "seed", "noise_seed")), _int(extra.get("seed"))),
        sampler=sampler_name or _text(extra.get("sampler")), schedule=schedule,
        steps=_first(_int(_setting(nodes, inputs, "steps")), _int(extra.get("steps"))),
        cfg_scale=_first(_float(_setting(nodes, inputs, "cfg")), _float(extra.get("cfgScale"))),
        width=width or _int(extra.get("width")), height=height or _int(extra.get("height")), source="comfyui",
    ))


def _graph_nodes(graph: object) -> dict[str, dict]:
    """The nodes of an API graph (entries with a class_type; Civitai adds others), or {}."""
    if not isinstance(graph, dict):
        return {}
    return {str(key): node for key, node in graph.items() if isinstance(node, dict)
            and isinstance(node.get("class_type"), str) and isinstance(node.get("inputs", {}), dict)}


def _is_sampler(node: dict) -> bool:
    kind = node["class_type"]
    return ("KSampler" in kind and "Select" not in kind) or kind.startswith("SamplerCustom")


def _output_rank(node: dict) -> int:
    kind = node["class_type"].lower()
    return 2 if "save" in kind and "image" in kind else 1 if ("preview" in kind or "websocket" in kind) else 0


def _pick_sampler(nodes: dict[str, dict]) -> str | None:
    samplers = set(sorted((key for key, node in nodes.items() if _is_sampler(node)), key=_order)[-32:])
    if not samplers:
        return None
    outputs = sorted((key for key, node in nodes.items() if _output_rank(node) and key not in samplers), key=_order)
    starts = [*samplers, *outputs[-32:]]
    upstream = {key: _upstream(nodes, key, 100_000 // len(starts)) for key in starts}  # bounded, whatever the file
    outputs = [key for key in upstream if key not in samplers and upstream[key] & samplers]
    if outputs:
        best = max(outputs, key=lambda key: (_output_rank(nodes[key]), len(upstream[key] & samplers), _order(key)))
        chain = upstream[best] & samplers  # the nearest: the one no other sampler of the chain follows
        return max(chain, key=lambda key: (len(upstream[key] & samplers), _order(key)))
    last = [key for key in samplers if not any(key in upstream[other] for other in samplers)]
    return max(last or samplers, key=lambda key: (len(upstream[key] & samplers), _order(key)))


def _upstream(nodes: dict[str, dict], start: str, limit: int) -> set[str]:
    """The nodes that feed `start`, through any of its inputs (up to `limit` of them)."""
    seen: set[str] = set()
    todo = [start]
    while todo and len(seen) < limit:
        for value in (nodes.get(todo.pop()) or {}).get("inputs", {}).values():
            source = _link_id(value)
            if source in nodes and source not in seen:
                seen.add(source)
                todo.append(source)
    return seen


def _order(key: str) -> tuple:
    return (1, int(key), "") if key.isdigit() else (0, 0, key)


def _linked_inputs(nodes: dict, link: object) -> dict:
    inputs = (nodes.get(_link_id(link)) or {}).get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _setting(nodes: dict, inputs: dict, *keys: str) -> object:
    """A sampler setting: its own input, a value node linked to it (a seed node), or one of the nodes a
    SamplerCustom takes it from (noise, sigmas, sampler, guider)."""
    via = (_linked_inputs(nodes, inputs.get(name)) for name in ("noise", "sigmas", "sampler", "guider"))
    for source in (inputs, *via):
        for key in keys:
            value = source.get(key)
            if isinstance(value, list):
                node = _linked_inputs(nodes, value)
                value = next((node[k] for k in (key, "seed", "value", "int", "float", "string") if k in node
                              and not isinstance(node[k], list)), None)
            if value is not None:
                return value
    return None


def _latent_size(nodes: dict, link: object, depth: int = 0) -> tuple[int | None, int | None]:
    """The size of the latent a sampler starts from (EmptyLatentImage, a latent upscale...)."""
    inputs = _linked_inputs(nodes, link)
    width, height = _int(inputs.get("width")), _int(inputs.get("height"))
    if width and height:
        return width, height
    for key in ("samples", "latent", "latent_image"):
        if depth < 8 and isinstance(inputs.get(key), list):
            return _latent_size(nodes, inputs[key], depth + 1)
    return None, None


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
        if not isinstance(node, dict) or node.get("mode") in (2, 4):  # muted or bypassed: did not run
            continue
        kind, values = _text(node.get("type")), node.get("widgets_values") or []
        inputs = {i.get("name"): links.get(i.get("link")) for i in node.get("inputs") or [] if isinstance(i, dict)}
        inputs = {name: link for name, link in inputs.items() if link is not None}
        if not isinstance(values, list):
            values = []
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
    for key in ("text", "text_g", "t5xxl", "string", "value", "prompt"):
        value = inputs.get(key)
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, list):
            return _follow_text(nodes, value, depth + 1)
    for key in ("conditioning", "conditioning_1", "conditioning_to", "positive"):
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
            return _model_name(inputs[key])
    return _follow_model(nodes, inputs.get("model"), depth + 1)


def _link_id(link: object) -> str:
    return str(link[0]) if isinstance(link, list) and len(link) == 2 and isinstance(link[0], (str, int)) else ""


def _comfy_sampler(name: object, scheduler: object) -> tuple[str, str]:
    """ComfyUI's (and SwarmUI's, RuinedFooocus's) sampler and scheduler names in A1111's words."""
    sampler, schedule = _SAMPLER_NAMES.get(_text(name).lower().removesuffix("_gpu"), ("", ""))
    return sampler, _SCHEDULE_NAMES.get(_text(scheduler).lower(), schedule)


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
        prompt, negative = _dream_prompts(prompt)
        sampler, schedule = _SAMPLER_NAMES.get(_text(image.get("sampler")).removeprefix("k_"), ("", ""))
        return _with_parameters(ImageMeta(
            prompt=prompt, negative_prompt=negative, model=_text(legacy.get("model_weights")),
            seed=_int(image.get("seed")), sampler=sampler, schedule=schedule, steps=_int(image.get("steps")),
            cfg_scale=_float(image.get("cfg_scale")), width=_int(image.get("width")),
            height=_int(image.get("height")), source="invokeai",
        ))
    return None


_DREAM_PROMPT = re.compile(r'\s*"((?:[^"\\]|\\.)*)"(.*)', re.DOTALL)
_DREAM_SWITCH = re.compile(r"(?:^|\s)-([A-Za-z])\s*(?!-)(\S+)")
_DREAM_NEGATIVE = re.compile(r"\[([^\[\]]*)\]")


def _dream(chunks: dict) -> ImageMeta | None:
    """InvokeAI 2's `Dream` chunk: its command line, '"a cat [blurry]" -s 50 -S 42 -W 512 -H 768 -C 7.5 -A k_lms'
    (the negative prompt in square brackets; -s50 is -s 50)."""
    found = _DREAM_PROMPT.match(chunks.get("Dream") or "")
    if found is None:
        return None
    switches = {key: value for key, value in _DREAM_SWITCH.findall(found[2])}
    prompt, negative = _dream_prompts(re.sub(r"\\(.)", r"\1", found[1]))
    sampler, schedule = _SAMPLER_NAMES.get(switches.get("A", "").removeprefix("k_"), ("", ""))
    return _with_parameters(ImageMeta(
        prompt=prompt, negative_prompt=negative, seed=_int(switches.get("S")), sampler=sampler, schedule=schedule,
        steps=_int(switches.get("s")), cfg_scale=_float(switches.get("C")), width=_int(switches.get("W")),
        height=_int(switches.get("H")), source="invokeai",
    ))


def _dream_prompts(text: str) -> tuple[str, str]:
    """InvokeAI 2 wrote the negative prompt inside the prompt, in square brackets."""
    negative = ", ".join(part.strip(" ,") for part in _DREAM_NEGATIVE.findall(text) if part.strip(" ,"))
    return re.sub(r" {2,}", " ", _DREAM_NEGATIVE.sub(" ", text)).strip(" ,"), negative


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


def _first(*values: object) -> object:
    return next((value for value in values if value is not None), None)


_MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")


def _model_name(value: object) -> str:
    """A model's name from a file name or path ("SDXL/juggernaut_v9.safetensors" -> "juggernaut_v9")."""
    name = _text(value).replace("\\", "/").rsplit("/", 1)[-1]
    suffix = next((s for s in _MODEL_SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)]


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
