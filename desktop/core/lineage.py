"""Lineage: which pictures a result was made from, by a hash of their pixels.

A picture's hash is of its PIXELS (shape and bytes), not of its file: re-encoding
it or changing its metadata keeps it. The rule that makes a canvas round trip
link up: a picture whose alpha is fully opaque is hashed as its RGB, so the
canvas's composite of one accepted result (RGBA, opaque) and the RGB init an
inpaint is sent (desktop/core/frame.py flattens the opaque composite unchanged)
both hash like the result saved before. Anything else (a picture moved on the
canvas, painted over, cropped) is a new picture: its parent shows as a gap.

A saved result carries two PNG text chunks, so that a rebuilt index recovers it:
`sfumato_hash` (its own hash) and `sfumato_parents` (JSON [{"role", "hash"}, ...]).
Roles: "init" (the picture img2img/inpaint/outpaint started from), "mask",
"control", "reference", and "source" (what an upscale or restore started from).

Hashing costs a pass over the pixels (about 2 ms a megapixel): call it off the GUI thread.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

HASH_CHUNK = "sfumato_hash"
PARENTS_CHUNK = "sfumato_parents"
ROLES = ("init", "mask", "control", "reference", "source")
HASH_LENGTH = 24  # hex digits (96 bits): no two pictures of a lifetime collide
MAX_PARENTS = 64  # what a file may claim; more is not a picture of ours


@dataclass(frozen=True)
class Parent:
    role: str
    hash: str


def pixel_hash(image: np.ndarray) -> str:
    """The hash of a picture's pixels: HxW (a mask), HxWx3 or HxWx4 uint8; opaque RGBA hashes as its RGB."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 4 and bool((pixels[..., 3] == 255).all()):
        pixels = pixels[..., :3]
    digest = hashlib.sha256(repr(tuple(pixels.shape)).encode("ascii"))
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()[:HASH_LENGTH]


def parents_of(request) -> tuple[Parent, ...]:
    """The pictures a request starts from, each with its role: a GenerationRequest's init, mask, control and
    reference pictures, or an UpscaleRequest's source. Nothing for txt2img."""
    found: list[Parent] = []
    if hasattr(request, "restore") and getattr(request, "image", None) is not None:  # an UpscaleRequest
        found.append(Parent("source", pixel_hash(request.image)))
        return tuple(found)
    images = getattr(request, "images", None)
    if images is not None:
        for role, picture in (("init", images.init), ("mask", images.mask)):
            if picture is not None:
                found.append(Parent(role, pixel_hash(picture)))
    for role, items in (("control", getattr(request, "controls", ())), ("reference", getattr(request, "references", ()))):
        for item in items:
            if getattr(item, "image", None) is not None:
                found.append(Parent(role, pixel_hash(item.image)))
    return tuple(dict.fromkeys(found))  # one picture used twice in one role is one parent


def chunks(image: np.ndarray, request) -> dict[str, str]:
    """The PNG text chunks that record a result's own hash and its parents."""
    parents = [{"role": p.role, "hash": p.hash} for p in parents_of(request)]
    return {HASH_CHUNK: pixel_hash(image), PARENTS_CHUNK: json.dumps(parents)}


def read_chunks(text: dict) -> tuple[str, tuple[Parent, ...]]:
    """(own hash, parents) from a picture's text chunks; ("", ()) for a picture that does not carry them.
    Never raises: what is not a well-formed record is ignored."""
    own = text.get(HASH_CHUNK)
    own = own if _is_hash(own) else ""
    try:
        data = json.loads(text.get(PARENTS_CHUNK) or "[]")
    except (ValueError, TypeError, RecursionError):
        data = []
    parents = []
    for item in data[:MAX_PARENTS] if isinstance(data, list) else ():
        if isinstance(item, dict) and item.get("role") in ROLES and _is_hash(item.get("hash")):
            parents.append(Parent(item["role"], item["hash"]))
    return own, tuple(dict.fromkeys(parents))


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == HASH_LENGTH and all(c in "0123456789abcdef" for c in value)
