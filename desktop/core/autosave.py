"""The autosave of the open document, for recovery after a crash.

One file in the user state folder, written atomically (ora.write) from a
snapshot in a background thread. The app deletes it when it closes
normally, so finding it at start-up means the last session ended without
closing: the app offers to restore it. Beside it, a small JSON file
remembers the document's name and file, so the restored picture is titled
and saved as the one that was open.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import atomic, ora, paths
from .document import DocumentSnapshot


def autosave_path() -> Path:
    return paths.state_dir() / "autosave.ora"


def origin_path() -> Path:
    return paths.state_dir() / "autosave.json"


STALE_S = 300
_ORIGIN_MAX_BYTES = 64 * 1024


def save(snapshot: DocumentSnapshot, name: str | None = None, path: Path | None = None) -> None:
    """Autosave `snapshot`; `name` and `path` are the document's title and file (None for a new picture)."""
    _remove_stale_temporaries()
    origin = {"name": name, "path": str(path) if path else None}
    if _read_origin() != origin:  # rewritten only when the document is another one
        atomic.write_json(origin_path(), origin)
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


def origin() -> tuple[str | None, Path | None]:
    """The autosaved document's name and file, as far as they are known (None, None when not)."""
    data = _read_origin() or {}
    name, path = data.get("name"), data.get("path")
    return (name if isinstance(name, str) and name.strip() else None,
            Path(path) if isinstance(path, str) and path else None)


def _read_origin() -> dict | None:
    path = origin_path()
    try:
        if not path.is_file():  # missing (or not a regular file): the picture is still restored, untitled
            return None
        with path.open("rb") as handle:
            data = json.loads(handle.read(_ORIGIN_MAX_BYTES).decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable or damaged: the same
        return None
    return data if isinstance(data, dict) else None


def discard() -> None:
    autosave_path().unlink(missing_ok=True)
    origin_path().unlink(missing_ok=True)
