"""The autosave of the open document, for recovery after a crash.

One file in the user state folder, written atomically (ora.write) from a
snapshot in a background thread. The app deletes it when it closes
normally, so finding it at start-up means the last session ended without
closing: the app offers to restore it.
"""

from __future__ import annotations

from pathlib import Path

from . import ora, paths
from .document import DocumentSnapshot


def autosave_path() -> Path:
    return paths.state_dir() / "autosave.ora"


def save(snapshot: DocumentSnapshot) -> None:
    ora.write(autosave_path(), snapshot, compress_level=1)  # speed over size: it is rewritten often


def exists() -> bool:
    return autosave_path().is_file()


def load() -> DocumentSnapshot:
    return ora.read(autosave_path())


def discard() -> None:
    autosave_path().unlink(missing_ok=True)
