"""The Models window: see every model Sfumato can find, add and remove the
folders it searches, find other apps' models, download from Hugging Face, and
pick the model to use.

All file work (scans, identifying a file, looking for other apps, downloads)
runs on short-lived background threads; their results come back through
signals to slots on the GUI thread. Nothing here imports torch or diffusers:
the download function (desktop.core.hub.download) imports huggingface_hub on its thread.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QObject,
    QSortFilterProxyModel,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QKeySequence, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QStyledItemDelegate,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop.core import model_sources, modelfiles, paths
from desktop.core.errors import Cancelled, SfumatoError
from desktop.core.model_sources import (
    ModelEntry,
    Source,
    detect_other_apps,
    parse_repo_id,
)
from desktop.core.progress import TaskState
from desktop.core.settings import Settings

from .background import Background

log = logging.getLogger(__name__)

DownloadFunction = Callable[[str, TaskState], Path]
CLOSE_WAIT_S = 10.0  # how long closing waits for a cancelled download to stop
PROGRESS_TEXT = r"(\d+) of (\d+) MB"
ERROR_STYLE = "color: white; background: #a33a3a; border: 1px solid #7a2020; border-radius: 4px; padding: 6px;"
INFO_STYLE = "background: palette(alternate-base); border: 1px solid palette(mid); border-radius: 4px; padding: 6px;"


def _default_download(repo_id: str, state: TaskState) -> Path:
    # Imported on the download thread; it needs huggingface_hub only, no torch.
    from desktop.core import hub

    return hub.download(repo_id, state)


def _with_shortcut(text: str, shortcut: str | QKeySequence.StandardKey | None) -> str:
    if shortcut is None:
        return text
    key = QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText)
    return f"{text} ({key})"


def _home_relative(path: Path) -> str:
    try:
        return str(Path("~") / path.relative_to(Path.home()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------- table model


class ModelTableModel(QAbstractTableModel):
    """A thin adapter over a list of ModelEntry; unusable rows are greyed with their reason."""

    COLUMNS = ("Name", "Family", "Format", "Size", "Folder", "Note")
    NAME, FAMILY, FORMAT, SIZE, FOLDER, NOTE = range(6)
    SORT_ROLE = Qt.ItemDataRole.UserRole
    ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._entries: list[ModelEntry] = []

    def set_entries(self, entries: list[ModelEntry]) -> None:
        self.beginResetModel()
        self._entries = list(entries)
        self.endResetModel()

    def entries(self) -> list[ModelEntry]:
        return list(self._entries)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._entries)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            horizontal = Qt.AlignmentFlag.AlignRight if section == self.SIZE else Qt.AlignmentFlag.AlignLeft
            return int(horizontal | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        entry, column = self._entries[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(entry, column)
        if role == self.SORT_ROLE:
            if column == self.SIZE:
                return entry.info.size_bytes
            return f"{0 if entry.usable else 1}{self._text(entry, column).lower()}"
        if role == self.ENTRY_ROLE:
            return entry
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [str(entry.path)]
            if entry.problem:
                lines.insert(0, f"Sfumato can't use this: {entry.problem.rstrip('.')}.")
            elif entry.info.note:
                lines.append(entry.info.note)
            return "\n".join(lines)
        if role == Qt.ItemDataRole.ForegroundRole and not entry.usable:
            return QApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == self.SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _text(self, entry: ModelEntry, column: int) -> str:
        if column == self.NAME:
            return entry.name
        if column == self.FAMILY:
            return entry.family_label or "—"
        if column == self.FORMAT:
            return entry.info.format
        if column == self.SIZE:
            return entry.size_label
        if column == self.FOLDER:
            return folder_label(entry.folder)
        return entry.problem or entry.info.note


class _ElideMiddle(QStyledItemDelegate):
    """Folders keep their start and their end when the column is narrow."""

    def initStyleOption(self, option, index) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideMiddle


def folder_label(folder: Path) -> str:
    if folder == paths.models_dir():
        return "Sfumato models"
    if folder == model_sources.hub_cache_dir():
        return "Hugging Face downloads"
    return _home_relative(folder)


# -------------------------------------------------------------- other apps chooser


class OtherAppsDialog(QDialog):
    """Tick which of the found model folders of other apps to search."""

    def __init__(self, sources: list[Source], listed: set[str], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Other apps' models")
        layout = QVBoxLayout(self)
        intro = QLabel("Sfumato found the model folders of these apps. Tick the ones to search; "
                       "their files stay where they are.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.list = QListWidget()
        for source in sources:
            already = str(source.path) in listed
            text = f"{source.app} — {_home_relative(source.path)}" + ("  (already listed)" if already else "")
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, source)
            item.setToolTip(str(source.path))
            item.setCheckState(Qt.CheckState.Checked)
            if already:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.list.addItem(item)
        layout.addWidget(self.list)
        buttons = QDialogButtonBox()
        self.add_button = buttons.addButton("Add ticked folders", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(600, 260)

    def selected(self) -> list[Source]:
        items = (self.list.item(i) for i in range(self.list.count()))
        return [
            item.data(Qt.ItemDataRole.UserRole)
            for item in items
            if item.checkState() == Qt.CheckState.Checked and item.flags() & Qt.ItemFlag.ItemIsEnabled
        ]


# ---------------------------------------------------------------------- the dialog


class ModelsDialog(QDialog):
    """The Models window. Run it, then read chosen_model() (when accepted) and folders().

    The settings are not changed: folders() is the edited copy of models_folders.

    Signals:
        folders_changed(list): the edited models_folders (list of str), after each add or remove.
        scanned(list): the [ModelEntry] of a finished scan, once the table shows them.
        download_finished(str): the local folder of a finished download.
    """

    folders_changed = Signal(list)
    scanned = Signal(list)
    download_finished = Signal(str)

    def __init__(self, settings: Settings, download: DownloadFunction | None = None, parent: QWidget | None = None,
                 in_use: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self._folders = list(settings.models_folders)
        self._download = download or _default_download
        self._chosen: str | None = None
        self._in_use = in_use or settings.model  # the model the window uses now ("demo": the built-in one)
        self._select_after_scan: str | None = None if self._in_use == "demo" else self._in_use
        self._scan_generation = 0
        self._download_attempt = 0
        self._download_state: TaskState | None = None
        self._download_repo: str | None = None
        self.other_apps_dialog: OtherAppsDialog | None = None
        self._jobs = Background(self)
        self._jobs.progress.connect(self._download_progress)
        self._build()
        self._fill_folder_list()
        self.rescan()

    # -- public ---------------------------------------------------------------------------

    def chosen_model(self) -> str | None:
        """The file or folder path picked with "Use this model", when the dialog was accepted."""
        return self._chosen if self.result() == QDialog.DialogCode.Accepted else None

    def folders(self) -> list[str]:
        return list(self._folders)

    def entries(self) -> list[ModelEntry]:
        return self.table_model.entries()

    def selected_entry(self) -> ModelEntry | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return rows[0].data(ModelTableModel.ENTRY_ROLE)

    def select_model(self, path: str | Path) -> bool:
        target = _same_path_key(path)
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if _same_path_key(index.data(ModelTableModel.ENTRY_ROLE).path) == target:
                self.table.selectRow(row)
                self.table.scrollTo(index)
                return True
        return False

    def is_busy(self) -> bool:
        return self._jobs.busy()

    def _start(self, name: str, fn: Callable[[], object],
               on_done: Callable[[object, BaseException | None], None]) -> None:
        """Run `fn` off the GUI thread; `on_done(result, error)` back on it (one of them None)."""
        self._jobs.run(fn, lambda result: on_done(result, None), lambda error: on_done(None, error),
                       name=f"models-{name}")

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel("Models Sfumato found in its own folders and the folders listed below. "
                       "Grey rows can't be used; hover over one to see why.")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        self.table_model = ModelTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(ModelTableModel.SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._folder_delegate = _ElideMiddle(self.table)
        self.table.setItemDelegateForColumn(ModelTableModel.FOLDER, self._folder_delegate)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 12)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(ModelTableModel.NAME, Qt.SortOrder.AscendingOrder)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        for column in (ModelTableModel.FAMILY, ModelTableModel.FORMAT, ModelTableModel.SIZE):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(ModelTableModel.NOTE, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(ModelTableModel.NAME, 230)
        header.resizeSection(ModelTableModel.FOLDER, 200)
        self.table.setMinimumHeight(200)
        self.table.doubleClicked.connect(self._double_clicked)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        layout.addWidget(self.table, 1)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        layout.addWidget(self.message)

        actions = QHBoxLayout()
        self.add_file_button = self._button("Add model file...", "Ctrl+O", self.choose_model_file,
                                            "Pick a .safetensors or .ckpt file; its folder joins the list")
        self.add_folder_button = self._button("Add folder...", "Ctrl+Shift+O", self._add_folder_clicked,
                                              "Search another folder (and up to four folders inside it) for models")
        self.find_apps_button = self._button("Find other apps' models...", "Ctrl+F", self.find_other_apps,
                                             "Look for AUTOMATIC1111, Forge, ComfyUI, InvokeAI and other installs "
                                             "and use their models where they are")
        self.show_download_button = self._button("Download from Hugging Face...", "Ctrl+D", self.show_download_panel,
                                                 "Download a diffusers model by its Hugging Face id (owner/name)")
        self.rescan_button = self._button("Rescan", "F5", self.rescan, "Look through the folders again")
        for button in (self.add_file_button, self.add_folder_button, self.find_apps_button, self.show_download_button):
            actions.addWidget(button)
        actions.addStretch(1)
        self.scan_status = QLabel()
        actions.addWidget(self.scan_status)
        actions.addWidget(self.rescan_button)
        layout.addLayout(actions)

        layout.addWidget(self._build_download_panel())
        layout.addWidget(self._build_folders())

        buttons = QDialogButtonBox()
        self.use_button = buttons.addButton("Use this model", QDialogButtonBox.ButtonRole.AcceptRole)
        self.use_button.setToolTip("Generate with the selected model (Enter, or double-click a row)")
        self.use_button.setEnabled(False)
        self.use_button.setDefault(True)
        self.close_button = buttons.addButton("Close", QDialogButtonBox.ButtonRole.RejectRole)
        self.close_button.setToolTip("Close without changing the model (Esc); added and removed folders are kept")
        self.close_button.setAutoDefault(False)
        buttons.accepted.connect(self._use_selected)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(1040, 660)

    def _build_folders(self) -> QWidget:
        box = QFrame()
        grid = QGridLayout(box)
        grid.setContentsMargins(0, 4, 0, 0)
        grid.addWidget(QLabel("<b>Folders Sfumato searches</b>"), 0, 0)
        self.folder_list = QListWidget()
        self.folder_list.setFixedHeight(self.folder_list.fontMetrics().height() * 5 + 12)
        self.folder_list.setToolTip("Sfumato looks for models in these folders and up to four folders inside them")
        self.folder_list.currentItemChanged.connect(self._folder_selected)
        grid.addWidget(self.folder_list, 1, 0)
        self.remove_button = self._button("Remove from list", QKeySequence.StandardKey.Delete, self.remove_selected_folder,
                                          "Stop searching the selected folder. No file is deleted.")
        self.remove_button.setEnabled(False)
        self.folder_note = QLabel("Removing a folder from the list does not delete any files.")
        self.folder_note.setWordWrap(True)
        self.folder_note.setFixedWidth(220)
        side = QVBoxLayout()
        side.addWidget(self.remove_button)
        side.addWidget(self.folder_note)
        side.addStretch(1)
        grid.addLayout(side, 1, 1)
        grid.setColumnStretch(0, 1)
        return box

    def _build_download_panel(self) -> QWidget:
        self.download_panel = QFrame()
        self.download_panel.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(self.download_panel)
        grid.addWidget(QLabel("<b>Download from Hugging Face</b>"), 0, 0, 1, 5)
        grid.addWidget(QLabel("Model id:"), 1, 0)
        self.repo_edit = QLineEdit()
        self.repo_edit.setPlaceholderText("owner/name, or paste the model page's address")
        self.repo_edit.setToolTip("A diffusers model on Hugging Face, for example owner/name. Enter starts the download.")
        self.repo_edit.setClearButtonEnabled(True)
        self.repo_edit.textChanged.connect(self._repo_text_changed)
        self.repo_edit.installEventFilter(self)  # Enter downloads instead of pressing "Use this model"
        grid.addWidget(self.repo_edit, 1, 1)
        self.download_button = self._button("Download", None, self.start_download,
                                            "Fetch the model's configs and .safetensors weights (Enter)")
        self.download_button.setEnabled(False)
        self.cancel_download_button = self._button("Cancel", "Ctrl+.", self.cancel_download,
                                                   "Stop the download; Retry picks it up again")
        self.cancel_download_button.setEnabled(False)
        self.retry_button = self._button("Retry", "Ctrl+R", self.retry_download,
                                         "Download again; files that finished are not fetched twice")
        self.retry_button.setEnabled(False)
        grid.addWidget(self.download_button, 1, 2)
        grid.addWidget(self.cancel_download_button, 1, 3)
        grid.addWidget(self.retry_button, 1, 4)
        self.download_progress = QProgressBar()
        self.download_progress.setTextVisible(False)
        self.download_progress.setRange(0, 1)
        self.download_progress.setValue(0)
        self.download_progress.setFixedHeight(10)
        grid.addWidget(self.download_progress, 2, 1, 1, 4)
        self.download_status = QLabel("Only what Sfumato needs is fetched (configs and .safetensors weights). "
                                      "An interrupted download resumes with the files that finished.")
        self.download_status.setWordWrap(True)
        self.download_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(self.download_status, 3, 1, 1, 4)
        grid.setColumnStretch(1, 1)
        self.download_panel.hide()
        return self.download_panel

    def _button(self, text: str, shortcut, slot, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.setAutoDefault(False)
        if shortcut is not None:
            button.setShortcut(QKeySequence(shortcut))
        button.setToolTip(_with_shortcut(tip, shortcut))
        button.clicked.connect(lambda _checked=False: slot())  # not clicked(bool)'s argument
        return button

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (watched is self.repo_edit and event.type() == QEvent.Type.KeyPress
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)):
            if self.download_button.isEnabled():
                self.start_download()
            return True
        return super().eventFilter(watched, event)

    def _show_message(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(ERROR_STYLE if error else INFO_STYLE)
        self.message.setVisible(bool(text))

    # -- scanning -------------------------------------------------------------------------

    @Slot()
    def rescan(self) -> None:
        self._scan_generation += 1
        generation, folders = self._scan_generation, list(self._folders)
        self.rescan_button.setEnabled(False)  # (setText would drop the button's shortcut)
        self.scan_status.setText("Scanning...")
        self._start("scan", lambda: model_sources.list_models(folders), partial(self._scan_done, generation))

    def _scan_done(self, generation: int, entries: list[ModelEntry] | None, error: BaseException | None) -> None:
        if generation != self._scan_generation:
            return  # a newer scan is on its way
        self.rescan_button.setEnabled(True)
        demo = not entries and self._in_use == "demo"
        self.scan_status.setText("" if error is not None else "Using the built-in demo model" if demo
                                 else f"{len(entries or [])} found")
        if error is not None:
            log.error("model scan failed", exc_info=error)
            self._show_message(f"The folders could not be searched: {error}", error=True)
            entries = []
        keep = self._select_after_scan
        selected = self.selected_entry()
        self._select_after_scan = None
        self.table_model.set_entries(entries)
        if not (keep and self.select_model(keep)) and selected is not None:
            self.select_model(selected.path)
        if not entries and error is None:
            found = ("Sfumato is using its built-in demo model, which paints noise, not pictures. To make real "
                     "images, add" if demo else "No models found yet. Add")
            self._show_message(f"{found} a model file or a folder, find other apps' models, "
                               "or download one from Hugging Face.")
        self._selection_changed()
        self.scanned.emit(entries)

    # -- selection and choosing ------------------------------------------------------------

    @Slot()
    def _selection_changed(self, *_args) -> None:
        entry = self.selected_entry()
        self.use_button.setEnabled(entry is not None and entry.usable)
        if entry is None:
            return
        if not entry.usable:
            self._show_message(f"Sfumato can't use {entry.name}: {entry.problem.rstrip('.')}.")
        elif self.message.styleSheet() == INFO_STYLE and self.message.text().startswith("Sfumato can't use"):
            self._show_message("")
        self._select_folder(entry.folder)

    def _select_folder(self, folder: Path) -> None:
        for row in range(self.folder_list.count()):
            item = self.folder_list.item(row)
            if Path(item.data(Qt.ItemDataRole.UserRole)) == folder:
                self.folder_list.setCurrentItem(item)
                return

    @Slot(QModelIndex)
    def _double_clicked(self, index: QModelIndex) -> None:
        entry = index.data(ModelTableModel.ENTRY_ROLE)
        if entry is not None and entry.usable:
            self._use_selected()

    @Slot()
    def _use_selected(self) -> None:
        entry = self.selected_entry()
        if entry is None or not entry.usable:
            return
        self._chosen = str(entry.path)
        self.accept()

    # -- folders ----------------------------------------------------------------------------

    def _fill_folder_list(self) -> None:
        current = self.folder_list.currentItem()
        keep = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
        self.folder_list.clear()
        own_tips = {
            paths.models_dir(): "Sfumato's own models folder: always searched. Nothing here deletes its files.",
            model_sources.hub_cache_dir(): "Where downloads from Hugging Face go: always searched.",
        }
        for folder, tip in own_tips.items():
            item = QListWidgetItem(f"{folder_label(folder)} — {_home_relative(folder)}")
            item.setData(Qt.ItemDataRole.UserRole, str(folder))
            item.setData(Qt.ItemDataRole.UserRole + 1, True)
            item.setToolTip(tip)
            self.folder_list.addItem(item)
        for folder in self._folders:
            item = QListWidgetItem(_home_relative(Path(folder)))
            item.setData(Qt.ItemDataRole.UserRole, folder)
            item.setData(Qt.ItemDataRole.UserRole + 1, False)
            item.setToolTip(folder)
            self.folder_list.addItem(item)
        if keep is not None:
            self._select_folder(Path(keep))

    @Slot()
    def _folder_selected(self, *_args) -> None:
        item = self.folder_list.currentItem()
        own = item is None or bool(item.data(Qt.ItemDataRole.UserRole + 1))
        self.remove_button.setEnabled(not own)
        if item is not None and own:
            self.folder_note.setText("Sfumato's own folder is always searched. This window never deletes files.")
        else:
            self.folder_note.setText("Removing a folder from the list does not delete any files.")

    def _set_folders(self, folders: list[str]) -> None:
        self._folders = folders
        self._fill_folder_list()
        self.folders_changed.emit(list(folders))

    def _searched_folders(self) -> list[Path]:
        return [*model_sources.own_folders(), *(Path(f) for f in self._folders)]

    @Slot()
    def _add_folder_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a models folder", str(Path.home()))
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str | Path) -> None:
        folder = Path(folder)
        if any(_same_path_key(folder) == _same_path_key(f) for f in self._searched_folders()):
            self._show_message(f"{_home_relative(folder)} is already in the list.")
            self._select_folder(folder)
            return
        self._set_folders([*self._folders, str(folder)])
        self._select_folder(folder)
        self._show_message(f"Added {_home_relative(folder)}. Its models are listed once the scan finishes.")
        self.rescan()

    @Slot()
    def remove_selected_folder(self) -> None:
        item = self.folder_list.currentItem()
        if item is None or item.data(Qt.ItemDataRole.UserRole + 1):
            return
        folder = item.data(Qt.ItemDataRole.UserRole)
        self._set_folders([f for f in self._folders if f != folder])
        self._show_message(f"Sfumato no longer searches {_home_relative(Path(folder))}. No file was deleted.")
        self.rescan()

    @Slot()
    def choose_model_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(
            self, "Add a model file", str(Path.home()),
            "Stable Diffusion checkpoints (*.safetensors *.ckpt);;All files (*)",
        )
        if name:
            self.add_model_file(name)

    def add_model_file(self, path: str | Path) -> None:
        """Identify the file (off the GUI thread); a usable one's folder joins the list."""
        path = Path(path)
        self._show_message(f"Reading {path.name}...")
        self._start("identify", lambda: modelfiles.identify(path), partial(self._identified, path))

    def _identified(self, path: Path, info: modelfiles.ModelInfo | None, error: BaseException | None) -> None:
        if error is not None:
            if not isinstance(error, SfumatoError):
                log.error("could not identify %s", path, exc_info=error)
            self._show_message(str(error) if isinstance(error, SfumatoError) else f"{path.name} could not be read: {error}",
                               error=True)
            return
        problem = model_sources.problem_of(info)
        if problem:
            self._show_message(f"{path.name} can't be used: it is {problem}." if problem.startswith("a")
                               else f"{path.name} can't be used: {problem}.", error=True)
            return
        self._select_after_scan = str(path)
        if model_sources.covering_folder(path, self._searched_folders()) is None:
            self._set_folders([*self._folders, str(path.parent)])
            self._show_message(f"Added {path.name}: Sfumato now searches {_home_relative(path.parent)}.")
        else:
            self._show_message(f"{path.name} is in a folder Sfumato already searches.")
        self.rescan()

    # -- other apps ---------------------------------------------------------------------------

    @Slot()
    def find_other_apps(self) -> None:
        self.find_apps_button.setEnabled(False)
        self._show_message("Looking for other Stable Diffusion apps...")
        self._start("find-apps", detect_other_apps, self._apps_found)

    def _apps_found(self, sources: list[Source] | None, error: BaseException | None) -> None:
        self.find_apps_button.setEnabled(True)
        if error is not None:
            self._show_message(f"Looking for other apps failed: {error}", error=True)
            return
        if not sources:
            self._show_message("No other Stable Diffusion apps were found in the usual places. "
                               "If you have one, use Add folder... and pick its models folder.")
            return
        self._show_message("")
        self.other_apps_dialog = OtherAppsDialog(sources, set(self._folders), self)
        self.other_apps_dialog.accepted.connect(self._add_other_apps)
        self.other_apps_dialog.open()

    @Slot()
    def _add_other_apps(self) -> None:
        chosen = [str(s.path) for s in self.other_apps_dialog.selected() if str(s.path) not in self._folders]
        if not chosen:
            return
        self._set_folders([*self._folders, *chosen])
        self._show_message(f"Added {len(chosen)} folder{'s' if len(chosen) > 1 else ''} of other apps. "
                           "Their models stay where they are.")
        self.rescan()

    # -- downloads ------------------------------------------------------------------------------

    @Slot()
    def show_download_panel(self) -> None:
        self.download_panel.show()
        self.repo_edit.setFocus()
        self.repo_edit.selectAll()

    @Slot(str)
    def _repo_text_changed(self, text: str) -> None:
        valid = parse_repo_id(text) is not None
        self.download_button.setEnabled(valid and self._download_state is None)
        if text.strip() and not valid:
            self._download_message("Type the model's id as owner/name (for example runwayml/stable-diffusion-v1-5).")
        elif self._download_state is None and not self.retry_button.isEnabled():
            self._download_message("Only what Sfumato needs is fetched (configs and .safetensors weights). "
                                   "An interrupted download resumes with the files that finished.")

    def _download_message(self, text: str, error: bool = False) -> None:
        self.download_status.setText(text)
        self.download_status.setStyleSheet(ERROR_STYLE if error else "")

    @Slot()
    def start_download(self, repo_id: str | None = None) -> None:
        repo = parse_repo_id(self.repo_edit.text() if repo_id is None else repo_id)
        if repo is None:
            self._download_message("Type the model's id as owner/name (for example runwayml/stable-diffusion-v1-5).",
                                   error=True)
            return
        if self._download_state is not None:
            return
        self.download_panel.show()
        self._download_repo = repo
        self._download_attempt += 1
        attempt, jobs, last = self._download_attempt, self._jobs, [""]

        def status(text: str) -> None:  # on the download thread
            if text != last[0]:
                last[0] = text
                jobs.report(attempt, text)

        state = TaskState(on_status=status)
        self._download_state = state
        self._set_downloading(True)
        self.download_progress.setRange(0, 0)
        self._download_message(f"Downloading {repo}...")
        download = self._download
        self._start("download", lambda: download(repo, state), partial(self._download_done, attempt, repo))

    @Slot()
    def cancel_download(self) -> None:
        if self._download_state is not None:
            self._download_state.cancel()
            self.cancel_download_button.setEnabled(False)
            self._download_message("Cancelling...")

    @Slot()
    def retry_download(self) -> None:
        if self._download_repo is not None:
            self.start_download(self._download_repo)

    def _set_downloading(self, running: bool) -> None:
        self.repo_edit.setEnabled(not running)
        self.download_button.setEnabled(not running and parse_repo_id(self.repo_edit.text()) is not None)
        self.cancel_download_button.setEnabled(running)
        self.retry_button.setEnabled(False)

    @Slot(int, str)
    def _download_progress(self, attempt: int, text: str) -> None:
        if attempt != self._download_attempt or self._download_state is None or self._download_state.cancelled():
            return
        match = re.search(PROGRESS_TEXT, text)
        if match and int(match[2]) > 0:
            self.download_progress.setRange(0, int(match[2]))
            self.download_progress.setValue(min(int(match[1]), int(match[2])))
        self._download_message(text)

    def _download_done(self, attempt: int, repo: str, folder: Path | None, error: BaseException | None) -> None:
        self._download_state = None
        self._set_downloading(False)
        self.download_progress.setRange(0, 1)
        if error is None:
            self.download_progress.setValue(1)
            folder = Path(folder)
            self._download_message(f"Downloaded {repo}. It is selected in the list above.")
            self._select_after_scan = str(folder)
            if model_sources.covering_folder(folder, self._searched_folders()) is None:
                self._set_folders([*self._folders, str(folder)])
            self.download_finished.emit(str(folder))
            self.rescan()
            return
        self.download_progress.setValue(0)
        self.retry_button.setEnabled(True)
        if isinstance(error, Cancelled):
            self._download_message("Cancelled. Retry resumes it: the files that finished are kept.")
        elif isinstance(error, SfumatoError):
            self._download_message(str(error), error=True)
        else:
            log.error("download of %s failed", repo, exc_info=error)
            self._download_message(f"The download of {repo} failed: {error}", error=True)

    # -- closing --------------------------------------------------------------------------------

    def done(self, result: int) -> None:
        """Accept, reject and closing all end here: stop a download and wait for every thread."""
        if self._download_state is not None:
            self._download_state.cancel()
        if not self._jobs.wait(CLOSE_WAIT_S):
            log.warning("a models-window job is still running after %.0f s; it is left to finish", CLOSE_WAIT_S)
        self._jobs.closed = True
        self._download_state = None
        super().done(result)

    def showEvent(self, event) -> None:
        self._jobs.closed = False
        super().showEvent(event)


def _same_path_key(path: str | Path) -> str:
    """Compare paths without touching the disk (this runs on the GUI thread)."""
    return os.path.normcase(os.path.normpath(os.path.expanduser(str(path))))
