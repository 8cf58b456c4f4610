"""LoraCompleter: typing ``<lora:`` in a prompt offers the LoRA names, filtered as you type.

Choosing one (click, Enter or Tab) replaces what was typed after ``<lora:``
with ``name:1>`` (A1111's default weight). The names come from the
AddonCatalog; the first ``<lora:`` typed lists the folders if nobody has yet.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QEvent, QObject, QStringListModel, Qt
from PySide6.QtWidgets import QCompleter, QPlainTextEdit

from desktop.core.addons import LORA

from .addon_catalog import AddonCatalog

_TYPED = re.compile(r"<(?:lora|lyco):([^:<>\s]*)$", re.IGNORECASE)
_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Tab, Qt.Key.Key_Backtab, Qt.Key.Key_Escape)


class LoraCompleter(QObject):
    def __init__(self, edit: QPlainTextEdit, catalog: AddonCatalog):
        super().__init__(edit)
        self.edit, self.catalog = edit, catalog
        self.names = QStringListModel(self)
        self.completer = QCompleter(self.names, self)
        self.completer.setWidget(edit)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.completer.setCompletionMode(QCompleter.CompletionMode.PopupCompletion)
        self.completer.activated[str].connect(self.insert)
        edit.textChanged.connect(self._text_changed)
        self.completer.popup().installEventFilter(self)  # runs before QCompleter's own filter on its popup
        catalog.changed.connect(self._names_changed)
        self._names_changed()

    def popup_visible(self) -> bool:
        return self.completer.popup().isVisible()

    def typed(self) -> str | None:
        """What follows ``<lora:`` before the cursor, or None when the cursor is not in such a tag."""
        cursor = self.edit.textCursor()
        before = cursor.block().text()[: cursor.positionInBlock()]
        found = _TYPED.search(before)
        return found.group(1) if found else None

    def insert(self, name: str) -> None:
        typed = self.typed()
        if typed is None:
            return
        cursor = self.edit.textCursor()
        cursor.movePosition(cursor.MoveOperation.Left, cursor.MoveMode.KeepAnchor, len(typed))
        cursor.insertText(f"{name}:1>")
        self.edit.setTextCursor(cursor)
        self.completer.popup().hide()

    def _names_changed(self) -> None:
        self.names.setStringList(self.catalog.names(LORA))
        if self.edit.hasFocus() and self.typed() is not None:
            self._text_changed()

    def _text_changed(self) -> None:
        typed = self.typed() if self.edit.hasFocus() else None
        if typed is None:
            self.completer.popup().hide()
            return
        self.catalog.ensure_loaded()
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
