"""A1111's token counter for a prompt field: "12/75", "80/150".

The count is the one the text encoder will use (desktop/core/clip_tokenizer.py
count_tokens with the chosen model's tokenizer, desktop/core/tokenizer_files.py):
LoRA tags and emphasis brackets do not count, BREAK and a late comma fill the
chunk, the longest text of a prompt-editing schedule counts. It follows the
text 150 ms after the last key, and the settings' model, emphasis mode and
steps when they change. Counting runs on the GUI thread:
a 300-token prompt takes well under a millisecond once the vocabulary is read
(about 50 ms, once per tokenizer folder).

The colour stays the placeholder grey past 75, as in A1111: a second chunk is
not an error (nothing is cut off), so a warning colour would only alarm.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QPlainTextEdit

from desktop.core import tokenizer_files
from desktop.core.clip_tokenizer import TokenizerFilesError, count_tokens
from desktop.core.generation_settings import GenerationSettings

DEBOUNCE_MS = 150

# Rich text, so the tooltip wraps instead of running off the screen.
TOOLTIP = "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in (
    "Tokens in this prompt as the model reads them. The text encoder reads 75 tokens at a time, so a longer "
    "prompt is read in chunks of 75 (80/150 is two chunks) and nothing is cut off.",
    "BREAK starts a new chunk. When a chunk fills up less than 20 tokens after a comma, what follows the comma "
    "moves to the next chunk.",
    "LoRA tags like <lora:name:0.8> and emphasis brackets like (word:1.2) do not count.",
))


class TokenCounter(QLabel):
    """The grey "count/limit" of `edit`, counted with the settings' model, emphasis mode and steps."""

    COUNTS_WITH = ("model", "emphasis", "steps")

    def __init__(self, edit: QPlainTextEdit, settings: GenerationSettings):
        super().__init__("0/75")
        self.setObjectName("tokenCounter")
        self.setToolTip(TOOLTIP)
        self.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom)
        font = self.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        self.setFont(font)
        self._edit, self._settings = edit, settings
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_count)
        edit.textChanged.connect(self._timer.start)
        settings.changed.connect(self._setting_changed)
        self._timer.start()

    def _setting_changed(self, name: str, _value: object) -> None:
        if name in self.COUNTS_WITH:
            self._timer.start()

    @Slot()
    def update_count(self) -> None:
        try:
            tokenizer = tokenizer_files.tokenizer_for(self._settings.model)
        except TokenizerFilesError:  # not even the bundled vocabulary can be read: no count rather than a wrong one
            self.clear()
            return
        s = self._settings
        count, limit = count_tokens(self._edit.toPlainText(), tokenizer, s.emphasis, s.steps)
        self.setText(f"{count}/{limit}")

