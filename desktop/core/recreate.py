"""Recreate: make a gallery picture again from its own parameters, on the current backend, and say whether the
result is the same picture pixel for pixel, so people can trust their parameters.

Only what a picture's metadata fully describes can be made again: a text-to-image picture (with or without the
hires fix; an X/Y/Z plot's cell is one), and a picture made from another picture (img2img, inpaint, outpaint) whose
init picture and mask are found in the gallery by the pixel hashes its lineage records (desktop/core/lineage.py):
its request (the sfumato chunk) holds the rest (size, strength, mask blur, masked content, inpaint area and
padding, margins). One whose init picture or mask is not there is refused naming which; so is one made with
ControlNet or reference pictures. The model is found by the name the picture records, before any model is
loaded, and its hash is checked against the picture's `Model hash`: another file of that name is named in the
verdict; no model of that name refuses.

The result is a check, not a new picture: it is not saved into the gallery. The window shows the verdict: a
status line when identical, else the original against the recreated picture with a difference picture and its
figures. A picture does not record the device it was made on, so it runs on the current backend's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from . import imageio, lineage, runs
from .backend import GENERATION, Backend, GenerationJob, ModelDescriptor
from .errors import InvalidRequest, SfumatoError
from .families import demo_kind
from .gallery.metadata import ImageMeta, model_stem, to_request
from .geometry import Margins
from .infotext import InfotextError, parse_infotext
from .progress import TaskState
from .request import GenerationRequest, Images, Mode

PLOT_KEY = "sfumato_plot"  # xyz.PLOT_KEY: a grid picture's chunk (xyz imports fonts; not needed here)
IDENTICAL = "Recreated: identical to the original, pixel for pixel."
DEVICE_NOTE = ("A picture does not record its device, so this ran on {device}: made on another device or precision? "
               "CPU and GPU results differ in the last bits.")


@dataclass(frozen=True)
class Comparison:
    identical: bool
    max_difference: int = 0  # the largest difference of one channel of one pixel, 0 to 255
    share_different: float = 0.0  # the share of pixels where any channel differs, 0 to 1
    diff: np.ndarray | None = field(default=None, repr=False)  # HxWx3 uint8, black where equal; None when same
    note: str = ""  # why there is no diff picture (the sizes differ)

    def figures(self) -> str:
        if self.identical:
            return "identical, pixel for pixel"
        if self.note:
            return self.note
        return f"{self.share_different:.2%} of the pixels differ, by at most {self.max_difference} of 255"


def compare(original: np.ndarray, recreated: np.ndarray) -> Comparison:
    """Pixel-identical or not; when not, the figures and a difference picture: black where equal, every pixel that
    differs at least dark grey, brighter with a larger difference (the largest one white)."""
    a, b = (np.asarray(image)[..., :3] for image in (original, recreated))
    if a.shape != b.shape:
        return Comparison(False, note=f"the sizes differ: {a.shape[1]} x {a.shape[0]} against "
                                      f"{b.shape[1]} x {b.shape[0]}")
    difference = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)
    largest = int(difference.max()) if difference.size else 0
    if largest == 0:
        return Comparison(True)
    changed = difference > 0
    shown = np.where(changed, 64 + (difference.astype(np.float32) * (191 / largest)), 0).round().astype(np.uint8)
    return Comparison(False, largest, float(changed.mean()), np.repeat(shown[..., None], 3, axis=2))


def model_sentence(name: str, picture_hash: str, found: ModelDescriptor) -> str:
    """"" when `found` (the model of the picture's name here) has the picture's hash, or either hash is unknown;
    else the sentence naming the different file."""
    if not picture_hash or not found.hash or _same_hash(picture_hash, found.hash):
        return ""
    return (f"This picture was made with {name} [{picture_hash}]; the model of that name here has hash "
            f"{found.hash}, a different file: the result will differ.")


def _same_hash(a: str, b: str) -> bool:
    """A1111's short hashes are prefixes of the sha256: 8 (old) or 10 hex digits."""
    a, b = a.strip().lower(), b.strip().lower()
    shorter = min(len(a), len(b))
    return shorter >= 8 and a[:shorter] == b[:shorter]


def find_model(name: str, models: list[ModelDescriptor]) -> ModelDescriptor:
    """The generation model of that name (or file name, with or without its extension); SfumatoError when none."""
    for descriptor in models:
        if is_named(descriptor, name):
            return descriptor
    raise no_model(name)


def is_named(descriptor: ModelDescriptor, name: str) -> bool:
    return GENERATION in descriptor.kinds and model_stem(name) in (model_stem(descriptor.name),
                                                                   model_stem(Path(descriptor.ref).name))


def may_be_named(ref: str, name: str) -> bool:
    """Whether the model `ref` (the prompt panel's) can be the model called `name`, told without loading it: the
    demo model is tiny-<kind>, a file or folder is named by its stem; a Hub id or a server's model may be."""
    kind = demo_kind(ref)
    if kind is not None:
        return model_stem(name) in (f"tiny-{kind}", model_stem(ref))
    path = Path(ref.rstrip("/\\"))
    if path.is_absolute() or path.exists():
        return model_stem(name) in (model_stem(path.name), model_stem(path.stem))
    return True


def no_model(name: str) -> SfumatoError:
    if not name:
        return SfumatoError("This picture does not say which model made it, so it cannot be recreated.")
    return SfumatoError(f"This picture was made with {name}, and no model of that name is in your model folders: "
                        "add it, then recreate it again.")


def recreate_request(meta: ImageMeta, chunks: dict[str, str] | None = None) -> tuple[GenerationRequest, str]:
    """(the request that makes the picture again, its model's hash as recorded) from a picture's metadata
    (desktop/core/gallery/metadata.py); `request.model` is the model's NAME, found at run time. SfumatoError with
    a sentence for a picture that cannot be made again."""
    if chunks and PLOT_KEY in chunks:
        raise SfumatoError("This is an X/Y/Z plot's grid: open its grid view and recreate one of its cells.")
    if not meta.source:
        raise SfumatoError(meta.notice or "This picture does not say how it was made, so it cannot be recreated.")
    request = _stored_request(meta)
    parents = lineage.read_chunks(chunks or {})[1]
    if request is not None and request.mode is not Mode.TXT2IMG and not any(p.role == "init" for p in parents):
        raise SfumatoError(f"This picture was made from another picture ({request.mode.value}) that it does not "
                           "name (it was saved before Sfumato recorded where pictures come from), so it cannot be "
                           "recreated.")
    if request is None:
        if "denoising strength" in meta.hires and not meta.hires.keys() - {"denoising strength"}:
            raise SfumatoError("This picture was made from another picture (img2img) that it does not name, so it "
                               "cannot be recreated.")
        request = to_request(meta, GenerationRequest())
    if request.controls or request.references:
        raise SfumatoError("This picture was made with ControlNet or reference pictures, which are not stored with "
                           "it, so it cannot be recreated.")
    if meta.seed is None and request.sampling.seed < 0:
        raise SfumatoError("This picture does not say which seed made it, so it cannot be recreated.")
    request = request.replace(model=meta.model, sampling=request.sampling.replace(batch_size=1))
    try:
        _with_placeholders(request).validate()  # its pictures are found in the gallery later
    except InvalidRequest as error:
        raise SfumatoError(f"This picture's parameters cannot be run again: {str(error).rstrip('.')}.") from None
    return request, _recorded_hash(meta)


def _with_placeholders(request: GenerationRequest) -> GenerationRequest:
    """The request with blank pictures where its init picture and mask go, to check the rest of it."""
    if request.mode is Mode.TXT2IMG:
        return request
    height, width = request.height, request.width
    if request.mode is Mode.OUTPAINT:  # its size is the result's: a transparent init of that size grows nothing
        return request.replace(images=Images(np.zeros((height, width, 4), np.uint8)), outpaint=Margins())
    mask = np.full((height, width), 255, np.uint8) if request.mode is Mode.INPAINT else None
    return request.replace(images=Images(np.zeros((height, width, 3), np.uint8), mask))


SOURCE_NAMES = {"init": "the picture this one was made from", "mask": "the mask it was inpainted with"}
WHY_MISSING = {"init": "deleted, or changed on the canvas before it was used",
               "mask": "a mask painted on the canvas is never saved there"}


def find_sources(chunks: dict[str, str], request: GenerationRequest, store) -> tuple[tuple[str, str, str], ...]:
    """(role, pixel hash, file) of the init picture and the mask a picture records (lineage.py), found in the
    gallery `store` (a GalleryStore) by hash; SfumatoError naming the ones that are not there. () for txt2img."""
    if request.mode is Mode.TXT2IMG:
        return ()
    parents = lineage.read_chunks(chunks)[1]
    wanted = [next(p for p in parents if p.role == "init")]
    wanted += [p for p in parents if p.role == "mask"][:1]
    if request.mode is Mode.INPAINT and len(wanted) < 2:
        raise SfumatoError("This inpainted picture does not name its mask, so it cannot be recreated.")
    ids = store.index.by_hash([p.hash for p in wanted]) if store is not None else {}
    missing = [p.role for p in wanted if p.hash not in ids]
    if missing:
        waiting = store is not None and bool(store.index.unhashed(1))
        why = ("yet (the gallery is still reading its older pictures: try again in a moment)" if waiting
               else f"({'; '.join(WHY_MISSING[role] for role in missing)})")
        raise SfumatoError(f"Recreate needs {' and '.join(SOURCE_NAMES[role] for role in missing)}, and "
                           f"{'neither is' if len(missing) > 1 else 'it is not'} in the gallery {why}.")
    records = store.records([ids[p.hash][0] for p in wanted])
    return tuple((p.role, p.hash, str(store.path(records[ids[p.hash][0]]))) for p in wanted)


def _stored_request(meta: ImageMeta) -> GenerationRequest | None:
    if not meta.request:
        return None
    try:
        return GenerationRequest.from_dict(meta.request)
    except (InvalidRequest, TypeError):
        return None


def _recorded_hash(meta: ImageMeta) -> str:
    try:
        params = parse_infotext(meta.parameters).params if meta.parameters else {}
    except InfotextError:
        return ""
    return next((value.strip() for key, value in params.items() if key.lower() == "model hash"), "")


def _steps(request: GenerationRequest) -> int:
    steps = request.sampling.steps
    if request.hires.enabled:
        steps += request.hires.steps or request.sampling.steps
    return steps


@dataclass
class RecreateRun:
    """A Run (desktop/core/runs.py) that makes `path`'s picture again and compares. After it ran, `verdict` holds
    what the window shows: the sentences, the comparison and both pictures."""

    path: str  # the original picture
    request: GenerationRequest  # from recreate_request: model is the model's name
    model_hash: str = ""  # as the picture records it
    panel_model: str = ""  # the prompt panel's model ref: a file or folder that may be outside the model folders
    sources: tuple[tuple[str, str, str], ...] = ()  # find_sources: (role, pixel hash, file) of its init and mask
    kind: ClassVar[str] = "recreate"
    verdict: Verdict | None = field(default=None, compare=False)

    def describe(self) -> str:
        return f"Recreate {Path(self.path).name}"

    def pictures(self) -> int:
        return 1

    def total_steps(self) -> int:
        return _steps(self.request)

    def run(self, backend: Backend, state: TaskState, context: runs.RunContext) -> runs.RunOutcome:
        began = time.perf_counter()
        try:
            original = imageio.load_image(self.path, keep_alpha=False)
        except (OSError, ValueError) as error:
            raise SfumatoError(f"{Path(self.path).name} can no longer be read ({error}), so it cannot be "
                               "recreated.") from None
        images = self._images()
        name = self.request.model
        found = next((model for model in backend.models() if is_named(model, name)), None)
        if found is None and not (self.panel_model and may_be_named(self.panel_model, name)):
            raise no_model(name)  # before any model is loaded: a refusal switches none
        device = backend.start(state)
        if found is None:  # a file outside the model folders, or the demo model: its name is
            found = backend.load(self.panel_model, state)  # known once loaded (what Generate would load)
        if found is None or not is_named(found, name):
            raise no_model(name)
        loaded = backend.load(found.ref, state)
        request = self.request.replace(model=found.ref, images=images).resolved()
        state.status(f"Recreating {Path(self.path).name}")
        preview = getattr(context.settings, "preview_method", "approximate"), \
            getattr(context.settings, "preview_every", 1)
        result = backend.run(GenerationJob(request, *preview), state)[0]
        comparison = compare(original, result.image)
        self.verdict = Verdict(Path(self.path).name, comparison, original, result.image,
                               model_sentence(self.request.model, self.model_hash, loaded), device,
                               time.perf_counter() - began)
        return runs.RunOutcome([], self.verdict.summary())

    def _images(self) -> Images:
        """The init picture and mask from their files, checked to be the pixels the picture was made from."""
        found = {}
        for role, wanted, path in self.sources:
            what = SOURCE_NAMES[role].replace("this one", "it")
            try:
                pixels = imageio.load_mask(path) if role == "mask" else imageio.load_image(path)
            except (OSError, ValueError) as error:  # ImageError too
                raise SfumatoError(f"{Path(path).name}, {what}, can no longer be read ({error}), so "
                                   f"{Path(self.path).name} cannot be recreated.") from None
            if pixels.ndim == 3 and pixels.shape[2] == 4 and (pixels[..., 3] == 255).all():
                pixels = np.ascontiguousarray(pixels[..., :3])  # opaque: the RGB it was sent as
            if lineage.pixel_hash(pixels) != wanted:
                raise SfumatoError(f"{Path(path).name}, {what}, has changed since, so {Path(self.path).name} "
                                   "cannot be recreated.")
            found[role] = pixels
        return Images(found.get("init"), found.get("mask"))

    def encode(self) -> dict:
        return {"kind": self.kind, "path": self.path, "request": self.request.to_dict(),
                "model_hash": self.model_hash, "panel_model": self.panel_model,
                "sources": [list(source) for source in self.sources]}


@dataclass(frozen=True)
class Verdict:
    name: str  # the original's file name
    comparison: Comparison
    original: np.ndarray = field(repr=False)
    recreated: np.ndarray = field(repr=False)
    model: str = ""  # model_sentence's: "" when the model is the picture's (or cannot be told)
    device: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        if self.comparison.identical:
            return " ".join(text for text in (IDENTICAL, self.model) if text)
        said = [f"Recreated {self.name}: not identical: {self.comparison.figures()}.", self.model]
        said.append(DEVICE_NOTE.format(device=self.device or "the current backend's device"))
        return " ".join(text for text in said if text)


def decode(data: dict) -> RecreateRun:
    try:
        sources = tuple((str(role), str(pixel_hash), str(path)) for role, pixel_hash, path in data.get("sources", ())
                        if role in SOURCE_NAMES)
        return RecreateRun(str(data["path"]), GenerationRequest.from_dict(data["request"]),
                           str(data.get("model_hash", "")), str(data.get("panel_model", "")), sources)
    except (KeyError, TypeError, ValueError, InvalidRequest):
        raise SfumatoError("A queued recreate was damaged and was skipped; recreate the picture again.") from None


def prepare(path: str | Path, panel_model: str = "", store=None) -> RecreateRun:
    """The RecreateRun of a picture file, read off the GUI thread; SfumatoError with a sentence when it cannot be
    made again (or read). `store`: the gallery (a GalleryStore) where the pictures it was made from are found."""
    from .gallery.metadata import exif_chunks, meta_from_chunks

    try:
        with imageio.open_picture(path) as image:
            image.load()
            chunks = {k: v for k, v in {**image.info, **getattr(image, "text", {})}.items()
                      if isinstance(k, str) and isinstance(v, str)}
            if image.format in ("JPEG", "WEBP"):  # A1111's and exports' parameters are in EXIF, as the gallery reads
                chunks = {**exif_chunks(image), **chunks}
    except (OSError, ValueError, SyntaxError) as error:
        raise SfumatoError(f"{Path(path).name} could not be read ({error}), so it cannot be recreated.") from None
    request, model_hash = recreate_request(meta_from_chunks(chunks), chunks)
    return RecreateRun(str(path), request, model_hash, panel_model, find_sources(chunks, request, store))


runs.register(RecreateRun.kind, decode)
