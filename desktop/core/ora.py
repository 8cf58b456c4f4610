"""OpenRaster (.ora) files: a zip of stack.xml and one PNG per layer, as Krita, GIMP and MyPaint read.

Written as the spec asks: `mimetype` first and uncompressed, `stack.xml`
(topmost layer first), `data/*.png`, `mergedimage.png` and a thumbnail of at
most 256 pixels. Sfumato's own facts ride in attributes of its namespace: the
generation frame, and which layers are masks. A mask is saved as a hidden
layer of white paint whose alpha is the mask, so other programs show it
sensibly; Sfumato reads it back as a mask. A control layer is an ordinary
layer with `sfumato:control="canny"` (its kind) and its model, weight, start
and end beside it; the merged image leaves it out, as Sfumato's picture does.

Reading accepts what other programs write: nested stacks are flattened
(their offsets, opacity and visibility applied to their layers). Sizes,
layer counts and the XML are bounded, and every failure is an OraError with
a sentence to show. Members are read as streams that together unpack at most
MAX_UNPACKED bytes, whatever sizes the zip declares, and only stored or
deflated members are read (bzip2 and LZMA inflate in one unbounded step).
Layers are decoded by imageio, so only raster formats ever open.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from PIL import Image

from . import atomic
from .control_layers import ControlSpec
from .document import MAX_EXTENT, DocumentSnapshot, LayerData, clamp_frame, default_frame
from .errors import SfumatoError
from .geometry import Bounds, Extent, Point
from .imageio import ImageError, decode_image

MIMETYPE = "image/openraster"
NS = "https://sfumato.app/ns/ora"
THUMBNAIL = 256
MAX_LAYERS = 1000
MAX_TOTAL_PIXELS = 160 * 2**20  # over all layers (640 MiB of RGBA): 8 layers of 4096x4096 fit
MAX_STACK_XML = 8 * 2**20
MAX_UNPACKED = 8 * MAX_TOTAL_PIXELS + MAX_STACK_XML  # all members read, unpacked: 16-bit RGBA layers stored raw fit
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}  # what OpenRaster writers use

ElementTree.register_namespace("sfumato", NS)


class OraError(SfumatoError):
    pass


# What a damaged or hostile zip member raises when it is opened or read.
UNPACK_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, ValueError, OSError)


# -- writing ------------------------------------------------------------------------------


def write(path: str | Path, snapshot: DocumentSnapshot, compress_level: int = 6) -> None:
    """Save atomically: a crash leaves the previous file or the new one, never half of one."""
    atomic.write_with(Path(path), lambda handle: _write_zip(handle, snapshot, compress_level))


def _write_zip(handle, snapshot: DocumentSnapshot, compress_level: int) -> None:
    with zipfile.ZipFile(handle, "w") as archive:
        archive.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        archive.writestr("stack.xml", stack_xml(snapshot), compress_type=zipfile.ZIP_DEFLATED)
        for index, layer in enumerate(snapshot.layers):
            archive.writestr(_src(index), _png(_layer_image(layer), compress_level))
        merged = Image.fromarray(np.ascontiguousarray(snapshot.composite()))
        archive.writestr("mergedimage.png", _png(merged, compress_level))
        merged.thumbnail((THUMBNAIL, THUMBNAIL))
        archive.writestr("Thumbnails/thumbnail.png", _png(merged, compress_level))


def stack_xml(snapshot: DocumentSnapshot) -> bytes:
    frame = snapshot.frame
    image = ElementTree.Element("image", {
        "version": "0.0.5", "w": str(snapshot.extent.width), "h": str(snapshot.extent.height),
        "xres": "72", "yres": "72", f"{{{NS}}}frame": f"{frame.x} {frame.y} {frame.width} {frame.height}",
    })
    stack = ElementTree.SubElement(image, "stack")
    for index in reversed(range(len(snapshot.layers))):  # OpenRaster lists the topmost layer first
        layer = snapshot.layers[index]
        visible = "visible" if layer.visible else "hidden"
        attributes = {
            "name": layer.name, "src": _src(index), "x": str(layer.offset.x), "y": str(layer.offset.y),
            "opacity": f"{layer.opacity:.4g}", "visibility": visible, "composite-op": "svg:src-over",
            "edit-locked": "true" if layer.locked else "false",
        }
        if index == snapshot.active:
            attributes["selected"] = "true"
        if layer.kind == "mask":
            attributes.update({"visibility": "hidden", f"{{{NS}}}kind": "mask", f"{{{NS}}}visibility": visible})
        elif layer.control is not None:
            attributes.update({f"{{{NS}}}{key}": value for key, value in layer.control.to_attributes().items()})
        ElementTree.SubElement(stack, "layer", attributes)
    return ElementTree.tostring(image, encoding="utf-8", xml_declaration=True)


def _src(index: int) -> str:
    return f"data/layer{index:03d}.png"


def _layer_image(layer: LayerData) -> Image.Image:
    if layer.kind == "mask":
        pixels = np.empty(layer.pixels.shape + (4,), np.uint8)
        pixels[..., :3] = 255
        pixels[..., 3] = layer.pixels
        return Image.fromarray(pixels)
    return Image.fromarray(np.ascontiguousarray(layer.pixels))


def _png(image: Image.Image, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


# -- reading ------------------------------------------------------------------------------


def read(path: str | Path) -> DocumentSnapshot:
    """Open an .ora file. Raises OraError saying what is wrong with it."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_zip(archive, path.name)
    except FileNotFoundError:
        raise OraError(f"{path.name} does not exist.") from None
    except OSError as error:
        raise OraError(f"{path.name} could not be read: {error.strerror or error}.") from None
    except UNPACK_ERRORS:  # not a zip, a damaged one, or one using features Python's zipfile lacks
        raise OraError(f"{path.name} is not an OpenRaster file: it is not a zip archive, or it is damaged.") from None


