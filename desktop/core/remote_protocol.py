"""The wire protocol between RemoteBackend (desktop/remote) and Sfumato's server (desktop/server): pure, no Qt/torch.

A job goes in as one JSON object, every picture in it a base64 PNG (pixels exact, alpha and masks kept):

    {"kind": "generation", "request": GenerationRequest.to_dict(), "images": {"init": PNG|null, "mask": PNG|null},
     "controls": [{"model", "type", "weight", "start", "end", "preprocess", "image": PNG}, ...],
     "references": [{"adapter", "mode", "weight", "image": PNG}, ...], "preview_method", "preview_every"}
    {"kind": "preprocess", "type", "image": PNG}
    {"kind": "upscale", "image": PNG, "scale", "size": [w, h]|null, "upscaler", "parameters", "restore",
     "detail": DETAIL|null, "faces": {"restorer", "visibility", "detector": "auto", "detailer": DETAIL|null,
     "padding", "blur", "resolution", "mask": grey PNG (white: the faces)|null}|null}
    DETAIL = {"model", "conditioning": {prompt, negative_prompt, ...}, "sampling": {sampler, steps, strength, ...}}

An upscale job is also a restore, a face fix and an upscale with detail (UpscaleRequest's restore, faces and
detail); its `beside` stays with the client, which saves the result. Model references in a job are names from
the server's catalogue (GET /models), never paths: `decode_job` takes `resolve(ref, kind) -> str`, the server's
own reference for a name, which raises UnknownModel for anything else. The engine's built-in names that are no
file pass as they are: the pixel upscalers ("Lanczos", "Nearest"), "demo-face", the hires fix's latent
upscalers. A face detector file cannot be sent (the server has no list of them): a face fix uses the server's
automatic detector.

Events come out as NDJSON, one JSON object a line (`encode_event` / `decode_event`):

    accepted {replica}, status {text}, step {step, total, preview: base64 JPEG (<= PREVIEW_SIDE a side) | null},
    result {image: PNG, seed, params: [[key, value], ...], note, request},
    model {ref, family, name, hash, kinds, variant}, alive {} (a heartbeat while the engine is busy without news),
    cancelled {}, error {kind, message}

A stream ends with the results followed by `done`, or with `cancelled` or `error`; a stream that ends otherwise
is a failed server (the client retries once).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import logging
from collections.abc import Callable

import numpy as np
from PIL import Image

from desktop.core.backend import GENERATION, PREPROCESS, GenerationJob, Job, ModelDescriptor, PreprocessJob, Result, \
    UpscaleJob
from desktop.core.control import MAX_CONTROLS, Control, Reference
from desktop.core.errors import InvalidRequest, ModelLoadError, SfumatoError
from desktop.core.faces import AUTO_DETECTOR, DEMO_FACE_RESTORER, FaceSettings
from desktop.core.geometry import Extent
from desktop.core.postprocess import PIXEL_UPSCALERS, UPSCALE, DetailSettings, UpscaleRequest
from desktop.core.request import DECODERS, HIRES_UPSCALERS, MAX_SIZE, GenerationRequest, Images

MAX_BODY = 64 * 1024 * 1024  # bytes of one request body
MAX_PICTURE_SIDE = MAX_SIZE  # pixels, any picture in a job
MAX_JOB_PIXELS = (MAX_CONTROLS * 2 + 2) * MAX_SIZE ** 2  # decoded pixels of all of one job's pictures together
PREVIEW_SIDE = 256
NDJSON = "application/x-ndjson"
TERMINAL = ("done", "cancelled", "error")
EVENTS = ("accepted", "status", "step", "result", "model", "alive", *TERMINAL)

# The kinds of model reference `resolve` is asked for.
MODEL, UPSCALER, HIRES_UPSCALER, CONTROLNET, ADAPTER = GENERATION, UPSCALE, "hires upscaler", "controlnet", "ipadapter"
DETECTOR_REFUSED = ("A face detector file cannot be sent to a server, which finds faces with its own (YuNet from "
                    "its detectors folder, else OpenCV's): use the automatic detector, or run the face fix on this "
                    "computer.")

Resolve = Callable[[str, str], str]


class ProtocolError(SfumatoError):
    """A job or event that is not what the protocol says (a bad field, a picture too large, a body too long)."""


class UnknownModel(SfumatoError):
    """A model name the server's catalogue does not have."""


class ServerRefused(SfumatoError):
    """The server refused the request before running it (a wrong token, a body too large)."""


# -- pictures


