"""LoraCompleter: typing ``<lora:`` in a prompt offers the LoRA names, filtered as you type.

Choosing one (click, Enter or Tab) replaces what was typed after ``<lora:``
with ``name:1>`` (A1111's default weight). The names come from the
AddonCatalog; the first ``<lora:`` typed lists the folders if nobody has yet.

WildcardCompleter does the same for ``__`` and the wildcard files (desktop/core/wildcards.py): choosing
``colors`` makes ``__colors__``. The folders are listed again each time a ``__`` is begun.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from PySide6.QtCore import QEvent, QObject, QStringListModel, Qt
from PySide6.QtWidgets import QCompleter, QPlainTextEdit

from desktop.core.addons import LORA
from desktop.core.wildcards import wildcard_folders, wildcard_names

from .addon_catalog import AddonCatalog

_TYPED = re.compile(r"<(?:lora|lyco):([^:<>\s]*)$", re.IGNORECASE)
_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Tab, Qt.Key.Key_Backtab, Qt.Key.Key_Escape)


class LoraCompleter(QObject):
    pattern = _TYPED  # what is typed before the cursor; group 1 is the part the names complete

    def __init__(self, edit: QPlainTextEdit, catalog: AddonCatalog | None):
        super().__init__(edit)
        self.edit, self.catalog = edit, catalog
        self.names = QStringListModel(self)
        self.completer = QCompleter(self.names, self)
        self.completer.setWidget(edit)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.completer.activated[str].connect(self.insert)
        self._typing = False  # whether the cursor was in a tag at the last change
        edit.textChanged.connect(self._text_changed)
        self.completer.popup().installEventFilter(self)  # runs before QCompleter's own filter on its popup
        if catalog is not None:
            catalog.changed.connect(self._names_changed)
        self._names_changed()

    def popup_visible(self) -> bool:
        return self.completer.popup().isVisible()

    def typed(self) -> str | None:
        """What follows ``<lora:`` before the cursor, or None when the cursor is not in such a tag."""
        cursor = self.edit.textCursor()
        before = cursor.block().text()[: cursor.positionInBlock()]
        found = self.pattern.search(before)
        return found.group(1) if found else None

    def choices(self) -> list[str]:
        return self.catalog.names(LORA)

    def completed(self, name: str) -> str:
        """What replaces the typed part once `name` is chosen."""
        return f"{name}:1>"

    def begun(self) -> None:
        """A tag is being typed: make sure the names are there."""
        self.catalog.ensure_loaded()

    def insert(self, name: str) -> None:
        typed = self.typed()
        if typed is None:
            return
        cursor = self.edit.textCursor()
        cursor.movePosition(cursor.MoveOperation.Left, cursor.MoveMode.KeepAnchor, len(typed))
        cursor.insertText(self.completed(name))
        self.edit.setTextCursor(cursor)
        self.completer.popup().hide()

    def _names_changed(self) -> None:
        self.names.setStringList(self.choices())
        if self.edit.hasFocus() and self.typed() is not None:
            self._text_changed()

    def _text_changed(self) -> None:
        typed = self.typed() if self.edit.hasFocus() else None
        if typed is None:
            self._typing = False
            self.completer.popup().hide()
            return
        if not self._typing:  # a tag begun: the names are made sure of once, not at every key
            self._typing = True
            self.begun()
        self.completer.setCompletionPrefix(typed)
        if self.completer.completionCount() == 0:
            self.completer.popup().hide()
            return
        self.completer.popup().setCurrentIndex(self.completer.completionModel().index(0, 0))
        rect = self.edit.cursorRect()
        popup = self.completer.popup()
        rect.setWidth(max(220, popup.sizeHintForColumn(0) + popup.verticalScrollBar().sizeHint().width() + 8))
        self.completer.complete(rect)

    def eventFilter(self, watched, event) -> bool:
        # QCompleter hands Enter and Tab on to the field (a new line, or the focus moving on); here they choose.
        # Esc closes the list: no shortcut of the window (Esc cancels a run) takes it first.
        if watched is not self.completer.popup() or event.type() not in (QEvent.Type.KeyPress,
                                                                         QEvent.Type.ShortcutOverride):
            return super().eventFilter(watched, event)
        if event.key() not in _KEYS or event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            return False
        if event.type() == QEvent.Type.ShortcutOverride:
            event.accept()
            return True
        if event.key() != Qt.Key.Key_Escape:
            index = self.completer.popup().currentIndex()
            if not index.isValid():
                index = self.completer.completionModel().index(0, 0)
            if index.isValid():
                self.insert(index.data())
        self.completer.popup().hide()
        return True


class WildcardCompleter(LoraCompleter):
    pattern = re.compile(r"(?<!\w)__([\w\-./]*)$")

    def __init__(self, edit: QPlainTextEdit, models_folders: Callable[[], Iterable[str]]):
        self.models_folders = models_folders
        self._found: list[str] = []
        super().__init__(edit, None)

    def typed(self) -> str | None:
        typed = super().typed()
        return None if typed is None or "__" in typed else typed  # "__colors__" is closed

    def choices(self) -> list[str]:
        return self._found

    def completed(self, name: str) -> str:
        return f"{name}__"

    def begun(self) -> None:
        self._found = wildcard_names(wildcard_folders(self.models_folders()))
        self.names.setStringList(self._found)
