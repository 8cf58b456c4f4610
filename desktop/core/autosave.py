"""The autosave of the open document, for recovery after a crash.

One file in the user state folder, written atomically (ora.write) from a
snapshot in a background thread. The app deletes it when it closes
normally, so finding it at start-up means the last session ended without
closing: the app offers to restore it.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import ora, paths
from .document import DocumentSnapshot


def autosave_path() -> Path:
    return paths.state_dir() / "autosave.ora"


STALE_S = 300


def save(snapshot: DocumentSnapshot) -> None:
    _remove_stale_temporaries()
    ora.write(autosave_path(), snapshot, compress_level=1)  # speed over size: it is rewritten often


def _remove_stale_temporaries() -> None:
    """Half-written autosaves of a session that was killed (atomic writes leave them aside, hidden)."""
    path = autosave_path()
    if not path.parent.is_dir():
        return
    for temporary in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if time.time() - temporary.stat().st_mtime > STALE_S:
                temporary.unlink()
        except OSError:
            pass


def exists() -> bool:
    return autosave_path().is_file()


def load() -> DocumentSnapshot:
    return ora.read(autosave_path())


def discard() -> None:
    autosave_path().unlink(missing_ok=True)
