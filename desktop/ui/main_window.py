"""The main window: prompt panel, the picture (live preview, then results), queue, status."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices, QIcon, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop.core import model_sources, paths
from desktop.core import settings as settings_store
from desktop.core.errors import InvalidRequest
from desktop.core.request import GenerationRequest
from desktop.core.settings import Settings

from .image_view import ImageView
from .models_dialog import ModelsDialog
from .prompt_panel import PromptPanel
from .qimage import to_qimage
from .queue_view import QueueView
from .settings_dialog import SettingsDialog
from .theme import apply_theme
from .worker import GenerationWorker

DEMO_LABEL = "Demo model (random weights)"
DEMO_NOTICE = (
    "You are using the built-in demo model. Its weights are random, so it paints noise, not pictures. "
    "To make real images, put a Stable Diffusion .safetensors file in the models folder "
    "(Models > Open models folder), or add or download one in Models > Manage models (Ctrl+M)."
)


class MainWindow(QMainWindow):
    """Signals:
    results_shown(list): [(image, seed, path)] of a finished job, after it is on screen.
    models_scanned(list): internal; [(ref, label, family)] found by the background scan.
    """

    results_shown = Signal(list)
    models_scanned = Signal(list)

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings
        self.setWindowTitle("Sfumato")
        self.worker = GenerationWorker(settings)
        self._step_times: list[float] = []
        self._select_after_scan: str | None = None
        self._closing = False
        self._first_scan = True
        self.worker_model: str | None = None  # what the worker was last asked to load
        self._build()
        self._connect()
        request = self._restored_request()
        self.panel.set_request(request)
        self.panel.batch_count.setValue(settings.batch_count)
        known = [] if settings.model == "demo" else [(settings.model, Path(settings.model).stem, "sd1")]
        self.panel.set_models([*known, ("demo", DEMO_LABEL, "sd1")], settings.model)
        self._scan_models()
        if settings.notice:
            self.statusBar().showMessage(settings.notice, 15_000)

    # -- layout ------------------------------------------------------------------------

    def _build(self) -> None:
        self.panel = PromptPanel()
        panel_scroll = QScrollArea()
        panel_scroll.setWidget(self.panel)
        panel_scroll.setWidgetResizable(True)
        panel_scroll.setMinimumWidth(340)
        panel_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.demo_banner = QLabel(DEMO_NOTICE)
        self.demo_banner.setObjectName("demoBanner")
        self.demo_banner.setWordWrap(True)
        self.demo_banner.setStyleSheet(
            "#demoBanner { background: palette(alternate-base); border: 1px solid palette(mid);"
            " border-radius: 4px; padding: 8px; }"
        )
        self.error_banner = QPushButton()
        self.error_banner.setObjectName("errorBanner")
        self.error_banner.setToolTip("Click to dismiss")
        self.error_banner.setStyleSheet(
            "#errorBanner { text-align: left; padding: 8px; border-radius: 4px; color: white;"
            " background: #a33a3a; border: 1px solid #7a2020; }"
        )
        self.error_banner.clicked.connect(self.error_banner.hide)
        self.error_banner.hide()
        self.view = ImageView()
        self.results = QListWidget()
        self.results.setViewMode(QListWidget.ViewMode.IconMode)
        self.results.setFlow(QListWidget.Flow.LeftToRight)
        self.results.setWrapping(False)
        self.results.setIconSize(QSize(96, 96))
        self.results.setFixedHeight(136)
        self.results.setMovement(QListWidget.Movement.Static)
        self.results.setToolTip("Pictures made in this session; click one to show it")
        self.results.currentItemChanged.connect(self._show_result_item)
        self.results.hide()  # until there is something to show

        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running generation (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.queue = QueueView()
        self.queue.setMaximumHeight(130)

        centre = QWidget()
        layout = QVBoxLayout(centre)
        layout.addWidget(self.demo_banner)
        layout.addWidget(self.error_banner)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.results)
        layout.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self.queue)

        splitter = QSplitter()
        splitter.addWidget(panel_scroll)
        splitter.addWidget(centre)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 900])
        self.setCentralWidget(splitter)

        self.progress = QProgressBar()
        self.progress.setMinimumWidth(320)
        self.progress.setTextVisible(True)
        self.progress.setFormat("Idle")
        self.progress.setValue(0)
        self.device_label = QLabel("Engine: starting after the window")
        self.statusBar().addPermanentWidget(self.device_label)
        self.statusBar().addPermanentWidget(self.progress)
        self._build_menus()
        self.resize(1280, 860)

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "Open output folder", "Ctrl+Shift+O", lambda: self._open_folder(self.settings.output_path()))
        file_menu.addSeparator()
        settings_action = self._action(file_menu, "Settings...", "Ctrl+,", self.open_settings)
        settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        file_menu.addSeparator()
        self._action(file_menu, "Quit", QKeySequence.StandardKey.Quit, self.close)
        generate_menu = self.menuBar().addMenu("&Generate")
        self.generate_action = self._action(generate_menu, "Generate", "Ctrl+Return", self.generate)
        self.cancel_action = self._action(generate_menu, "Cancel", "Esc", self.cancel)
        models_menu = self.menuBar().addMenu("&Models")
        self._action(models_menu, "Manage models...", "Ctrl+M", self.open_models_dialog)
        self._action(models_menu, "Open models folder", None, lambda: self._open_folder(paths.models_dir()))
        self._action(models_menu, "Rescan models", "F5", self._scan_models)

    def _action(self, menu, text, shortcut, slot) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setToolTip(f"{text} ({QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText)})")
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _connect(self) -> None:
        self.panel.generate_requested.connect(self.generate)
        self.panel.model_changed.connect(self._model_changed)
        self.queue.remove_requested.connect(self.worker.remove)
        self.models_scanned.connect(self._models_found)
        w = self.worker
        w.status.connect(self._status)
        w.device_ready.connect(lambda text: self.device_label.setText(f"Device: {text}"))
        w.model_failed.connect(lambda ref, message: self.show_error(message))
        w.queue_changed.connect(self._queue_changed)
        w.job_started.connect(self._job_started)
        w.step.connect(self._step)
        w.job_finished.connect(self._job_finished)
        w.job_failed.connect(self._job_failed)
        w.job_cancelled.connect(self._job_cancelled)
        w.save_failed.connect(lambda job_id, message: self.show_error(message))

    # -- start-up ------------------------------------------------------------------------

    def start_engine(self) -> None:
        """Called once the window is visible: import torch and load the model in the worker."""
        self.worker_model = self.panel.model_ref()
        self.worker.preload(self.worker_model)

    def _restored_request(self) -> GenerationRequest:
        try:
            return GenerationRequest.from_dict(self.settings.last_request).replace(model="demo")
        except (InvalidRequest, TypeError):
            return GenerationRequest()

    def _scan_models(self) -> None:
        folders = list(self.settings.models_folders)

        def scan() -> None:  # header reads only, but never on the GUI thread
            found = [(str(e.path), e.name, e.info.family.value) for e in model_sources.list_models(folders) if e.usable]
            try:
                self.models_scanned.emit(found)
            except RuntimeError:  # the window was closed while the scan ran
                pass

        threading.Thread(target=scan, name="model-scan", daemon=True).start()

    @Slot(list)
    def _models_found(self, found: list) -> None:
        current = self._select_after_scan or self.panel.model_ref()
        self._select_after_scan = None
        if current == "demo" and found and self._first_scan:
            current = found[0][0]  # on start-up, a real model beats the demo
        elif current != "demo" and current not in [ref for ref, _, _ in found] and self.worker_model == current:
            self.show_error(f"The model {Path(current).name} was not found any more; another one is selected.")
        self._first_scan = False
        self.panel.set_models([*found, ("demo", DEMO_LABEL, "sd1")], current)
        self._update_demo_banner()
        if self.panel.model_ref() != self.worker_model:
            self._model_changed(self.panel.model_ref())

    def open_models_dialog(self) -> None:
        dialog = ModelsDialog(self.settings, parent=self)
        dialog.exec()
        folders, chosen = dialog.folders(), dialog.chosen_model()
        dialog.deleteLater()
        changed = folders != self.settings.models_folders
        if changed:  # folder edits are kept even when the window is closed without choosing
            self.settings.models_folders = folders
            self._save_settings()
        if chosen:
            self._select_after_scan = chosen
        if chosen or changed:
            self._scan_models()

    def _update_demo_banner(self) -> None:
        self.demo_banner.setVisible(self.panel.model_ref() == "demo")

    @Slot(str)
    def _model_changed(self, ref: str) -> None:
        self._update_demo_banner()
        self.worker_model = ref
        self.worker.preload(ref)

    # -- generating ------------------------------------------------------------------------

    @Slot()
    def generate(self) -> list[int]:
        request = self.panel.request()
        try:
            request.validate()
        except InvalidRequest as error:
            self.show_error(f"Cannot generate: {error}")
            return []
        self.error_banner.hide()
        self._remember(request)
        runs = range(self.panel.batch_count.value())
        if request.seed == -1:
            return [self.worker.submit(request) for _ in runs]
        step = request.batch_size  # a fixed seed continues: run 2 starts where run 1's batch ended
        return [self.worker.submit(request.replace(seed=(request.seed + i * step) % 2**32)) for i in runs]

    @Slot()
    def cancel(self) -> None:
        self.worker.cancel()

    def _remember(self, request: GenerationRequest) -> None:
        self.settings.last_request = request.replace(model="demo").to_dict()
        self.settings.batch_count = self.panel.batch_count.value()
        self.settings.model = request.model
        self._save_settings()

    def _save_settings(self) -> None:
        try:
            settings_store.save(self.settings)
        except OSError as error:
            self.show_error(f"Settings could not be saved: {error.strerror or error}")

    @Slot(str)
    def _status(self, text: str) -> None:
        self.statusBar().showMessage(text)

    @Slot(list)
    def _queue_changed(self, jobs: list) -> None:
        self.queue.set_jobs(jobs)

    @Slot(int, object)
    def _job_started(self, job_id: int, request: GenerationRequest) -> None:
        self.cancel_button.setEnabled(True)
        self._step_times = [time.perf_counter()]
        self.progress.setRange(0, request.steps)
        self.progress.setValue(0)
        self.progress.setFormat("Starting...")

    @Slot(int, int, int, object)
    def _step(self, job_id: int, index: int, total: int, preview) -> None:
        now = time.perf_counter()
        self._step_times.append(now)
        self.progress.setRange(0, total)
        self.progress.setValue(index)
        text = f"Step {index}/{total}"
        if len(self._step_times) > 2:
            per_step = (now - self._step_times[1]) / (len(self._step_times) - 2)
            if per_step > 0:
                rate = f"{1 / per_step:.2f} it/s" if per_step < 1 else f"{per_step:.1f} s/it"
                text += f" · {rate} · ETA {per_step * (total - index):.0f} s"
        self.progress.setFormat(text)
        if preview is not None:
            self.view.set_image(to_qimage(preview), f"Preview · step {index}/{total}")

    @Slot(int, list)
    def _job_finished(self, job_id: int, saved: list) -> None:
        self._job_done("Done")
        for image, seed, path in saved:
            qimage = to_qimage(image)
            thumb = qimage.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            item = QListWidgetItem(QIcon(QPixmap.fromImage(thumb)), str(seed))
            # Saved pictures are reloaded from disk when clicked; only unsaved ones stay in memory.
            item.setData(Qt.ItemDataRole.UserRole, (None if path else qimage, seed, path))
            item.setToolTip(f"Seed {seed}\n{path or 'not saved'}")
            self.results.insertItem(0, item)
            self.panel.remember_seed(seed)
        if saved:
            self.results.show()
            self.view.set_image(to_qimage(saved[0][0]), self._caption(saved[0][1], saved[0][2]))
            self.results.blockSignals(True)
            self.results.setCurrentRow(len(saved) - 1)
            self.results.blockSignals(False)
        self.results_shown.emit(saved)

    @Slot(int, str)
    def _job_failed(self, job_id: int, message: str) -> None:
        self._job_done("Failed")
        self.show_error(message)

    def show_error(self, message: str) -> None:
        """Say what went wrong above the picture, without a modal box; a click dismisses it."""
        self.error_banner.setText(message)
        self.error_banner.show()
        self.statusBar().showMessage(message, 10_000)

    @Slot(int)
    def _job_cancelled(self, job_id: int) -> None:
        self._job_done("Cancelled")

    def _job_done(self, text: str) -> None:
        self.cancel_button.setEnabled(bool(self.worker.pending()))
        self.progress.setFormat(text)

    def _show_result_item(self, item: QListWidgetItem | None, _previous=None) -> None:
        if item is None:
            return
        qimage, seed, path = item.data(Qt.ItemDataRole.UserRole)
        if qimage is None:
            qimage = QImage(str(path))
            if qimage.isNull():
                self.show_error(f"{Path(path).name} can no longer be read; it may have been moved or deleted.")
                return
        self.view.set_image(qimage, self._caption(seed, path))

    @staticmethod
    def _caption(seed: int, path) -> str:
        return f"Seed {seed} · {Path(path).name}" if path else f"Seed {seed} · not saved"

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        old, new = self.settings, dialog.settings()
        self.settings = new
        self.worker.update_settings(new)  # previews, output folder, device: from the next job on
        self._save_settings()
        apply_theme(QApplication.instance(), new.theme)
        if new.models_folders != old.models_folders:
            self._scan_models()

    def _open_folder(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # -- closing -------------------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        if not self._closing:
            self._closing = True
            self._remember(self.panel.request())
        if not self.worker.shutdown(timeout_ms=3000):
            # A step, a VAE decode or a model load is still finishing: close when the thread ends.
            self.statusBar().showMessage("Stopping: finishing the current step...")
            self.worker.stopped.connect(self.close, Qt.ConnectionType.SingleShotConnection)
            event.ignore()
            return
        super().closeEvent(event)
