"""What the parts of the Models window share: how folders are named, message styles, and its buttons."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QPushButton

from desktop.core import model_sources, paths

ERROR_STYLE = "color: white; background: #a33a3a; border: 1px solid #7a2020; border-radius: 4px; padding: 6px;"
INFO_STYLE = "background: palette(alternate-base); border: 1px solid palette(mid); border-radius: 4px; padding: 6px;"


def home_relative(path: Path) -> str:
    """`~/models` for a folder in the home folder, else the full path."""
    try:
        return str(Path("~") / path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def folder_label(folder: Path) -> str:
    """Sfumato's own folders by name, any other folder by its (home-relative) path."""
    if folder == paths.models_dir():
        return "Sfumato models"
    if folder == model_sources.hub_cache_dir():
        return "Hugging Face downloads"
    return home_relative(folder)


def with_shortcut(text: str, shortcut: str | QKeySequence.StandardKey | None) -> str:
    if shortcut is None:
        return text
    key = QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText)
    return f"{text} ({key})"


def button(text: str, shortcut: str | QKeySequence.StandardKey | None, slot: Callable[[], object],
           tip: str) -> QPushButton:
    """A button that never presses itself on Enter, with its shortcut named in its tooltip."""
    made = QPushButton(text)
    made.setAutoDefault(False)
    if shortcut is not None:
        made.setShortcut(QKeySequence(shortcut))
    made.setToolTip(with_shortcut(tip, shortcut))
    made.clicked.connect(lambda _checked=False: slot())  # not clicked(bool)'s argument
    return made
