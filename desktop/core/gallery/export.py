"""Exporting gallery pictures: PNG, JPEG or WebP, resized or not, with their metadata or with none.

Kept metadata goes where other tools look for it: the PNG text chunks (the
`parameters`, Sfumato's own, a ComfyUI workflow...), or the EXIF UserComment of a JPEG or WebP,
as AUTOMATIC1111 writes it. Stripped means stripped: no text, EXIF, XMP or
ICC data at all, except the mark that says the picture is generated (the IPTC digital source type in XMP,
desktop/core/marking.py), which stays unless `keep_mark` is off too. An export of a picture Sfumato made that
keeps the mark is signed again with `signing` (content credentials, desktop/core/credentials.py), with a key made
for that file alone so that nothing links the exports: the action and the source type, and the parents' hashes
when metadata is kept; one without the mark carries no manifest, and another tool's picture is never signed as
Sfumato's (it keeps its source type alone). File names come from a
template (`{date}-{seed}-{prompt}`) and are made safe on every system. A file name is never stripped, so the
default for a stripped export leaves the prompt out (`{date}-{seed}`).
"""

from __future__ import annotations

import datetime as _dt
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, PngImagePlugin

from .. import atomic, credentials, lineage, marking
from ..imageio import XMP_KEY, open_picture, reading
from .index import ImageRecord
from .metadata import EXIF_IFD, USER_COMMENT, encode_user_comment

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
FIELDS = ("date", "time", "seed", "prompt", "model", "width", "height", "index", "name")
DEFAULT_TEMPLATE = "{date}-{seed}-{prompt}"
STRIPPED_TEMPLATE = "{date}-{seed}"  # stripping metadata is for privacy: the prompt stays out of the name too
MAX_NAME = 120  # characters before the extension: far from every system's limit
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')


@dataclass(frozen=True)
class ExportOptions:
    folder: Path
    format: str = "PNG"  # PNG, JPEG or WEBP
    quality: int = 95  # JPEG and WebP
    max_side: int | None = None  # shrink larger pictures to fit this (never enlarged)
    template: str | None = None  # None: default_template(keep_metadata)
    keep_metadata: bool = True
    keep_mark: bool = True  # the XMP digital source type of a picture that has one, even when metadata is stripped
    # signs each export that keeps the mark (None: content credentials are off); its `problems` say what was not
    signing: credentials.Signing | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.template is None:
            object.__setattr__(self, "template", default_template(self.keep_metadata))


def default_template(keep_metadata: bool) -> str:
    """The file-name template used unless the user writes their own: no prompt when metadata is stripped."""
    return DEFAULT_TEMPLATE if keep_metadata else STRIPPED_TEMPLATE


def template_fields(template: str) -> list[str]:
    """The fields a valid template names, in order, each once."""
    names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    return list(dict.fromkeys(names))


