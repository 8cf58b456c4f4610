"""The Models window: the table of models with the folders they come from, and the ways to add more.

It puts the parts together (table.py, folders.py, download.py,
other_apps.py) and does what joins them: scanning the folders, adding a model
file (its folder joins the list) and choosing the model to use.

All file work (scans, identifying a file, looking for other apps, downloads)
runs on short-lived background threads; their results come back through
signals to slots on the GUI thread. Nothing here imports torch, diffusers or
the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPoint, Qt, Signal, Slot
from PySide6.QtGui import QActionGroup
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QVBoxLayout,
    QWidget,
)

from desktop.core import fewstep, model_sources, modelfiles, postprocess
from desktop.core.errors import SfumatoError
from desktop.core.model_sources import ModelEntry, Source, detect_other_apps
from desktop.core.settings import Settings

from ..background import Background
from .common import ERROR_STYLE, INFO_STYLE, button, home_relative, with_shortcut
from .download import DownloadFunction, DownloadPanel
from .folders import FolderListEditor
from .other_apps import OtherAppsDialog
from .table import ModelTable, ModelTableModel

log = logging.getLogger(__name__)

UpscalerReader = Callable[[Path], tuple[str, str, str]]  # file -> the engine's (kind, label, licence) of it


def list_models(folders: list[str], read_upscaler: UpscalerReader | None = None) -> list[ModelEntry]:
    """The Models window's rows: the models, and the upscaler folders' files (other apps' too) by kind, architecture
    and scale as `read_upscaler` (the engine's spandrel reading) tells them, where the header alone guesses."""
    entries = model_sources.list_models(folders, upscalers=True)
    if read_upscaler is None:
        return entries
    files = set(postprocess.list_upscalers(folders).values())

    def read(entry: ModelEntry) -> ModelEntry:
        try:
            return model_sources.read_as(entry, *read_upscaler(entry.path))
        except Exception:  # noqa: BLE001 - the header's reading stays when the engine can't read the file
            log.warning("could not read the upscaler %s", entry.path, exc_info=True)
            return entry

    return [read(e) if e.info.kind in model_sources.POSTPROCESS_KINDS or e.path in files else e for e in entries]


CLOSE_WAIT_S = 10.0  # how long closing waits for a cancelled download to stop
ADD_FOLDER_SHORTCUT = "Ctrl+Shift+O"


class ModelsDialog(QDialog):
    """The Models window. Run it, then read chosen_model() (when accepted) and folders().

    The settings are not changed: folders() is the edited copy of models_folders, few_step_marks() of
    few_step_marks (a model's context menu marks it as a few-step model of a kind, or as none, for files whose name
    and metadata do not say: choosing it then sets that kind's steps, CFG and sampler).

    Signals:
        folders_changed(list): the edited models_folders (list of str), after each add or remove.
        scanned(list): the [ModelEntry] of a finished scan, once the table shows them.
        download_finished(str): the local folder of a finished download.
    """

    folders_changed = Signal(list)
    scanned = Signal(list)
    download_finished = Signal(str)

    def __init__(self, settings: Settings, download: DownloadFunction | None = None, parent: QWidget | None = None,
                 in_use: str | None = None, read_upscaler: UpscalerReader | None = None):
        super().__init__(parent)
        self._read_upscaler = read_upscaler  # the engine's reading of upscaler files, run off the GUI thread
        self.setWindowTitle("Models")
        self._chosen: str | None = None
        self._in_use = in_use or settings.model  # the model the window uses now ("demo": the built-in one)
        self._select_after_scan: str | None = None if self._in_use == "demo" else self._in_use
        self._scan_generation = 0
        self.other_apps_dialog: OtherAppsDialog | None = None
        self._jobs = Background(self)
        self._marks = dict(settings.few_step_marks)
        self._build(settings, download)
        self.table.table_model.set_marks(self._marks)
        self.rescan()

    # -- public ---------------------------------------------------------------------------

    def chosen_model(self) -> str | None:
        """The file or folder path picked with "Use this model", when the dialog was accepted."""
        return self._chosen if self.result() == QDialog.DialogCode.Accepted else None

    def folders(self) -> list[str]:
        return self.folders_editor.folders()

    def few_step_marks(self) -> dict[str, str]:
        """The edited copy of settings.few_step_marks: model file name -> fewstep.KINDS or fewstep.NONE."""
        return dict(self._marks)

    def few_step_menu(self, entry: ModelEntry) -> QMenu:
        """"Few-step model": what the model's name says, each kind, or not few-step; the model's choice checked."""
        menu = QMenu("Few-step model", self)
        group = QActionGroup(menu)
        said = fewstep.LABELS.get(entry.info.few_step, "not few-step")
        current = self._marks.get(entry.info.name, "")
        for value, text in (("", f"As its name says ({said})"), *fewstep.LABELS.items(), (fewstep.NONE,
                                                                                          "Not few-step")):
            action = menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(value == current)
            group.addAction(action)
            action.triggered.connect(partial(self.mark_few_step, entry, value))
        return menu

    def mark_few_step(self, entry: ModelEntry, kind: str) -> None:
        """Mark the model as a few-step model of `kind` (fewstep.KINDS), as not one (fewstep.NONE), or take what
        its name says again ("")."""
        if kind:
            self._marks[entry.info.name] = kind
        else:
            self._marks.pop(entry.info.name, None)
        self.table.table_model.set_marks(self._marks)
        found = self.table.table_model.few_step(entry)
        self._show_message(f"{entry.name} counts as a few-step model ({fewstep.LABELS[found]}): choosing it sets "
                           "its steps, CFG and sampler." if found else f"{entry.name} counts as a usual model, not "
                           "a few-step one.")

    @Slot(QPoint)
    def _context_menu(self, at: QPoint) -> None:
        entry = self.table.indexAt(at).data(ModelTableModel.ENTRY_ROLE)
        if entry is None or not entry.usable or entry.info.kind in model_sources.POSTPROCESS_KINDS:
            return
        menu = QMenu(self)
        menu.addMenu(self.few_step_menu(entry))
        menu.exec(self.table.viewport().mapToGlobal(at))

    def entries(self) -> list[ModelEntry]:
        return self.table.table_model.entries()

    def selected_entry(self) -> ModelEntry | None:
        return self.table.selected_entry()

    def select_model(self, path: str | Path) -> bool:
        return self.table.select_model(path)

    def is_busy(self) -> bool:
        return self._jobs.busy()

    @Slot()
    def show_download_panel(self) -> None:
        self.download.open()

    def _start(self, name: str, fn: Callable[[], object],
               on_done: Callable[[object, BaseException | None], None]) -> None:
        """Run `fn` off the GUI thread; `on_done(result, error)` back on it (one of them None)."""
        self._jobs.run(fn, lambda result: on_done(result, None), lambda error: on_done(None, error),
                       name=f"models-{name}")

    # -- layout ---------------------------------------------------------------------------

    def _build(self, settings: Settings, download: DownloadFunction | None) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel("Models Sfumato found in its own folders and the folders listed below. "
                       "Grey rows can't be used; hover over one to see why.")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        self.table = ModelTable()
        self.table.doubleClicked.connect(self._double_clicked)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        layout.addWidget(self.table, 1)

        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        layout.addWidget(self.message)

        actions = QHBoxLayout()
        self.add_file_button = button("Add model file...", "Ctrl+O", self.choose_model_file,
                                      "Pick a .safetensors or .ckpt file; its folder joins the list")
        self.find_apps_button = button("Find other apps' models...", "Ctrl+F", self.find_other_apps,
                                       "Look for AUTOMATIC1111, Forge, ComfyUI, InvokeAI and other installs "
                                       "and use their models where they are")
        self.show_download_button = button("Download from Hugging Face...", "Ctrl+D", self.show_download_panel,
                                           "Download a diffusers model by its Hugging Face id (owner/name)")
        self.rescan_button = button("Rescan", "F5", self.rescan, "Look through the folders again")
        for made in (self.add_file_button, self.find_apps_button, self.show_download_button):
            actions.addWidget(made)
        actions.addStretch(1)
        self.scan_status = QLabel()
        actions.addWidget(self.scan_status)
        actions.addWidget(self.rescan_button)
        layout.addLayout(actions)

        self.download = DownloadPanel(self._jobs, download)
        self.download.downloaded.connect(self._downloaded)
        layout.addWidget(self.download)

        layout.addWidget(QLabel("<b>Folders Sfumato searches</b>"))
        self.folders_editor = FolderListEditor(settings.models_folders)
        add = self.folders_editor.add_button
        add.setShortcut(ADD_FOLDER_SHORTCUT)
        add.setToolTip(with_shortcut(add.toolTip(), ADD_FOLDER_SHORTCUT))
        self.folders_editor.changed.connect(self.folders_changed)
        self.folders_editor.added.connect(self._folder_added)
        self.folders_editor.removed.connect(self._folder_removed)
        self.folders_editor.already_listed.connect(
            lambda folder: self._show_message(f"{home_relative(Path(folder))} is already in the list."))
        layout.addWidget(self.folders_editor)

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

    def _show_message(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(ERROR_STYLE if error else INFO_STYLE)
        self.message.setVisible(bool(text))

    # -- scanning -------------------------------------------------------------------------

    @Slot()
    def rescan(self) -> None:
        self._scan_generation += 1
        generation, folders = self._scan_generation, self.folders()
        self.rescan_button.setEnabled(False)  # (setText would drop the button's shortcut)
        self.scan_status.setText("Scanning...")
        read = self._read_upscaler
        self._start("scan", lambda: list_models(folders, read), partial(self._scan_done, generation))

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
        self.table.table_model.set_entries(entries)
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
        self.folders_editor.select_folder(entry.folder)

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

    def add_folder(self, folder: str | Path) -> None:
        self.folders_editor.add_folder(folder)

    @Slot(str)
    def _folder_added(self, folder: str) -> None:
        self._show_message(f"Added {home_relative(Path(folder))}. Its models are listed once the scan finishes.")
        self.rescan()

    @Slot(str)
    def _folder_removed(self, folder: str) -> None:
        self._show_message(f"Sfumato no longer searches {home_relative(Path(folder))}. No file was deleted.")
        self.rescan()

    def _searched_folders(self) -> list[Path]:
        return [*model_sources.own_folders(), *(Path(f) for f in self.folders())]

    # -- add a model file ---------------------------------------------------------------------

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
            self.folders_editor.add_folders([str(path.parent)])
            self._show_message(f"Added {path.name}: Sfumato now searches {home_relative(path.parent)}.")
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
        self.other_apps_dialog = OtherAppsDialog(sources, self.folders(), self)
        self.other_apps_dialog.accepted.connect(self._add_other_apps)
        self.other_apps_dialog.open()

    @Slot()
    def _add_other_apps(self) -> None:
        added = self.folders_editor.add_folders([str(s.path) for s in self.other_apps_dialog.selected()])
        if not added:
            return
        self._show_message(f"Added {len(added)} folder{'s' if len(added) > 1 else ''} of other apps. "
                           "Their models stay where they are.")
        self.rescan()

    # -- downloads ------------------------------------------------------------------------------

    @Slot(str)
    def _downloaded(self, folder: str) -> None:
        self._select_after_scan = folder
        if model_sources.covering_folder(Path(folder), self._searched_folders()) is None:
            self.folders_editor.add_folders([folder])
        self.download_finished.emit(folder)
        self.rescan()

    # -- closing --------------------------------------------------------------------------------

    def done(self, result: int) -> None:
        """Accept, reject and closing all end here: stop a download and wait for every thread."""
        self.download.stop()
        if not self._jobs.wait(CLOSE_WAIT_S):
            log.warning("a models-window job is still running after %.0f s; it is left to finish", CLOSE_WAIT_S)
        self._jobs.closed = True
        super().done(result)

    def showEvent(self, event) -> None:
        self._jobs.closed = False
        super().showEvent(event)
