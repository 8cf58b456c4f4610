"""Writing files so that a crash never leaves half of one in place.

Write to a temporary file in the same folder, flush and fsync it, then
os.replace it over the target (atomic on every platform Sfumato runs on).

Modes: a new file gets the mode any program's new file gets (0o666 less the
umask, or what the folder's default ACL says), because the temporary file is
created with os.open(..., 0o666) and the kernel applies the umask itself
(tempfile.mkstemp would give 0o600, which os.replace keeps). The umask is never
read: os.umask can only be read by setting it, which races with other threads.
A file that is replaced keeps its permission bits, as writing it in place would
(a picture someone made private stays private when saved again).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_with(path: Path, write: Callable[[BinaryIO], None], durable: bool = True) -> None:
    """Atomically replace `path` with what `write(handle)` writes.

    `durable=False` skips the fsyncs, for caches that can be made again: still
    never half a file, but a power cut may lose the newest one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = _create_temporary(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            _keep_mode(path, handle.fileno())
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    if durable:
        fsync_dir(path.parent)


def write_new(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file under `path`, or "name-2.ext", "name-3.ext"... when taken; never overwrite. Returns it.

    The name is claimed atomically (a hard link of the finished temporary
    file), so two writers racing for one name both keep their file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = _create_temporary(path.parent, ".tmp-", path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        for attempt in range(1, 100_000):
            target = path if attempt == 1 else path.with_name(f"{path.stem}-{attempt}{path.suffix}")
            try:
                os.link(temporary, target)  # atomic, and fails instead of overwriting
            except FileExistsError:
                continue
            except OSError:  # file systems without hard links (some network shares)
                if target.exists():
                    continue
                os.replace(temporary, target)
            fsync_dir(target.parent)
            return target
        raise FileExistsError(f"no free file name near {path.name}")
    finally:
        Path(temporary).unlink(missing_ok=True)


_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)


def _create_temporary(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """A new, empty file in `folder` with the mode the umask gives new files: (descriptor, path)."""
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{secrets.token_hex(5)}{suffix}")
        try:
            return os.open(name, _FLAGS, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {folder}")


def _keep_mode(path: Path, fd: int) -> None:
    """Give the temporary file the permission bits of the regular file it is about to replace."""
    try:
        existing = os.stat(path)
    except OSError:
        return
    if stat.S_ISREG(existing.st_mode) and hasattr(os, "fchmod"):
        try:
            os.fchmod(fd, stat.S_IMODE(existing.st_mode) & 0o777)
        except OSError:  # a file system without modes (FAT, some shares): its default stays
            pass


def write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    write_with(path, lambda handle: handle.write(data), durable)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, value: object) -> None:
    write_text(path, json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False))


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (a no-op where directories can't be opened)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file below root: before a folder built aside is swapped into place."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