def check_template(template: str) -> None:
    """Raise ValueError naming what is wrong with a file-name template."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise ValueError(f"the file name template is not valid ({error}); write fields like {{seed}}") from None
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        raise ValueError(f"the file name template has unknown fields {', '.join(unknown)}; "
                         f"use {', '.join('{' + f + '}' for f in FIELDS)}")


def file_stem(template: str, record: ImageRecord, index: int) -> str:
    """The template filled in for one picture, made safe as a file name (without extension)."""
    when = _dt.datetime.fromtimestamp(record.created)
    values = {
        "date": when.strftime("%Y-%m-%d"), "time": when.strftime("%H%M%S"),
        "seed": "" if record.seed is None else str(record.seed), "prompt": " ".join(record.prompt.split())[:80],
        "model": record.model, "width": str(record.width), "height": str(record.height), "index": f"{index:04d}",
        "name": Path(record.path).stem,
    }
    return safe_name(template.format(**values))


def safe_name(name: str) -> str:
    """A file name every OS accepts: no separators or control characters, no "..", no reserved names, capped."""
    name = _UNSAFE.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .-_")
    name = re.sub(r"\.{2,}", ".", name)
    if name.split(".")[0].upper() in _RESERVED:
        name = f"_{name}"
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME].rstrip(" .-_")
    return name or "picture"


def export(items: Sequence[tuple[ImageRecord, Path]], options: ExportOptions,
           progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write each (record, picture file) to options.folder; returns the paths written."""
    check_template(options.template)
    suffix = FORMATS[options.format]
    options.folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    taken: set[str] = set()
    for number, (record, source) in enumerate(items, 1):
        stem = file_stem(options.template, record, number)
        target = options.folder / f"{stem}{suffix}"
        count = 1
        while target.name.lower() in taken or target.exists():
            count += 1
            target = options.folder / f"{stem}-{count}{suffix}"
        taken.add(target.name.lower())
        with reading(source.name), open_picture(source) as image:
            image.load()
            chunks = {k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str) and k != XMP_KEY}
            source_type = marking.source_type_in(marking.xmp_of(image)) if options.keep_mark else None
            if source_type not in (marking.TRAINED, marking.COMPOSITE):  # a camera's own type is not ours to repeat
                source_type = None
            picture = _prepared(ImageOps.exif_transpose(image), options)  # a phone's rotated photo stays upright
        parameters = chunks.get("parameters") or record.parameters
        ours = bool(source_type) and made_by_sfumato(source, chunks)
        xmp = marking.xmp_packet(source_type, ours) if source_type else ""
        atomic.write_with(target, lambda handle: _save(picture, handle, options, parameters, chunks, xmp))
        if ours and options.signing is not None:  # written first: a failure leaves it saved, unsigned
            parents = lineage.read_chunks(chunks)[1] if options.keep_metadata else ()
            options.signing.sign(target, credentials.Provenance(  # a key for this file alone: nothing links them
                source_type, tuple(credentials.Ingredient(p.role, p.hash) for p in parents)), throwaway=True)
        written.append(target)
        if progress is not None:
            progress(number, len(items))
    return written


def made_by_sfumato(source: Path, chunks: dict) -> bool:
    """Whether Sfumato made the picture: it carries Sfumato's pixel hash, or a manifest Sfumato wrote. Another
    tool's picture (imported) is never signed as Sfumato's: the export keeps only its source type."""
    if lineage.read_chunks(chunks)[0]:
        return True
    return credentials.read(source).software_agent.startswith("Sfumato ")


def _prepared(image: Image.Image, options: ExportOptions) -> Image.Image:
    """The pixels only (nothing of the source's metadata comes along), resized and in a mode the format takes."""
    alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    picture = image.convert("RGBA" if alpha and options.format != "JPEG" else "RGB")
    if alpha and options.format == "JPEG":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        picture = flat
    if options.max_side and max(picture.size) > options.max_side:
        picture.thumbnail((options.max_side, options.max_side), Image.Resampling.LANCZOS)
    picture.info.clear()
    return picture


def _save(picture: Image.Image, handle, options: ExportOptions, parameters: str, chunks: dict, xmp: str) -> None:
    """`xmp`: the marking's packet, "" for none."""
    if options.format == "PNG":
        info = PngImagePlugin.PngInfo() if options.keep_metadata or xmp else None
        if xmp:
            info.add_itxt(XMP_KEY, xmp)
        if options.keep_metadata:
            if parameters:
                info.add_text("parameters", parameters)
            for key, value in chunks.items():  # Sfumato's own, ComfyUI's workflow, InvokeAI's metadata...
                if key != "parameters":
                    info.add_text(key, value)
        picture.save(handle, format="PNG", pnginfo=info, compress_level=6)
        return
    extra = {"xmp": xmp.encode()} if xmp else {}
    if options.keep_metadata and parameters:
        exif = Image.Exif()
        exif.get_ifd(EXIF_IFD)[USER_COMMENT] = encode_user_comment(parameters)
        extra["exif"] = exif.tobytes()
    picture.save(handle, format=options.format, quality=options.quality, **extra)
