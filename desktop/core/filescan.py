"""The files of an add-on folder (upscalers, restorers, ControlNets): one scan, sorted by name, hidden entries
skipped, unreadable entries left out rather than failing the whole list."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path


def files_in(folder: Path, suffixes: Sequence[str], depth: int = 1,
             is_item: Callable[[Path], bool] | None = None) -> list[Path]:
    """The files of `folder` whose suffix is one of `suffixes` (lower case), looking `depth` levels of subfolders
    deep; a subfolder for which `is_item` says yes (a diffusers folder) is listed itself, not looked into."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    found: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir():
                if is_item is not None and is_item(path):
                    found.append(path)
                elif depth > 0:
                    found += files_in(path, suffixes, depth - 1, is_item)
            elif entry.is_file() and path.suffix.lower() in suffixes:
                found.append(path)
        except OSError:
            continue
    return found
