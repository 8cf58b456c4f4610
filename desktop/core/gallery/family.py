"""A picture's family in the gallery: what it was made from and what was made from it (desktop/core/lineage.py).

The links are kept by pixel hash (index.py's `parents` table), so they outlive the pictures: when a picture
in the middle of a chain is deleted, its place shows as a gap and the chain goes on through it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .index import GalleryIndex, ImageRecord

MAX_FAMILY = 2000  # hashes walked at most: a family larger than that is shown in part


@dataclass(frozen=True)
class Link:
    """One parent or child of a picture: its role, its pixel hash, and the gallery picture with those pixels
    (None: a gap, for a picture deleted, or one that never was in the gallery: a mask, a canvas's own)."""

    role: str
    pixel_hash: str
    record: ImageRecord | None


def parents(index: GalleryIndex, record: ImageRecord) -> list[Link]:
    """What `record` was made from, in the order it records them."""
    if not record.pixel_hash:
        return []
    found = index.parents(record.pixel_hash)
    return _links(index, found, several=False)


def children(index: GalleryIndex, record: ImageRecord) -> list[Link]:
    """What was made from `record` (one link per picture; a child no longer in the gallery is one gap)."""
    if not record.pixel_hash:
        return []
    found = [(role, child) for role, child in index.children(record.pixel_hash) if child != record.pixel_hash]
    return _links(index, list(dict.fromkeys(found)), several=True)


def ancestors(index: GalleryIndex, record: ImageRecord) -> list[Link]:
    """Every picture `record` descends from, nearest first, walking through gaps; each hash once."""
    return _walk(index, record, index.parents)


def descendants(index: GalleryIndex, record: ImageRecord) -> list[Link]:
    """Every picture made from `record`, directly or not, nearest first, walking through gaps."""
    return _walk(index, record, index.children)


def family_ids(index: GalleryIndex, record: ImageRecord) -> list[int]:
    """The ids of the gallery pictures in `record`'s tree: its ancestors, itself and its descendants."""
    ids = [record.id]
    for link in ancestors(index, record) + descendants(index, record):
        ids.extend(index.by_hash([link.pixel_hash]).get(link.pixel_hash, []))
    return list(dict.fromkeys(ids))


def _walk(index: GalleryIndex, record: ImageRecord, step) -> list[Link]:
    if not record.pixel_hash:
        return []
    seen = {record.pixel_hash}
    out: list[tuple[str, str]] = []
    frontier = [record.pixel_hash]
    while frontier and len(seen) < MAX_FAMILY:
        following = []
        for current in frontier:
            for role, other in step(current):
                if other not in seen:
                    seen.add(other)
                    out.append((role, other))
                    following.append(other)
        frontier = following
    return _links(index, out, several=False)


def _links(index: GalleryIndex, found: list[tuple[str, str]], several: bool) -> list[Link]:
    ids = index.by_hash([h for _, h in found])
    records = index.records([i for group in ids.values() for i in group])
    out = []
    for role, pixel_hash in found:
        group = [records[i] for i in ids.get(pixel_hash, []) if i in records]
        for record in (group if several else group[:1]) or [None]:
            out.append(Link(role, pixel_hash, record))
    return out
