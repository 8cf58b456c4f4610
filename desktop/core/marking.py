"""Saying in a machine-readable way that a picture is generated: the IPTC digital source type in XMP.

The EU AI Act (article 50) expects generated pictures to be marked so that software can tell. Cameras, Adobe's
tools and news agencies use the IPTC "digital source type" for this, so every picture Sfumato saves carries an
XMP packet with `Iptc4xmpExt:DigitalSourceType` and `xmp:CreatorTool` "Sfumato <version>": in a PNG's iTXt chunk
`XML:com.adobe.xmp`, in a JPEG's APP1 segment, in a WebP's XMP chunk (Pillow writes the last two with `xmp=`).

Which type (decided simply, from the request alone):
- a picture made from a prompt only (txt2img, a plot cell or grid of them): trainedAlgorithmicMedia;
- a picture the model changed (img2img, inpaint, outpaint, upscale with detail, the diffusion restore, the face
  fix): compositeWithTrainedAlgorithmicMedia;
- a plain model upscale or restore: the type its source file carries when that is known, else
  trainedAlgorithmicMedia when the source had a generation's parameters (not only an earlier upscale's
  Postprocess keys), else compositeWithTrainedAlgorithmicMedia (a user's picture whose detail an upscaler made up).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from xml.sax.saxutils import quoteattr

from PIL import Image

from . import infotext
from .imageio import XMP_KEY, open_picture
from .postprocess import UpscaleRequest
from .request import GenerationRequest, Mode

CV = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = CV + "trainedAlgorithmicMedia"
COMPOSITE = CV + "compositeWithTrainedAlgorithmicMedia"
MAX_XMP = 1 << 20  # a longer packet is not read

_PACKET = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    Iptc4xmpExt:DigitalSourceType={source}
    xmp:CreatorTool={tool}/>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="r"?>"""

# The attribute form (what Sfumato and exiftool write) and the element forms (<...>uri</...> or rdf:resource).
_FOUND = re.compile(r"""DigitalSourceType\s*=\s*["']([^"'<>]{1,300})["']"""
                    r"""|DigitalSourceType[^>]{0,300}?rdf:resource\s*=\s*["']([^"'<>]{1,300})["']"""
                    r"""|DigitalSourceType\s*>\s*([^<\s]{1,300})\s*<""")


_URI = re.compile(r"https?://[^\s&<>\"']+")


def version() -> str:
    try:
        return metadata.version("sfumato")
    except metadata.PackageNotFoundError:
        return "0.1.0"


def source_type(request) -> str:
    """The IPTC digital source type (a full URI) of what `request` makes (see the module's notes)."""
    if isinstance(request, GenerationRequest):
        return TRAINED if request.mode == Mode.TXT2IMG else COMPOSITE
    if isinstance(request, UpscaleRequest):
        if request.detail is not None or request.faces is not None:
            return COMPOSITE
        known = read_source_type(request.beside) if request.beside else None
        return known or (TRAINED if _from_a_generation(request.parameters) else COMPOSITE)
    raise TypeError(f"no source type for {type(request).__name__}")


def _from_a_generation(parameters: str) -> bool:
    """Whether an upscale's parameters are a generation's (a prompt, its keys), not only the Postprocess keys of
    A1111's Extras that an upscale of a photo gets."""
    if not parameters.strip():
        return False
    try:
        info = infotext.parse_infotext(parameters)
    except infotext.InfotextError:
        return True
    return bool(info.prompt.strip()) or any(not key.startswith("Postprocess ") for key in info.params)


def xmp_packet(source: str, ours: bool = True) -> str:
    """The XMP packet that says `source` (a full IPTC URI) and, for a picture Sfumato made (`ours`), names
    Sfumato as the tool (another tool's picture is exported with its source type alone)."""
    packet = _PACKET if ours else _PACKET.replace("\n    xmp:CreatorTool={tool}", "")
    return packet.format(source=quoteattr(source), tool=quoteattr(f"Sfumato {version()}"))


def chunks(request, enabled: bool = True) -> dict[str, str]:
    """The PNG chunk that marks what `request` makes, or none when marking is turned off (File > Settings)."""
    return {XMP_KEY: xmp_packet(source_type(request))} if enabled else {}


def source_type_in(xmp: str | bytes | None) -> str | None:
    """The digital source type an XMP packet names, or None."""
    if not xmp:
        return None
    if isinstance(xmp, bytes):
        xmp = xmp[:MAX_XMP].decode("utf-8", "replace")
    found = _FOUND.search(xmp[:MAX_XMP])
    value = next((group for group in found.groups() if group), None) if found else None
    return value if value and _URI.fullmatch(value) else None  # an entity (&x;) is never expanded nor passed on


def xmp_of(image) -> str | bytes | None:
    """The XMP packet of an opened Pillow picture: a PNG's iTXt `XML:com.adobe.xmp`, a JPEG's or WebP's XMP."""
    info = image.info
    return info.get(XMP_KEY) or info.get("xmp")


def read_source_type(path: str | Path) -> str | None:
    """The digital source type a PNG, JPEG or WebP file carries, or None (none, or not readable)."""
    try:
        with open_picture(path) as image:
            if image.format == "PNG":
                image.load()  # text chunks after the pixels are read only then
            return source_type_in(xmp_of(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