def _read_zip(archive: zipfile.ZipFile, name: str) -> DocumentSnapshot:
    def fail(why: str) -> OraError:
        return OraError(f"{name} is not an OpenRaster file Sfumato can open: {why}.")

    budget = [MAX_UNPACKED]
    try:
        info = archive.getinfo("stack.xml")
    except KeyError:
        raise fail("it has no stack.xml") from None
    if info.file_size > MAX_STACK_XML:
        raise fail("its stack.xml is too large")
    try:
        with _open_member(archive, info, budget, fail) as member:
            text = member.read(MAX_STACK_XML + 1)
        if len(text) > MAX_STACK_XML:
            raise fail("its stack.xml is too large")
        root = ElementTree.fromstring(text)
    except _TooLarge:
        raise fail("its stack.xml is too large") from None
    except ElementTree.ParseError as error:
        raise fail(f"its stack.xml is not valid XML ({error})") from None
    except UNPACK_ERRORS as error:  # CRC errors, encrypted members, broken deflate data
        raise fail(f"its stack.xml cannot be unpacked ({error})") from None
    if root.tag != "image":
        raise fail("stack.xml does not start with <image>")
    extent = Extent(_int(root, "w", 0), _int(root, "h", 0))
    if not (1 <= extent.width <= MAX_EXTENT and 1 <= extent.height <= MAX_EXTENT):
        raise fail(f"its size {extent.width}x{extent.height} is outside 1 to {MAX_EXTENT} pixels")
    top = root.find("stack")
    if top is None:
        raise fail("stack.xml has no <stack>")
    entries: list[tuple[ElementTree.Element, Point, float, bool]] = []
    _collect(top, Point(0, 0), 1.0, True, entries, depth=0)
    if len(entries) > MAX_LAYERS:
        raise fail(f"it has {len(entries)} layers; Sfumato opens up to {MAX_LAYERS}")
    layers, active, total = [], None, 0
    for element, origin, opacity, visible in reversed(entries):  # bottom first
        layer = _read_layer(archive, element, origin, opacity, visible, fail, budget)
        total += layer.pixels.shape[0] * layer.pixels.shape[1]
        if total > MAX_TOTAL_PIXELS:
            raise fail("its layers together are too large to open")
        if element.get("selected") == "true":
            active = len(layers)
        layers.append(layer)
    return DocumentSnapshot(extent, _frame(root.get(f"{{{NS}}}frame"), extent), tuple(layers), active)


def _collect(stack, origin: Point, opacity: float, visible: bool, out: list, depth: int) -> None:
    """Layers of a stack and its nested stacks, topmost first, with the stacks' offsets applied."""
    if depth > 32:
        raise OraError("The file's layer groups are nested too deeply.")
    for child in stack:
        x = origin.x + _int(child, "x", 0)
        y = origin.y + _int(child, "y", 0)
        child_opacity = opacity * _opacity(child)
        child_visible = visible and child.get("visibility", "visible") != "hidden"
        if child.tag == "stack":
            _collect(child, Point(x, y), child_opacity, child_visible, out, depth + 1)
        elif child.tag == "layer":
            out.append((child, Point(x, y), child_opacity, child_visible))
            if len(out) > MAX_LAYERS:
                return


