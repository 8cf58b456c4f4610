"""AddonTools: the prompt panel's LoRA and embedding helpers, wired together.

The panel's LoRA button opens the AddonPicker; a LoRA chosen there goes into
the prompt at its cursor as ``<lora:name:1>``, an embedding's name into the
prompt field that last had the focus (the negative prompt until one had it:
most embeddings are negative ones). Both prompt fields get a LoraCompleter, and a
WildcardCompleter for ``__name__`` (this computer's wildcard files, beside the same folders).
The lists come from one AddonCatalog, refreshed when the picker opens; the panel's Fast reads its LoRAs
from it too (listing them first when they are not yet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from desktop.core.addons import LORA

from .addon_catalog import AddonCatalog
from .addon_picker import AddonPicker
from .lora_completer import LoraCompleter, WildcardCompleter


def insert_text(edit: QPlainTextEdit, text: str, *, at_cursor: bool = True) -> None:
    """Put ``text`` at the cursor (else at the end), with ", " between it and the words around it where needed.

    A cursor at the very start of a prompt (where setting the text leaves it) counts as no cursor.
    """
    cursor = edit.textCursor()
    cursor.clearSelection()
    whole = edit.toPlainText()
    at = cursor.position() if at_cursor and cursor.position() > 0 else len(whole)
    word_end = whole[:at].rstrip(" ")
    if word_end.strip() and not word_end.endswith((",", "\n")):
        at = len(word_end)  # "a cat |" gets "a cat, <lora:x:1> ", not "a cat , <lora:x:1>"
    before, after = whole[:at], whole[at:]
    lead = "" if not before.strip() or before.endswith(("\n", " ")) else " " if before.endswith(",") else ", "
    tail = ", " if after[:1] not in ("", " ", ",", "\n") else ""
    cursor.setPosition(at)
    cursor.insertText(lead + text + tail)
    cursor.setPosition(at + len(lead) + len(text))
    edit.setTextCursor(cursor)


class AddonTools(QObject):
    def __init__(self, panel, folders: Callable[[], Iterable[str]], parent: QWidget):
        super().__init__(parent)
        self.panel = panel
        self.catalog = AddonCatalog(folders, self)
        self.picker: AddonPicker | None = None
        self.last_field: QPlainTextEdit | None = None  # the prompt field the person was last in
        self.completers = [LoraCompleter(edit, self.catalog) for edit in (panel.prompt, panel.negative)]
        self.wildcard_completers = [WildcardCompleter(edit, folders) for edit in (panel.prompt, panel.negative)]
        for edit in (panel.prompt, panel.negative):
            edit.installEventFilter(self)
        panel.addons_button.clicked.connect(self.open_picker)
        panel.lora_source = self.fast_loras
        self.catalog.changed.connect(panel.loras_listed)

    def fast_loras(self) -> dict[str, object] | None:
        """The LoRAs by name for Fast (each AddonFile has its few_step and family), or None while they are being
        listed (a listing is started when there is none)."""
        if not self.catalog.loaded:
            self.catalog.ensure_loaded()
            return None
        return {f.name: f for f in self.catalog.files[LORA]}

    def open_picker(self) -> AddonPicker:
        if self.picker is None:
            self.picker = AddonPicker(self.catalog, self.panel.family, self.parent())
            self.picker.chosen.connect(self.insert)
        self.picker.open()
        return self.picker

    def insert(self, kind: str, name: str) -> None:
        field = self.panel.prompt if kind == LORA else self.last_field or self.panel.negative
        insert_text(field, f"<lora:{name}:1>" if kind == LORA else name, at_cursor=field is self.last_field)
        window = self.panel.window()
        if hasattr(window, "note"):
            window.note(f"{name} is in the {'prompt' if field is self.panel.prompt else 'negative prompt'}.")

    def close(self) -> None:
        self.catalog.close()

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.FocusIn:
            self.last_field = watched
        return super().eventFilter(watched, event)