def encode_png(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, "PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class PixelBudget:
    """What is left of one job's MAX_JOB_PIXELS, taken from each PNG's header before the picture is decoded."""

    def __init__(self):
        self.limit = self.left = MAX_JOB_PIXELS

    def take(self, width: int, height: int) -> None:
        self.left -= width * height
        if self.left < 0:
            raise ProtocolError(f"The job's pictures come to {(self.limit - self.left) / 1e6:.3g} megapixels; the "
                                f"server takes at most {self.limit / 1e6:.3g} in one job: send smaller pictures or "
                                "fewer control layers.")


def decode_png(text: object, what: str, budget: PixelBudget | None = None) -> np.ndarray:
    """A base64 PNG -> uint8 array (HxW for a grey picture, HxWx3 / HxWx4); refuses one over MAX_PICTURE_SIDE, or
    over what is left of the job's `budget`, before decoding it."""
    if not isinstance(text, str):
        raise ProtocolError(f"The {what} must be a base64 PNG picture.")
    try:
        data = base64.b64decode(text, validate=True)
        with Image.open(io.BytesIO(data), formats=["PNG"]) as picture:
            if max(picture.size) > MAX_PICTURE_SIDE:
                raise ProtocolError(f"The {what} is {picture.width}x{picture.height}; pictures of at most "
                                    f"{MAX_PICTURE_SIDE} pixels a side can be sent to the server.")
            if budget is not None:
                budget.take(picture.width, picture.height)
            if picture.mode not in ("L", "RGB", "RGBA"):
                picture = picture.convert("RGBA" if "A" in picture.mode else "RGB")
            return np.asarray(picture).copy()
    except (binascii.Error, ValueError, OSError, Image.DecompressionBombError):
        raise ProtocolError(f"The {what} is not a readable PNG picture.") from None


def encode_preview(image: np.ndarray | None) -> str | None:
    """A small JPEG of a step's preview (longest side at most PREVIEW_SIDE)."""
    if image is None:
        return None
    picture = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    picture.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_preview(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    try:
        with Image.open(io.BytesIO(base64.b64decode(text, validate=True)), formats=["JPEG"]) as picture:
            if max(picture.size) > PREVIEW_SIDE:
                return None
            return np.asarray(picture.convert("RGB")).copy()
    except (binascii.Error, ValueError, OSError):
        return None  # a preview is not worth failing a job for


# -- jobs


def encode_job(job: Job) -> bytes:
    """The JSON body of POST /run."""
    if isinstance(job, GenerationJob):
        request = job.request
        data = {"kind": GENERATION, "request": request.to_dict(),
                "images": {"init": _png_or_none(request.images.init), "mask": _png_or_none(request.images.mask)},
                "controls": [{"model": c.model, "type": c.type, "weight": float(c.weight), "start": float(c.start),
                              "end": float(c.end), "preprocess": bool(c.preprocess), "image": encode_png(c.image)}
                             for c in request.controls],
                "references": [{"adapter": r.adapter, "mode": r.mode, "weight": float(r.weight),
                                "image": encode_png(r.image)} for r in request.references],
                "preview_method": job.preview_method, "preview_every": job.preview_every}
    elif isinstance(job, PreprocessJob):
        data = {"kind": PREPROCESS, "type": job.type, "image": encode_png(job.image)}
    elif isinstance(job, UpscaleJob):
        request = job.request
        data = {"kind": UPSCALE, "image": encode_png(request.image), "scale": float(request.scale),
                "size": None if request.size is None else [int(request.size.width), int(request.size.height)],
                "upscaler": request.upscaler, "parameters": request.parameters, "restore": request.restore,
                "detail": _detail_fields(request.detail), "faces": _face_fields(request.faces)}
    else:
        raise SfumatoError(f"A {getattr(job, 'kind', type(job).__name__)} job cannot run on a server.")
    return json.dumps(data).encode("utf-8")


def decode_job(body: bytes | dict, resolve: Resolve) -> Job:
    """The job of a POST /run body, with every model reference resolved by the server's `resolve`.
    Raises ProtocolError, InvalidRequest or UnknownModel with a sentence."""
    if isinstance(body, (bytes, bytearray)):
        if len(body) > MAX_BODY:
            raise ProtocolError(too_large(len(body)))
        try:
            body = json.loads(body)
        except (ValueError, RecursionError):
            raise ProtocolError("The job is not valid JSON; send it with Sfumato's RemoteBackend.") from None
    if not isinstance(body, dict):
        raise ProtocolError("The job must be a JSON object.")
    kind = body.get("kind")
    if kind == GENERATION:
        return _decode_generation(body, resolve)
    if kind == PREPROCESS:
        return PreprocessJob(_text(body, "type"), _picture(body.get("image"), "picture", rgb=True))
    if kind == UPSCALE:
        return UpscaleJob(_decode_upscale(body, resolve))
    raise ProtocolError(f"The server cannot run jobs of kind {kind!r}; it runs generation, upscale and "
                        "preprocess jobs.")


def _decode_generation(body: dict, resolve: Resolve) -> GenerationJob:
    request = GenerationRequest.from_dict(_dict(body, "request"))
    if request.decoder not in DECODERS:  # refused here, before the job waits for the engine
        raise InvalidRequest("decoder", f"must be one of {', '.join(DECODERS)}, got {request.decoder!r}")
    images = _dict(body, "images")
    init = images.get("init")
    mask = images.get("mask")
    controls, references = _list(body, "controls"), _list(body, "references")
    if len(controls) > MAX_CONTROLS or len(references) > MAX_CONTROLS:  # counted before any picture is decoded
        raise ProtocolError(f"The job has {len(controls)} control(s) and {len(references)} reference(s); at most "
                            f"{MAX_CONTROLS} of each work at once: hide or remove the others.")
    budget = PixelBudget()
    request = request.replace(
        model=resolve(request.model, MODEL),
        images=Images(None if init is None else _picture(init, "init image", budget=budget),
                      None if mask is None else _picture(mask, "mask", grey=True, budget=budget)),
        controls=tuple(_control(item, index, resolve, budget) for index, item in enumerate(controls)),
        references=tuple(_reference(item, index, resolve, budget) for index, item in enumerate(references)))
    if request.hires.enabled and request.hires.upscaler not in HIRES_UPSCALERS:
        request = request.replace(hires=request.hires.replace(upscaler=resolve(request.hires.upscaler,
                                                                                HIRES_UPSCALER)))
    method, every = body.get("preview_method", "approximate"), body.get("preview_every", 1)
    if not isinstance(method, str) or not _is_int(every) or not 1 <= every <= 1000:
        raise ProtocolError("preview_method must be text and preview_every a whole number from 1 to 1000.")
    return GenerationJob(request, method, every)


def _control(item: object, index: int, resolve: Resolve, budget: PixelBudget) -> Control:
    if not isinstance(item, dict):
        raise ProtocolError(f"Control {index + 1} must be a JSON object.")
    return Control(resolve(_text(item, "model"), CONTROLNET), _picture(item.get("image"), f"control {index + 1}'s "
                   "picture", rgb=True, budget=budget), _text(item, "type"), _number(item, "weight"), _number(item, "start"),
                   _number(item, "end"), bool(item.get("preprocess", False)))


def _reference(item: object, index: int, resolve: Resolve, budget: PixelBudget) -> Reference:
    if not isinstance(item, dict):
        raise ProtocolError(f"Reference {index + 1} must be a JSON object.")
    return Reference(_picture(item.get("image"), f"reference {index + 1}'s picture", rgb=True, budget=budget),
                     _number(item, "weight"), _text(item, "mode"), resolve(_text(item, "adapter"), ADAPTER))


def _decode_upscale(body: dict, resolve: Resolve) -> UpscaleRequest:
    """An upscale, a restore (a restorer's, or the diffusion restore: "Lanczos" then the detail pass), a face fix
    or an upscale with detail; validated, so a bad value is refused before the job waits for the engine."""
    size = body.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise ProtocolError("The upscale's size must be [width, height] or null.")
    budget = PixelBudget()
    image = _picture(body.get("image"), "picture", rgb=True, budget=budget)
    upscaler = _text(body, "upscaler")
    faces = body.get("faces")
    request = UpscaleRequest(image, _number(body, "scale"), None if size is None else Extent(*size),
                             upscaler if upscaler in PIXEL_UPSCALERS else resolve(upscaler, UPSCALER),
                             _text(body, "parameters"), detail=_detail(body.get("detail"), "detail", resolve),
                             restore=_text(body, "restore"),
                             faces=None if faces is None else _faces(faces, image, resolve, budget))
    return request.validated()


def _detail_fields(detail: DetailSettings | None) -> dict | None:
    if detail is None:
        return None
    return {"model": detail.model, "conditioning": _fields(detail.conditioning), "sampling": _fields(detail.sampling)}


def _detail(value: object, what: str, resolve: Resolve) -> DetailSettings | None:
    """The img2img pass of an upscale with detail or a diffusion restore, or the face detailer's inpaint."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError(f"The job's {what} must be a JSON object or null.")
    default = DetailSettings()
    parts = GenerationRequest.from_dict({"conditioning": _fields(default.conditioning) | _dict(value, "conditioning"),
                                         "sampling": _fields(default.sampling) | _dict(value, "sampling")})
    return DetailSettings(resolve(_text(value, "model"), MODEL), parts.conditioning, parts.sampling)


def _face_fields(faces: FaceSettings | None) -> dict | None:
    if faces is None:
        return None
    if faces.detector != AUTO_DETECTOR:
        raise SfumatoError(DETECTOR_REFUSED)
    return {"restorer": faces.restorer, "visibility": float(faces.visibility), "detector": faces.detector,
            "detailer": _detail_fields(faces.detailer), "padding": faces.padding, "blur": faces.blur,
            "resolution": faces.resolution,
            "mask": None if faces.mask is None else encode_png(np.asarray(faces.mask, bool).astype(np.uint8) * 255)}


def _faces(value: object, image: np.ndarray, resolve: Resolve, budget: PixelBudget) -> FaceSettings:
    """A face fix's settings: its face restorer by name ("demo-face" is built in), the detailer's model by name,
    the painted mask (white: the faces) at the picture's size."""
    if not isinstance(value, dict):
        raise ProtocolError("The job's faces must be a JSON object or null.")
    if value.get("detector", AUTO_DETECTOR) != AUTO_DETECTOR:
        raise ProtocolError(DETECTOR_REFUSED)
    restorer = _text(value, "restorer")
    mask = value.get("mask")
    if mask is not None:
        mask = _picture(mask, "face mask", grey=True, budget=budget) > 127
        if mask.shape != image.shape[:2]:
            raise ProtocolError(f"The face mask is {mask.shape[1]}x{mask.shape[0]} pixels and the picture "
                                f"{image.shape[1]}x{image.shape[0]}; paint the mask at the picture's size.")
    return FaceSettings(restorer if restorer in ("", DEMO_FACE_RESTORER) else resolve(restorer, UPSCALER),
                        _number(value, "visibility"), _detail(value.get("detailer"), "face detailer", resolve),
                        AUTO_DETECTOR, mask, _whole(value, "padding"), _whole(value, "blur"),
                        _whole(value, "resolution"))


# -- events


def encode_event(event: str, **fields) -> bytes:
    """One NDJSON line."""
    return json.dumps({"event": event, **fields}).encode("utf-8") + b"\n"


def decode_event(line: bytes | str) -> dict:
    try:
        event = json.loads(line)
    except ValueError:
        raise ProtocolError("The server sent a line that is not JSON; is the URL a Sfumato server?") from None
    if not isinstance(event, dict) or event.get("event") not in EVENTS:
        raise ProtocolError("The server sent an event Sfumato does not know; is the URL a Sfumato server of "
                            "this version?")
    return event


def step_event(step: int, total: int, preview: np.ndarray | None) -> bytes:
    return encode_event("step", step=int(step), total=int(total), preview=encode_preview(preview))


def error_event(error: BaseException) -> bytes:
    if isinstance(error, SfumatoError):
        return encode_event("error", kind=type(error).__name__, message=str(error))
    # its own words (an OSError's path on the server, ...) stay in the server's log
    logging.getLogger(__name__).error("The server failed to run a job", exc_info=error)
    return encode_event("error", kind="SfumatoError", message=f"The server failed to run the job "
                                                              f"({type(error).__name__}); its log has the details.")


def result_event(result: Result, asked: dict[str, str] | None = None) -> bytes:
    """`asked`: resolve's kind -> the name the client gave, written instead of the server's path (the model's,
    the hires fix's upscaler's)."""
    request, asked = result.request, asked or {}
    if isinstance(request, GenerationRequest):
        hires = request.hires.replace(upscaler=asked.get(HIRES_UPSCALER, request.hires.upscaler))
        sent = request.replace(model=asked.get(MODEL, request.model), hires=hires).to_dict()
    elif isinstance(request, UpscaleRequest):
        sent = {"parameters": request.parameters}
    else:
        sent = None
    return encode_event("result", image=encode_png(result.image), seed=int(result.seed),
                        params=[list(pair) for pair in result.params], note=result.note, request=sent)


def decode_result(event: dict, job: Job) -> Result:
    """A result event -> Result, its request the client's own (with its pictures) updated with what the run
    resolved (the seed, the sampler's name, ...)."""
    image = decode_png(event.get("image"), "result picture")
    params = event.get("params", [])
    if not isinstance(params, list) or not all(isinstance(p, list) and len(p) == 2 for p in params):
        raise ProtocolError("The server's result has parameters that are not [key, value] pairs.")
    if isinstance(job, GenerationJob):
        sent = GenerationRequest.from_dict(event.get("request"))
        request = sent.replace(model=job.request.model, images=job.request.images, controls=job.request.controls,
                               references=job.request.references)
    elif isinstance(job, UpscaleJob):
        request = job.request.replace(parameters=str((event.get("request") or {}).get("parameters", "")))
    else:
        request = job
    return Result(image, int(event.get("seed", -1)), request, tuple((str(k), str(v)) for k, v in params),
                  str(event.get("note", "")))


def model_event(descriptor: ModelDescriptor, public_ref: str) -> bytes:
    return encode_event("model", **describe_model(descriptor, public_ref))


def describe_model(descriptor: ModelDescriptor, public_ref: str) -> dict:
    return {"ref": public_ref, "family": descriptor.family, "name": descriptor.name, "hash": descriptor.hash,
            "kinds": sorted(descriptor.kinds), "variant": descriptor.variant, "few_step": descriptor.few_step,
            "guidance_embedded": descriptor.guidance_embedded}


def read_model(data: dict) -> ModelDescriptor:
    try:
        return ModelDescriptor(str(data["ref"]), str(data["family"]), str(data["name"]), str(data.get("hash", "")),
                               frozenset(str(k) for k in data.get("kinds", [GENERATION])),
                               str(data.get("variant") or ""),  # a server before the flow families sends none
                               few_step=str(data.get("few_step") or ""),  # nor one before the few-step models
                               guidance_embedded=data.get("guidance_embedded") is True)
    except (KeyError, TypeError):
        raise ProtocolError("The server described a model without its ref, family and name.") from None


def raise_error(event: dict) -> None:
    """Raise the SfumatoError an error event names (SfumatoError itself for a kind this side does not know)."""
    raise error_from(str(event.get("kind", "")), str(event.get("message", "The server failed without saying why.")))


def error_from(kind: str, message: str) -> SfumatoError:
    cls = _error_classes().get(kind, SfumatoError)
    error = cls.__new__(cls)
    SfumatoError.__init__(error, message)  # the server's sentence, whatever the class's own constructor takes
    if cls is InvalidRequest:
        error.field, error.message = message.partition(": ")[0], message.partition(": ")[2]
    elif cls is ModelLoadError:
        error.path, error.reason = "", message
    return error


def too_large(size: int | None = None, limit: int = MAX_BODY) -> str:
    told = f" ({size / 2**20:.3g} MiB)" if size else ""
    return (f"The job is too large{told}: the server takes at most {limit / 2**20:.3g} MiB; use smaller pictures or "
            "fewer control layers.")


def _error_classes() -> dict[str, type[SfumatoError]]:
    found, todo = {}, [SfumatoError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.__name__, cls)
        todo.extend(cls.__subclasses__())
    return found


# -- fields


def _png_or_none(image: np.ndarray | None) -> str | None:
    return None if image is None else encode_png(image)


def _picture(text: object, what: str, rgb: bool = False, grey: bool = False,
             budget: PixelBudget | None = None) -> np.ndarray:
    image = decode_png(text, what, budget)
    if grey and image.ndim != 2:
        raise ProtocolError(f"The {what} must be a grey (one channel) PNG.")
    if rgb and image.ndim != 3:
        image = np.repeat(image[..., None], 3, axis=2)
    return image


def _dict(body: dict, name: str) -> dict:
    value = body.get(name, {})
    if not isinstance(value, dict):
        raise ProtocolError(f"The job's {name} must be a JSON object.")
    return value


def _list(body: dict, name: str) -> list:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise ProtocolError(f"The job's {name} must be a list.")
    return value


def _text(body: dict, name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise ProtocolError(f"The job's {name} must be text.")
    return value


def _number(body: dict, name: str) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest(name, f"must be a number, got {value!r}")
    return float(value)


def _whole(body: dict, name: str) -> int:
    value = body.get(name)
    if not _is_int(value):
        raise InvalidRequest(name, f"must be a whole number, got {value!r}")
    return value


def _fields(part: object) -> dict:
    """A dataclass of plain values (Conditioning, Sampling) as a dict of them."""
    return {f.name: getattr(part, f.name) for f in dataclasses.fields(part)}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