def _read_layer(archive, element, origin: Point, opacity: float, visible: bool, fail, budget) -> LayerData:
    src = element.get("src", "")
    try:
        data = _open_member(archive, archive.getinfo(src), budget, fail)
    except KeyError:
        raise fail(f"the layer {element.get('name', src)!r} points to {src!r}, which is missing") from None
    except UNPACK_ERRORS as error:
        raise fail(f"{src} cannot be unpacked ({error})") from None
    try:
        with data:
            pixels = decode_image(data, src)
    except ImageError as error:
        raise fail(str(error).rstrip(".")) from None
    except _TooLarge:
        raise fail(f"its layers unpack to more than {MAX_UNPACKED >> 20} MB") from None
    except UNPACK_ERRORS as error:
        raise fail(f"{src} cannot be unpacked ({error})") from None
    name = element.get("name") or Path(src).stem
    locked = element.get("edit-locked") == "true"
    if element.get(f"{{{NS}}}kind") == "mask":
        alpha = pixels[..., 3] if pixels.shape[2] == 4 else pixels[..., 0]
        visible = element.get(f"{{{NS}}}visibility", "visible") != "hidden"
        return LayerData("mask", name, np.ascontiguousarray(alpha), visible, 1.0, locked, origin)
    if pixels.shape[2] == 3:
        pixels = np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])
    control = ControlSpec.from_attributes(lambda key: element.get(f"{{{NS}}}{key}"))
    return LayerData("image", name, pixels, visible, opacity, locked, origin, control)


class _TooLarge(Exception):
    """The archive's members unpack to more than MAX_UNPACKED bytes (never an OSError, so no reader swallows it)."""


def _open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int], fail) -> _Member:
    if info.compress_type not in METHODS:
        raise fail(f"{info.filename} is packed with a compression method Sfumato does not read "
                   f"(only {' or '.join(METHODS.values())}); save it again from the program that made it")
    return _Member(archive.open(info), info.file_size, budget)


class _Member(io.RawIOBase):
    """A zip member as a seekable stream charged against a byte budget shared by the archive.

    Every byte unpacked counts, those a seek skips or re-reads too; past the budget _TooLarge is raised. The
    declared sizes play no part: a member that unpacks to more than it says is stopped all the same.
    """

    def __init__(self, member, size: int, budget: list[int]):
        super().__init__()
        self._member, self._size, self._budget = member, size, budget

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._member.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        here = self._member.tell()
        target = offset + {io.SEEK_SET: 0, io.SEEK_CUR: here, io.SEEK_END: self._size}[whence]
        self._charge(target - here if target >= here else target)  # back means unpacking again from the start
        return self._member.seek(target)

    def readinto(self, buffer) -> int:
        """Fills `buffer` unless the member ends (Pillow takes a short read for a truncated file)."""
        view, done = memoryview(buffer).cast("B"), 0
        while done < len(view):  # a step at a time: one big read would unpack it all at once
            data = self._member.read(min(len(view) - done, self._budget[0] + 1, 1 << 20))
            if not data:
                break
            self._charge(len(data))
            view[done:done + len(data)] = data
            done += len(data)
        return done

    def _charge(self, size: int) -> None:
        if size > self._budget[0]:
            raise _TooLarge
        self._budget[0] -= max(size, 0)

    def close(self) -> None:
        self._member.close()
        super().close()


def _frame(text: str | None, extent: Extent) -> Bounds:
    """The saved frame, if it is a sensible one near the picture; else the default frame."""
    try:
        x, y, w, h = (int(v) for v in (text or "").split())
    except (ValueError, OverflowError):
        return default_frame(extent, Extent(512, 512))
    if not (-MAX_EXTENT <= x <= MAX_EXTENT and -MAX_EXTENT <= y <= MAX_EXTENT):
        return default_frame(extent, Extent(512, 512))
    return clamp_frame(Bounds(x, y, min(max(w, 0), MAX_EXTENT), min(max(h, 0), MAX_EXTENT)))


def _int(element, key: str, default: int) -> int:
    try:
        value = int(float(element.get(key, default)))
    except (TypeError, ValueError, OverflowError):  # "inf", "1e999"
        return default
    return max(-MAX_EXTENT * 4, min(MAX_EXTENT * 4, value))


def _opacity(element) -> float:
    try:
        value = float(element.get("opacity", 1.0))
    except (TypeError, ValueError):
        return 1.0
    return min(1.0, max(0.0, value)) if value == value else 1.0
