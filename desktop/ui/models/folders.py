"""The list of folders Sfumato searches for models, and its Add and Remove buttons.

One widget for both places that edit `Settings.models_folders` (the Models
window and the Settings window), so both show the same rows and agree on when
a folder is already listed (desktop.core.paths.same_path: typed with ~, with a
trailing separator, through a link or in other letter case, it is the same
folder). Sfumato's own folders are listed first and cannot be removed.
Removing a folder never deletes a file.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop.core import model_sources, paths

from .common import button, folder_label, home_relative

PATH_ROLE = Qt.ItemDataRole.UserRole  # the folder as stored in the settings
OWN_ROLE = Qt.ItemDataRole.UserRole + 1  # True for Sfumato's own folders
ROWS = 5  # a scroll bar appears beyond that
OWN_NOTE = "Sfumato's own folder is always searched. This window never deletes files."
REMOVE_NOTE = "Removing a folder from the list does not delete any files."


class FolderListEditor(QWidget):
    """Edits a list of models folders; read folders(). Sfumato's own folders are shown, not stored.

    Signals:
        changed(list): the folders (list of str), after each add or remove.
        added(str), removed(str): the folder just added or removed.
        already_listed(str): a folder that was asked to be added but is listed already (it is selected).
    """

    changed = Signal(list)
    added = Signal(str)
    removed = Signal(str)
    already_listed = Signal(str)

    def __init__(self, folders: list[str] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self._folders: list[str] = []
        self.list = QListWidget()
        self.list.setToolTip("Sfumato looks for models (.safetensors, .ckpt, diffusers folders) in these folders "
                             "and up to four folders inside them. Del removes the selected one.")
        self.list.setFixedHeight(self.list.fontMetrics().lineSpacing() * ROWS + 12)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # the full path is in the tooltip
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.currentItemChanged.connect(self._selection_changed)
        self.list.installEventFilter(self)  # Del removes the selected folder
        self.add_button = button("&Add folder...", None, self.choose_folder,
                                 "Search another folder (and up to four folders inside it) for models")
        self.remove_button = button("&Remove from list", None, self.remove_selected,
                                    "Stop searching the selected folder (Del). No file is deleted.")
        self.note = QLabel(REMOVE_NOTE)  # under the list, so a longer note never clips the buttons
        self.note.setWordWrap(True)
        side = QVBoxLayout()
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(self.add_button)
        side.addWidget(self.remove_button)
        side.addStretch(1)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.list, 1)
        row.addLayout(side)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(row)
        column.addWidget(self.note)
        self.set_folders(folders or [])

    # -- reading and setting ------------------------------------------------------------------

    def folders(self) -> list[str]:
        """The added folders, as stored in the settings (Sfumato's own are implied)."""
        return list(self._folders)

    def set_folders(self, folders: list[str]) -> None:
        """Show `folders` (no signal: this is loading, not editing)."""
        self._folders = list(folders)
        self._fill()

    def is_listed(self, folder: str | Path) -> bool:
        return any(paths.same_path(folder, listed) for listed in self._searched())

    def select_folder(self, folder: str | Path) -> bool:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if paths.same_path(item.data(PATH_ROLE), folder):
                self.list.setCurrentItem(item)
                return True
        return False

    # -- editing -------------------------------------------------------------------------------

    @Slot()
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a models folder", str(Path.home()))
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str | Path) -> bool:
        """Add `folder` unless it is listed already (then it is selected); True when it was added."""
        folder = str(Path(folder))
        if self.is_listed(folder):
            self.select_folder(folder)
            self.already_listed.emit(folder)
            return False
        self._folders.append(folder)
        self._fill()
        self.select_folder(folder)
        self.added.emit(folder)
        self.changed.emit(self.folders())
        return True

    def add_folders(self, folders: list[str]) -> list[str]:
        """Add those of `folders` not listed yet, with one `changed`; returns the ones added."""
        new: list[str] = []
        for folder in (str(Path(f)) for f in folders):
            if not self.is_listed(folder) and not any(paths.same_path(folder, f) for f in new):
                new.append(folder)
        if new:
            self._folders += new
            self._fill()
            self.changed.emit(self.folders())
        return new

    @Slot()
    def remove_selected(self) -> None:
        item = self.list.currentItem()
        if item is None or item.data(OWN_ROLE):
            return
        row, folder = self.list.row(item), item.data(PATH_ROLE)
        self._folders = [f for f in self._folders if f != folder]
        self.list.takeItem(row)
        self.list.setCurrentRow(min(row, self.list.count() - 1))
        self._selection_changed()
        self.removed.emit(folder)
        self.changed.emit(self.folders())

    # -- inside ---------------------------------------------------------------------------------

    def _searched(self) -> list[str]:
        return [*(str(f) for f in model_sources.own_folders()), *self._folders]

    def _fill(self) -> None:
        current = self.list.currentItem()
        keep = current.data(PATH_ROLE) if current is not None else None
        self.list.clear()
        own_tips = {
            paths.models_dir(): "Sfumato's own models folder: always searched. Nothing here deletes its files.",
            model_sources.hub_cache_dir(): "Where downloads from Hugging Face go: always searched.",
        }
        for folder, tip in own_tips.items():
            item = QListWidgetItem(f"{folder_label(folder)} — {home_relative(folder)}")
            item.setData(PATH_ROLE, str(folder))
            item.setData(OWN_ROLE, True)
            item.setToolTip(f"{folder}\n{tip}")
            font = item.font()
            font.setItalic(True)
            item.setFont(font)
            self.list.addItem(item)
        for folder in self._folders:
            found = Path(folder).expanduser().is_dir()
            item = QListWidgetItem(home_relative(Path(folder)) + ("" if found else "  (not found)"))
            item.setData(PATH_ROLE, folder)
            item.setData(OWN_ROLE, False)
            item.setToolTip(folder if found else f"{folder}\nThis folder is not there (now).")
            self.list.addItem(item)
        if keep is None or not self.select_folder(keep):
            self.list.setCurrentRow(-1)
        self._selection_changed()

    @Slot()
    def _selection_changed(self, *_args) -> None:
        item = self.list.currentItem()
        own = item is not None and bool(item.data(OWN_ROLE))
        self.remove_button.setEnabled(item is not None and not own)
        self.note.setText(OWN_NOTE if own else REMOVE_NOTE)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (watched is self.list and event.type() == QEvent.Type.KeyPress
                and event.matches(QKeySequence.StandardKey.Delete)):
            self.remove_selected()
            return True
        return super().eventFilter(watched, event)
