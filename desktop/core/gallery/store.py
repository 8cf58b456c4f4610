"""GalleryStore: the pictures in the output folder, and the index that makes them findable.

The files are the truth. The index (index.py) sits beside them in the output
folder and is rebuilt from them when it is missing or damaged; `refresh()`
picks up files added or removed outside the app. Favourites are kept in the
index and in a small JSON file beside it, so a rebuilt index keeps them.

Deleting moves pictures into a holding folder first, so the app can undo it
while it is open; the held pictures go to the system trash (Send2Trash) when
the store closes, or at the next start if the app did not close normally.

Thread-safe: the worker adds results, a background thread refreshes, the
GUI reads, all through the index's lock.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import atomic, credentials, lineage, marking
from ..imageio import XMP_KEY, ImageError, decode_image, open_picture, reading, save_png
from ..outputs import metadata_chunks, output_path
from ..postprocess import RESTORE_KINDS
from ..request import GenerationRequest
from .index import GalleryIndex, GalleryIndexError, ImageRecord, Query
from .metadata import read_image_meta
from .thumbnails import make_thumbnail, thumbnail_path

INDEX_NAME = ".sfumato-gallery.sqlite"
FAVOURITES_NAME = ".sfumato-favourites.json"
HOLDING_NAME = ".sfumato-deleted"
PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
HASH_BATCH = 32  # pictures fill_hashes decodes per call (about 1 s of 1024 PNGs): a closing window waits at most that
# A result saved beside its source: <stem>-<x2 | x1.5 | 1024x768 | a restore kind>[-<n>].png
_POSTPROCESSED = re.compile(r"^(?P<stem>.+)-(?:x\d+(?:\.\d+)?|\d+x\d+|" + "|".join(RESTORE_KINDS) + r")(?:-\d+)?\.png$")


def _send_to_trash(path: Path) -> None:
    from send2trash import send2trash

    send2trash(str(path))


@dataclass(frozen=True)
class Deleted:
    """One deletion that can still be undone: where the files wait, and their records."""

    holding: Path
    records: tuple[ImageRecord, ...]


class GalleryStore:
    def __init__(self, folder: Path, thumbnails: Path, trash: Callable[[Path], None] = _send_to_trash):
        self.folder = Path(folder)
        self.thumbnails = Path(thumbnails)
        self._trash = trash
        self._deleted: list[Deleted] = []
        self._refresh_lock = threading.Lock()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.notice = ""  # what happened at opening, to tell the user (a rebuilt index)
        self.index = self._open_index()
        self._finish_old_deletions()

    # -- opening --------------------------------------------------------------------------------

    def _open_index(self) -> GalleryIndex:
        path = self.folder / INDEX_NAME
        existed = path.exists()
        try:
            index = GalleryIndex(path)
            if index.check():
                if not existed:
                    self._rebuild_into(index)
                return index
            index.close()
            reason = "it is damaged"
        except GalleryIndexError as error:
            reason = str(error)
        kept = path.with_name(f"{path.name}.bad-{int(time.time())}")
        for suffix in ("", "-wal", "-shm"):
            try:
                os.replace(f"{path}{suffix}", f"{kept}{suffix}")
            except FileNotFoundError:
                pass
        index = GalleryIndex(path)
        count = self._rebuild_into(index)
        self.notice = f"The gallery index could not be used ({reason}); it was rebuilt from your {count} pictures."
        return index

    def _rebuild_into(self, index: GalleryIndex) -> int:
        self.index = index
        added, _ = self.refresh()  # favourites come back from their file as the pictures are indexed
        return added

    def close(self) -> None:
        """Send the pictures deleted in this session to the system trash, and close the index."""
        for batch in self._deleted:
            self._empty(batch.holding)
        self._deleted.clear()
        self.index.close()

    # -- adding ---------------------------------------------------------------------------------

    def add_result(self, image: np.ndarray, request: GenerationRequest, seed: int, model_name: str,
                   model_hash: str = "", params: tuple[tuple[str, str], ...] = (), mark: bool = True,
                   signing: credentials.Signing | None = None) -> Path:
        """Save a generated picture (PNG with its metadata, never overwriting) and index it; returns its file.

        The file is what matters: if the index cannot take it now, the next refresh will. With `signing`, it is
        signed (content credentials) before it is indexed; a picture that cannot be signed stays, unsigned.
        """
        text = {**metadata_chunks(request, seed, model_name, model_hash, params, mark),
                **lineage.chunks(image, request)}  # its pixel hash and its parents'
        path = save_png(output_path(self.folder, seed), image, text)
        self._sign(path, request, signing)
        try:
            self.index_files([path])
        except sqlite3.Error:
            pass
        return path

    def add_picture(self, path: Path, image: np.ndarray, parameters: str, marks: dict[str, str] | None = None,
                    signing: credentials.Signing | None = None, request=None) -> Path:
        """Save a finished picture that is not a generation (an upscale) with its A1111 `parameters` text at `path`
        (numbered, never overwriting), and `marks` (marking.chunks), and index it; returns its file. With
        `signing`, it is signed first: with `request`'s provenance, or (a plot's grid) the source type of `marks`."""
        path = save_png(path, image, {**({"parameters": parameters} if parameters else {}), **(marks or {})} or None)
        self._sign(path, request, signing, marks)
        try:
            self.index_files([path])
        except sqlite3.Error:
            pass
        return path

    def _sign(self, path: Path, request, signing: credentials.Signing | None, marks: dict | None = None) -> None:
        """Sign a picture just written; its parents are named by their role and pixel hash, never their file."""
        if signing is None:
            return
        try:
            if request is not None:
                what = credentials.provenance(request)
            else:
                what = credentials.Provenance(marking.source_type_in((marks or {}).get(XMP_KEY)) or marking.TRAINED)
        except Exception as error:  # noqa: BLE001 - the picture is saved; only its credentials are missing
            signing.note(f"{path.name} is saved without content credentials ({error}).")
            return
        signing.sign(path, what)

    def import_files(self, files: Iterable[Path]) -> tuple[list[ImageRecord], list[str]]:
        """Copy pictures from elsewhere into today's folder and index them; returns (records, problems)."""
        day = self.folder / _dt.date.today().isoformat()
        copied, problems = [], []
        for source in map(Path, files):
            if source.suffix.lower() not in PICTURE_SUFFIXES:
                problems.append(f"{source.name} is not a PNG, JPEG or WebP picture.")
                continue
            try:
                _decodes(source)  # refuse what is not a readable picture before copying it
                read_image_meta(source)
                copied.append(atomic.write_new(day / source.name, lambda handle, s=source: _copy_into(s, handle)))
            except ImageError as error:
                problems.append(str(error))
            except (OSError, ValueError, SyntaxError) as error:
                problems.append(f"{source.name} could not be imported: {error}")
        return self.index_files(copied), problems

    def index_files(self, files: Iterable[Path]) -> list[ImageRecord]:
        """Read the metadata of these files (inside the folder) into the index; returns their records."""
        rows = []
        for path in files:
            row = self._row(Path(path))
            if row is not None:
                rows.append(row)
        self.index.upsert(rows)
        found = (self.index.by_path(row["path"]) for row in rows)
        return [record for record in found if record is not None]

    def _row(self, path: Path) -> dict | None:
        try:
            stat = path.stat()
            meta, width, height = read_image_meta(path)
        except (OSError, ValueError, SyntaxError):
            return None  # not a readable picture: not in the gallery
        return {
            "path": self.relative(path), "mtime_ns": stat.st_mtime_ns, "size": stat.st_size,
            "created": stat.st_mtime, "width": width, "height": height, "prompt": meta.prompt,
            "negative_prompt": meta.negative_prompt, "model": meta.model, "seed": meta.seed,
            "sampler": " ".join(p for p in (meta.sampler, meta.schedule) if p and p != "Automatic"),
            "steps": meta.steps, "cfg_scale": meta.cfg_scale, "parameters": meta.parameters, "source": meta.source,
            "favourite": 0, "pixel_hash": meta.pixel_hash, "parents": meta.parents,
        }

    # -- keeping the index in step with the files -------------------------------------------------

    def refresh(self) -> tuple[int, int]:
        """Index pictures added or changed outside the app, forget the ones gone. Returns (added, removed)."""
        with self._refresh_lock:
            known = self.index.stamps()  # before the scan: a picture saved meanwhile is then seen as new, not gone
            problems: list[OSError] = []
            on_disk = dict(self._scan(problems))
            # A folder that could not be read (a drive unplugged, a share gone) says nothing about its pictures.
            gone = [] if problems else [path for path in known if path not in on_disk]
            fresh = [self.folder / path for path, stamp in on_disk.items() if known.get(path) != stamp]
            if gone:
                self.index.remove_paths(gone)
            favourites = set(self._stored_favourites())
            for start in range(0, len(fresh), 200):
                records = self.index_files(fresh[start:start + 200])
                liked = [r.id for r in records if r.path in favourites and not r.favourite]
                if liked:
                    self.index.set_favourite(liked, True)
            return len(fresh), len(gone)

    def fill_hashes(self, limit: int = HASH_BATCH) -> list[tuple[int, str]]:
        """Hash the pixels of up to `limit` pictures that carry no hash of their own (saved before lineage, or by
        other tools), so that what was made from them finds them; (id, hash) of each one tried ("" when it could
        not be decoded), [] when none is left. Call it off the GUI thread, again until it returns []. The files
        are only read; the index remembers each hash for the file's mtime and size, so a changed file is hashed
        again and an unchanged one never."""
        done, rows = [], []
        for record in self.index.unhashed(limit):
            path = self.folder / record.path
            stamp = (record.mtime_ns, record.size)
            pixel_hash = mask_hash = ""
            try:
                if _stamp(path) == stamp:
                    pixels = decode_image(path, path.name)
                    if _stamp(path) == stamp:  # not rewritten while it was read
                        pixel_hash, mask_hash = lineage.pixel_hash(pixels), _mask_hash(pixels)
            except (OSError, ImageError):
                pass  # unreadable or gone: remembered as such until the file changes (or a refresh forgets it)
            rows.append((record.path, *stamp, pixel_hash, mask_hash))
            done.append((record.id, pixel_hash))
        if rows:
            self.index.set_hashes(rows)  # one transaction a batch
        return done

    def _scan(self, problems: list[OSError]):
        """(relative path, (mtime_ns, size)) of every picture below the folder, hidden folders skipped.

        Folders that cannot be read are added to `problems`.
        """
        stack = [self.folder]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError as error:
                problems.append(error)
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    _remove_if_orphan(entry)
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif Path(entry.name).suffix.lower() in PICTURE_SUFFIXES:
                        stat = entry.stat()
                        yield self.relative(Path(entry.path)), (stat.st_mtime_ns, stat.st_size)
                except OSError:
                    continue

    # -- reading ----------------------------------------------------------------------------------

    def search(self, query: Query) -> list[int]:
        return self.index.search(query)

    def records(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        return self.index.records(list(ids))

    def record(self, record_id: int) -> ImageRecord | None:
        return self.index.records([record_id]).get(record_id)

    def path(self, record: ImageRecord) -> Path:
        return self.folder / record.path

    def relative(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    def source_of(self, record: ImageRecord) -> ImageRecord | None:
        """The picture an upscale or restore saved beside its source was made from, by the name it was given
        (postprocess.result_path: <name>-x2.png, <name>-denoise.png, numbered <name>-x2-2.png when taken), as the
        files are the truth; None for any other picture, or when no such source is in the gallery."""
        match = _POSTPROCESSED.match(record.path)
        if match is None:
            return None
        for suffix in sorted(PICTURE_SUFFIXES) + sorted(s.upper() for s in PICTURE_SUFFIXES):
            source = self.index.by_path(match["stem"] + suffix)
            if source is not None and source.id != record.id:
                return source
        return None

    def thumbnail(self, record: ImageRecord) -> Path:
        """The thumbnail file of a record, made if needed (call it off the GUI thread)."""
        target = thumbnail_path(self.thumbnails, self.path(record), record.mtime_ns, record.size)
        return make_thumbnail(self.path(record), target)

    # -- favourites and deleting ------------------------------------------------------------------

    def set_favourite(self, ids: Iterable[int], favourite: bool) -> None:
        records = list(self.records(ids).values())
        self.index.set_favourite([r.id for r in records], favourite)
        paths = {r.path for r in records}
        self._save_favourites(add=paths if favourite else set(), remove=set() if favourite else paths)

    def _save_favourites(self, add: set[str] = frozenset(), remove: set[str] = frozenset()) -> None:
        """The favourites file keeps what the index knows plus what it may have lost sight of (a drive away)."""
        kept = (set(self._stored_favourites()) | set(self.index.favourites()) | set(add)) - set(remove)
        atomic.write_json(self.folder / FAVOURITES_NAME, sorted(kept))

    def delete(self, ids: Iterable[int]) -> tuple[int, list[str]]:
        """Take pictures out of the gallery (undoable with undo_delete while the app runs).

        Returns how many left, and a sentence for each that could not (a file in use, say): those stay.
        """
        records = list(self.records(ids).values())
        holding = self.folder / HOLDING_NAME / f"{time.time_ns()}"
        moved: list[ImageRecord] = []
        gone: list[ImageRecord] = []
        problems: list[str] = []
        batch = Deleted(holding, ())
        self._deleted.append(batch)  # recorded first: whatever happens next, what was moved can come back
        for record in records:
            target = holding / record.path
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.path(record), target)
                moved.append(record)
            except FileNotFoundError:
                gone.append(record)  # deleted by hand already: it only leaves the index
            except OSError as error:
                problems.append(f"{Path(record.path).name} could not be deleted: {error.strerror or error}.")
            self._deleted[-1] = Deleted(holding, tuple(moved))
        if not moved:
            self._deleted.pop()
        left = moved + gone
        if left:
            self.index.remove_paths([r.path for r in left])
            self._save_favourites(remove={r.path for r in left if r.favourite})
        return len(left), problems

    def can_undo_delete(self) -> bool:
        return bool(self._deleted)

    def undo_delete(self) -> list[ImageRecord]:
        """Put back the pictures of the last deletion; returns their records."""
        if not self._deleted:
            return []
        batch = self._deleted.pop()
        restored: dict[Path, bool] = {}  # restored file -> was a favourite
        for record in batch.records:
            source = batch.holding / record.path
            if not source.exists():
                continue
            target = self.path(record)
            if target.exists():  # a new picture took its name meanwhile: it comes back beside it
                target = _free_name(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            restored[target] = record.favourite
        records = self.index_files(list(restored))
        liked = [r.id for r in records if restored.get(self.path(r))]
        if liked:
            self.set_favourite(liked, True)
        self._empty(batch.holding)  # anything left there goes to the system trash, never nowhere
        return list(self.records([r.id for r in records]).values())

    def _finish_old_deletions(self) -> None:
        """Deletions a crashed session could not finish: to the trash now."""
        holding = self.folder / HOLDING_NAME
        if holding.is_dir():
            for batch in holding.iterdir():
                self._empty(batch)

    def _empty(self, batch: Path) -> None:
        for path in sorted(batch.rglob("*"), reverse=True):
            try:
                if path.is_file():
                    self._trash(path)
                else:
                    path.rmdir()
            except OSError:
                pass  # left for the next start
        try:
            batch.rmdir()
        except OSError:
            pass

    def _stored_favourites(self) -> list[str]:
        try:
            data = json.loads((self.folder / FAVOURITES_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [p for p in data if isinstance(p, str)] if isinstance(data, list) else []


ORPHAN_AGE_S = 3600


def _remove_if_orphan(entry: os.DirEntry) -> None:
    """A temporary file a crash left behind (writes are temp file + rename): gone once it is an hour old."""
    name = entry.name
    if not (name.startswith(".tmp-") or name.endswith(".tmp")):
        return
    try:
        if entry.is_file(follow_symlinks=False) and time.time() - entry.stat().st_mtime > ORPHAN_AGE_S:
            os.unlink(entry.path)
    except OSError:
        pass


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _mask_hash(pixels: np.ndarray) -> str:
    """The hash a grey, opaque picture has as a mask (imageio.load_mask reads it as its grey values); "" for
    any other picture."""
    if pixels.ndim != 3 or (pixels.shape[2] == 4 and not (pixels[..., 3] == 255).all()):
        return ""
    grey = pixels[..., 0]
    if not ((pixels[..., 1] == grey).all() and (pixels[..., 2] == grey).all()):
        return ""
    return lineage.pixel_hash(np.ascontiguousarray(grey))


def _decodes(path: Path) -> None:
    """Raise ImageError (a sentence) unless every pixel of the picture can be read (a truncated file cannot).

    Large pictures are fine here, up to twice the limit for decoding them; bombs are refused.
    """
    with reading(path.name), open_picture(path) as image:
        image.load()


def _free_name(path: Path) -> Path:
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def _copy_into(source: Path, handle) -> None:
    with open(source, "rb") as reader:
        shutil.copyfileobj(reader, handle, 1 << 20)
