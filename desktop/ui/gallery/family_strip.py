"""The detail panel's lineage strip: small thumbnails of the pictures the shown one was made from ("Made from"),
then of those made from it ("Used by"), each clickable, and "Show family" (desktop/core/gallery/family.py).

A parent that is not in the gallery (deleted, or never saved there: a mask, a canvas of its own) is a gap: a
disabled tile that says so. Links and thumbnails are read in the background; the strip hides itself for a
picture with no family.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

from desktop.core.errors import SfumatoError
from desktop.core.gallery import family
from desktop.core.gallery.index import ImageRecord
from desktop.core.gallery.store import GalleryStore

from ..background import Background

TILE = 36  # pixels
SHOWN = 8  # tiles a row shows; the rest are counted
ROLE_NAMES = {"init": "the picture it started from", "mask": "the mask", "control": "a control picture",
              "reference": "a reference picture", "source": "the picture it was upscaled or restored from"}


class FamilyStrip(QWidget):
    """Signals:
    chosen(object): the ImageRecord of a clicked tile.
    family_requested(): "Show family" was clicked.
    """

    chosen = Signal(object)
    family_requested = Signal()

    def __init__(self, background: Background, parent: QWidget | None = None):
        super().__init__(parent)
        self.background = background
        self._shown: int | None = None
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(6)
        layout.setVerticalSpacing(2)
        self.rows: dict[str, QHBoxLayout] = {}
        self.captions: dict[str, QLabel] = {}
        for line, (key, text) in enumerate((("parents", "Made from:"), ("children", "Used by:"))):
            caption = QLabel(text)
            row = QHBoxLayout()
            row.setSpacing(3)
            layout.addWidget(caption, line, 0)
            layout.addLayout(row, line, 1)
            self.rows[key], self.captions[key] = row, caption
        self.show_family = QPushButton("Show family")
        self.show_family.setToolTip("Show in the grid only this picture, the pictures it was made from and those "
                                    "made from it, generation after generation")
        self.show_family.clicked.connect(self.family_requested)
        layout.addWidget(self.show_family, 0, 2, 2, 1, Qt.AlignmentFlag.AlignVCenter)
        layout.setColumnStretch(1, 1)
        self.hide()

    def show_record(self, store: GalleryStore | None, record: ImageRecord | None) -> None:
        """Show `record`'s parents and children (read in the background); hidden for none, or no family."""
        self._shown = record.id if record is not None else None
        self._clear()
        self.hide()
        if store is None or record is None or not record.pixel_hash:
            return

        def work():
            parents, children = family.parents(store.index, record), family.children(store.index, record)
            return parents, children, _thumbnails(store, parents[:SHOWN] + children[:SHOWN])

        self.background.run(work, lambda found, rid=record.id: self._loaded(rid, *found), lambda error: None)

    def tiles(self, key: str) -> list[QToolButton]:
        """The tiles of a row ("parents" or "children"), in order."""
        row = self.rows[key]
        return [w for w in (row.itemAt(i).widget() for i in range(row.count())) if isinstance(w, QToolButton)]

    def _loaded(self, record_id: int, parents: list, children: list, images: dict[str, QImage]) -> None:
        if record_id != self._shown:
            return  # another picture was chosen meanwhile
        self._clear()
        for key, links in (("parents", parents), ("children", children)):
            row = self.rows[key]
            for link in links[:SHOWN]:
                row.addWidget(self._tile(link, images.get(link.record.path) if link.record else None))
            if len(links) > SHOWN:
                row.addWidget(QLabel(f"+{len(links) - SHOWN} more"))
            if not links:
                row.addWidget(QLabel("nothing in the gallery" if key == "children" else "nothing: made from a prompt"))
            row.addStretch(1)
        self.setVisible(bool(parents or children))

    def _tile(self, link: family.Link, image: QImage | None) -> QToolButton:
        tile = QToolButton()
        tile.setFixedSize(TILE + 6, TILE + 6)
        tile.setIconSize(QSize(TILE, TILE))
        what = ROLE_NAMES.get(link.role, link.role)
        if link.record is None:
            tile.setText(link.role)
            tile.setEnabled(False)
            tile.setToolTip(f"{what[0].upper()}{what[1:]}: not in the gallery (deleted, or never saved there).")
            return tile
        if image is not None and not image.isNull():
            tile.setIcon(QIcon(QPixmap.fromImage(image)))
        else:
            tile.setText(Path(link.record.path).stem[:6])
        tile.setToolTip(f"{Path(link.record.path).name}: {what}. Click to show it.")
        tile.setAccessibleName(Path(link.record.path).name)
        tile.clicked.connect(lambda _=False, r=link.record: self.chosen.emit(r))
        return tile

    def _clear(self) -> None:
        for row in self.rows.values():
            while row.count():
                item = row.takeAt(0)
                if item.widget() is not None:
                    item.widget().deleteLater()


def _thumbnails(store: GalleryStore, links: list) -> dict[str, QImage]:
    """path -> thumbnail of the links that are gallery pictures (read in the background)."""
    out = {}
    for link in links:
        if link.record is not None and link.record.path not in out:
            try:
                image = QImage(str(store.thumbnail(link.record)))
            except (OSError, ValueError, SfumatoError):  # unreadable: its tile shows its name
                continue
            out[link.record.path] = image.scaled(TILE, TILE, Qt.AspectRatioMode.KeepAspectRatio,
                                                 Qt.TransformationMode.SmoothTransformation)
    return out
