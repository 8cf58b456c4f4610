"""Compare parameters: two or more pictures in a row, below each its parameters, the ones that differ highlighted.

A parameter differs when the pictures do not all have it with the same value (desktop/core/gallery/differences.py),
so one only some of them have is highlighted too. Esc or the button goes back to the gallery.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QScrollArea, QTextBrowser, QVBoxLayout, QWidget

from desktop.core.gallery.differences import differing_keys, parameter_rows

from .picture_view import PictureView

COLUMN_WIDTH = 260  # the narrowest column: more pictures than fit scroll sideways
HIGHLIGHT = "rgba(255, 190, 40, 0.38)"


class Column(QWidget):
    """One picture: its name, the picture, its parameters (rows; the differing ones highlighted)."""

    def __init__(self, name: str, rows: list[tuple[str, str]], differing: set[str]):
        super().__init__()
        self.rows = rows
        self.highlighted = [key for key, _ in rows if key in differing]
        self.setMinimumWidth(COLUMN_WIDTH)
        self.title = QLabel(name)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.picture = PictureView()
        self.picture.setMinimumSize(COLUMN_WIDTH - 20, 160)
        self.parameters = QTextBrowser()
        self.parameters.setOpenLinks(False)
        self.parameters.setMinimumHeight(120)
        self.parameters.setHtml(self._html(differing) if rows else
                                "<i>No parameters were found in this picture.</i>")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.picture, 3)
        layout.addWidget(self.parameters, 2)

    def _html(self, differing: set[str]) -> str:
        lines = []
        for key, value in self.rows:
            cells = f"<td valign='top'><b>{html.escape(key)}</b></td><td>{html.escape(value)}</td>"
            style = f" style='background-color: {HIGHLIGHT}'" if key in differing else ""
            lines.append(f"<tr{style}>{cells}</tr>")
        return f"<table cellspacing='0' cellpadding='3' width='100%'>{''.join(lines)}</table>"


class SideBySide(QWidget):
    """Signals:
    close_requested(): back to the gallery.
    """

    close_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.columns: list[Column] = []
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.back = QPushButton("Back to the gallery")
        self.back.setToolTip("Close the comparison (Esc)")
        self.back.clicked.connect(self.close_requested)
        self.row = QWidget()
        self.row_layout = QHBoxLayout(self.row)
        self.row_layout.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.row)
        top = QHBoxLayout()
        top.addWidget(self.caption, 1)
        top.addWidget(self.back)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.scroll, 1)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def set_pictures(self, pictures: list[tuple[str, str]]) -> None:
        """(name, parameters text) of each picture, in order; their images come with set_image."""
        for column in self.columns:
            column.setParent(None)
            column.deleteLater()
        tables = [parameter_rows(parameters) for _, parameters in pictures]
        differing = differing_keys(tables)
        self.columns = [Column(name, rows, differing) for (name, _), rows in zip(pictures, tables)]
        for column in self.columns:
            self.row_layout.addWidget(column, 1)
        keys = [key for key, _ in max(tables, key=len)] if tables else []  # in the order a picture writes them
        named = sorted(differing, key=lambda key: (keys.index(key) if key in keys else len(keys), key))
        if not differing:
            self.caption.setText(f"These {len(pictures)} pictures have the same parameters.")
        else:
            one = len(differing) == 1
            self.caption.setText(f"Highlighted: the {len(differing)} parameter{'' if one else 's'} "
                                 f"that differ{'s' if one else ''} ({', '.join(named)}).")

    def set_image(self, index: int, image: QImage) -> None:
        if 0 <= index < len(self.columns):
            self.columns[index].picture.set_image(image)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and event.key() == Qt.Key.Key_Escape:
            event.accept()  # Esc is the view's, before the window's Esc (Cancel) shortcut
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.close_requested.emit()
            event.accept()
            return
        super().keyPressEvent(event)
