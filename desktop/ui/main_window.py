"""The main window: prompt panel, the canvas with its tools and layers, the queue and the status bar.

Generate turns the prompt panel's values and what the canvas frame holds
into one request (desktop/core/frame.py decides the mode); the worker runs
it; the live preview is painted into the frame and the results are staged
there, to accept as layers. The window is wiring: the values live in the
panel's GenerationSettings, each job's request, frame, state, results and
progress in a JobController (desktop/core/jobs.py), and which model to
select after a scan in desktop/core/model_choice.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QLockFile, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDockWidget,
    QTabWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop.core import autosave, families, fewstep, model_lists, model_sources, modelfiles, paths
from desktop.core import settings as settings_store
from desktop.core.backend import GENERATION, Backend, BackendFactory, PreprocessJob
from desktop.core.document import CanvasDocument
from desktop.core.errors import InvalidRequest
from desktop.core.frame import frame_mode
from desktop.core.gallery import export as exporting
from desktop.core.gallery.store import GalleryStore
from desktop.core.gallery.metadata import PictureModel, match_model
from desktop.core.geometry import Bounds, Extent
from desktop.core.jobs import JobController, JobState
from desktop.core.runs import Run
from desktop.core.model_choice import after_scan
from desktop.core.model_lists import ModelLists
from desktop.core.postprocess import UpscaleRequest, match_upscaler, own_folder, scan_postprocess_files
from desktop.core.preprocessors import describe as describe_preprocess
from desktop.core.queue_progress import QueueProgress
from desktop.core.queue_store import QueueStore
from desktop.core.recreate import RecreateRun
from desktop.core.request import HIRES_UPSCALERS, GenerationRequest
from desktop.core.settings import Settings
from desktop.core.xyz import PlotRun

from .addon_tools import AddonTools
from .background import Background
from .canvas.canvas_size_dialog import CanvasSizeDialog
from .canvas.files import CanvasFiles
from .canvas.generation import CanvasGeneration
from .canvas.layers_panel import LayersPanel
from .canvas.live import LiveMode
from .canvas.tool_bar import ToolBar
from .canvas.tools import Tool, ToolState
from .canvas.view import CanvasView
from .gallery.export_dialog import ExportDialog
from .gallery.view import GalleryView
from .generation_keys import GenerationKeys
from .models import ModelsDialog
from .plot_dialog import PlotDialog
from .prompt_panel import MODE_TEXT, PromptPanel, lacks
from .queue_view import QueueView
from .settings_dialog import SettingsDialog
from .theme import apply_theme
from .upscaling import Upscaling
from .welcome import WelcomeDialog
from .window_parts import ERROR_STYLE, NOTICE_STYLE, Banner, ReplicaLabel, StatusBar
from .worker import GenerationWorker

DEMO_LABEL = "Demo model (random weights)"
#: This computer's demo models, one of each family that has one ("demo" is SD 1.x's), listed after the real models.
DEMO_MODELS = [("demo" if spec.demo == "sd1" else families.DEMO_PREFIX + spec.demo, f"{spec.label} demo",
                spec.family.value) for spec in families.SPECS.values() if spec.demo]
DEMO_NOTICE = (
    "You are using the built-in demo model. Its weights are random, so it paints noise, not pictures. "
    "To make real images, put a Stable Diffusion .safetensors file in the models folder "
    "(Models > Open models folder), or add or download one in Models > Manage models (Ctrl+M)."
)
SERVER_DEMO_NOTICE = (
    "You are using the demo model of the Sfumato server at {server}. Its weights are random, so it paints noise, "
    "not pictures. To make real images, put a Stable Diffusion .safetensors file in that server's models folder "
    "(on the server's computer), then press F5 here to list it."
)


def _few_step(ref: str, kind: str) -> str:
    """A listed model's few-step kind for the panel's presets: a demo model's is "" (its random weights take any
    settings; Fast still treats it as LCM), so choosing one keeps the usual settings."""
    return "" if families.demo_kind(ref) is not None else kind


def window_backend(settings: Settings) -> Backend:
    """The window's backend: the Sfumato server the settings name (File > Settings > Backend), else this
    computer's engine. Called on the worker thread."""
    return remote_backend(settings) if settings.server_url else local_backend(settings)


def remote_backend(settings: Settings) -> Backend:
    """A Sfumato server's backend (plain HTTP; nothing is sent until it is used)."""
    from desktop.remote.backend import RemoteBackend

    return RemoteBackend(settings.server_url, settings.server_token or None)


def local_backend(settings: Settings) -> Backend:
    """The window's backend: the engine on this computer. Called on the worker thread, so torch loads there.

    With read_upscaler, the only places in desktop/ui that reach into desktop/engine (tests/core/test_layering.py).
    """
    from desktop.engine.local import LocalBackend

    return LocalBackend.from_settings(settings)


def read_upscaler(path: Path) -> tuple[str, str, str]:
    """The engine's (spandrel's) reading of an upscaler-folder file for the Models window: kind, label ("ESRGAN
    x4") and licence; ("", "", "") when it can't read it. Run off the GUI thread: it reads the weights."""
    from desktop.engine.upscale import read_kind

    reading = read_kind(Path(path))
    return reading.kind, reading.label, reading.licence


class MainWindow(QMainWindow):
    """Signals:
    results_shown(list): [(image, seed, path)] of a finished job, once staged on the canvas.
    models_scanned(list, object, str): internal; [(ref, label, family)] and the ModelLists found by the
        background scan, and the server's address the models were listed by ("" for this computer's folders).
    models_scan_failed(str, str): internal; the server's address and why it could not list its models.
    crash_reported(object, str): internal; an unhandled error was written to this report (desktop/diagnostics.py).
    """

    results_shown = Signal(list)
    models_scanned = Signal(list, object, str)
    models_scan_failed = Signal(str, str)
    crash_reported = Signal(object, str)  # from any thread: the crash report's path, and what happened
    queue_store_failed = Signal(str)  # from the store's thread: why the queue could not be kept

    def __init__(self, settings: Settings, backend_factory: BackendFactory | None = None):
        super().__init__()
        self.settings = settings
        self.setWindowTitle("Sfumato")
        self.worker = GenerationWorker(settings, backend_factory or window_backend)
        self.jobs = JobController()
        self._select_after_scan: str | None = None
        self._closing = False
        self._first_scan = True
        self.worker_model: str | None = None  # what the worker was last asked to load
        self.doc: CanvasDocument | None = None
        self.crash_box: QMessageBox | None = None
        self._build()
        self._connect()
        # Esc, Enter, Delete, Left and Right act on the run and its results wherever the focus is.
        self.generation_keys = GenerationKeys(self, self.generation, self.cancel_button.isEnabled, self.cancel)
        self.panel.set_request(self._restored_request())  # a bad value keeps that field's default
        self.panel.settings.batch_count = self.panel.settings.field("batch_count").clamp(settings.batch_count)
        self.panel.settings.aspect_locked = settings.aspect_locked
        known = [] if families.demo_kind(settings.model) else [(settings.model, Path(settings.model).stem, "sd1")]
        self.panel.set_models([*known, *DEMO_MODELS], settings.model)  # the family is known once the scan read it
        self._update_demo_banner()
        self.files.set_document(CanvasDocument.new(Extent(self.panel.settings.width, self.panel.settings.height)))
        self._scan_models()
        self.background = Background(self)
        self.layers.controls.run_in_background = self.background.run  # the model box's folder scans
        self.layers.controls.preprocess = self.preprocess  # "From picture": a job on the worker
        self._preprocessing: dict[int, tuple[Callable, Callable]] = {}  # job id -> (done, failed) of preprocess()
        self.layers.controls.models_folders = lambda: self.settings.models_folders
        self.layers.controls.failed.connect(self.show_error)
        # The add-on lists (upscalers, restorers, ControlNets...): this computer's files or the server's models, as
        # the last model scan found them (self.model_lists)
        self._use_model_lists(model_lists.nothing_yet(settings.server_url), hires=False)
        self.gallery_store: GalleryStore | None = None
        self._open_gallery()
        if settings.notice:
            self.statusBar().showMessage(settings.notice, 15_000)
        self._restore_queue()
        if autosave.exists():
            QTimer.singleShot(0, self.files.offer_restore)

    # -- layout ------------------------------------------------------------------------

    def _build(self) -> None:
        self.panel = PromptPanel()  # its values scroll; Generate and Cancel stay below them
        self.panel.few_step_marks = lambda: self.settings.few_step_marks
        self.setStatusBar(StatusBar())  # a long message ends in "…" before the Device label

        self.demo_banner = QLabel(DEMO_NOTICE)
        self.demo_banner.setObjectName("demoBanner")
        self.demo_banner.setWordWrap(True)
        self.demo_banner.setStyleSheet(f"#demoBanner {{ {NOTICE_STYLE} }}")
        self.error_banner = Banner("errorBanner", ERROR_STYLE)  # wraps: a long error never widens the window
        self.queue_notice = Banner("queueNotice")  # the jobs of the last session, back and paused
        self.licence_banner = Banner("licenceBanner")  # the chosen model's licence, once a session for each
        self._licences_shown: set[str] = set()

        self.tools = ToolState(self)
        self.canvas = CanvasView(self.tools)
        self.tool_bar = ToolBar(self.tools)
        self.generation = CanvasGeneration(self.canvas, self.jobs, self)
        self.live = LiveMode(self.canvas, self.worker, self.panel.request, self._live_plan_inputs, self)
        self.tool_bar.add_group(self.live.controls)
        self.files = CanvasFiles(self, lambda: Extent(self.panel.settings.width, self.panel.settings.height))
        self.layers = LayersPanel()
        layers_dock = QDockWidget("Layers", self)
        layers_dock.setObjectName("layersDock")
        layers_dock.setWidget(self.layers)
        layers_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                                | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                                | QDockWidget.DockWidgetFeature.DockWidgetClosable)  # View > Layers shows it again
        layers_dock.setMinimumWidth(230)
        self._layers_wanted = True  # the person's choice on the canvas tab (the gallery tab hides the dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, layers_dock)
        self.resizeDocks([layers_dock], [260], Qt.Orientation.Horizontal)  # its buttons wrap onto lines
        self.layers_dock = layers_dock
        self._control_tip = self.layers.buttons["control"].toolTip()  # what a family that lacks control layers replaces

        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running generation (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.panel.footer_buttons.addWidget(self.cancel_button)
        self.queue = QueueView()  # of a constant height: removing a job moves nothing under the pointer
        self._mode_timer = QTimer(self, singleShot=True, interval=120)
        self._mode_timer.timeout.connect(self._update_mode)

        self.gallery = GalleryView()
        self.gallery.base_request = self.panel.request
        self.gallery.model_folders = lambda: self.settings.models_folders
        self.addon_tools = AddonTools(self.panel, lambda: self.settings.models_folders, self)
        self.upscaling = Upscaling(self)
        canvas_page = QWidget()
        canvas_layout = QVBoxLayout(canvas_page)
        canvas_layout.setContentsMargins(0, 0, 0, 0)
        canvas_layout.addWidget(self.tool_bar)
        canvas_layout.addWidget(self.canvas, 1)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(canvas_page, "Canvas")
        self.tabs.addTab(self.gallery, "Gallery")
        self.tabs.setTabToolTip(0, "Paint, mask and generate (Alt+1)")
        self.tabs.setTabToolTip(1, "Every picture made, searchable (Alt+2)")

        centre = QWidget()
        layout = QVBoxLayout(centre)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.demo_banner)
        layout.addWidget(self.error_banner)
        layout.addWidget(self.queue_notice)
        layout.addWidget(self.licence_banner)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.queue)

        splitter = QSplitter()
        splitter.addWidget(self.panel)
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
        self.replicas_label = ReplicaLabel()  # "2 of 3 replicas working", while a server's replicas run jobs
        self.statusBar().addPermanentWidget(self.replicas_label)
        self.statusBar().addPermanentWidget(self.device_label)
        self.statusBar().addPermanentWidget(self.progress)
        self._build_menus()
        screen = QApplication.primaryScreen()
        room = screen.availableGeometry().size() if screen else None
        self.resize(min(1440, room.width() - 40) if room else 1440, min(920, room.height() - 60) if room else 920)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        menu = bar.addMenu("&File")
        self._action(menu, "New", QKeySequence.StandardKey.New, self.files.new)
        self._action(menu, "Open...", QKeySequence.StandardKey.Open, lambda: self.files.open())
        self._action(menu, "Save", QKeySequence.StandardKey.Save, lambda: self.files.save())
        self._action(menu, "Save as...", "Ctrl+Shift+S", lambda: self.files.save_as())
        menu.addSeparator()
        self._action(menu, "Import picture as layer...", "Ctrl+Shift+I", lambda: self.files.import_layer())
        self._action(menu, "Export picture...", "Ctrl+Shift+E", lambda: self.files.export())
        menu.addSeparator()
        self._action(menu, "Open output folder", "Ctrl+Shift+O", lambda: self._open_folder(self.settings.output_path()))
        settings_action = self._action(menu, "Settings...", "Ctrl+,", self.open_settings)
        settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        menu.addSeparator()
        self._action(menu, "Quit", QKeySequence.StandardKey.Quit, self.close)

        menu = bar.addMenu("&Edit")
        self.undo_action = self._action(menu, "Undo", QKeySequence.StandardKey.Undo, self.undo)
        self.redo_action = self._action(menu, "Redo", QKeySequence.StandardKey.Redo, self.redo)
        # Ctrl+Y and Ctrl+Shift+Z everywhere, each once: where the platform's own Redo already is Ctrl+Y, naming it
        # twice made the shortcut ambiguous, and Qt then runs neither.
        redo_keys = [*QKeySequence.keyBindings(QKeySequence.StandardKey.Redo), QKeySequence("Ctrl+Y"),
                     QKeySequence("Ctrl+Shift+Z")]
        self.redo_action.setShortcuts(list(dict.fromkeys(redo_keys)))
        menu.addSeparator()
        self._action(menu, "Paste as layer", QKeySequence.StandardKey.Paste, self.files.paste)

        menu = bar.addMenu("&View")
        self._action(menu, "Canvas", "Alt+1", lambda: self.tabs.setCurrentIndex(0))
        self._action(menu, "Gallery", "Alt+2", lambda: self.tabs.setCurrentIndex(1))
        self.layers_action = self.layers_dock.toggleViewAction()  # the dock's close button hides it
        self.layers_action.setText("Layers panel")
        menu.addAction(self.layers_action)
        menu.addSeparator()
        self._action(menu, "Zoom in", QKeySequence.StandardKey.ZoomIn, self.canvas.zoom_in)
        self._action(menu, "Zoom out", QKeySequence.StandardKey.ZoomOut, self.canvas.zoom_out)
        self._action(menu, "Fit picture", "Ctrl+0", self.canvas.fit)
        self._action(menu, "Actual pixels (100%)", "Ctrl+1", self.canvas.actual_size)

        menu = bar.addMenu("&Image")
        self._action(menu, "Canvas size...", "Ctrl+Alt+C", self.canvas_size)
        self.upscale_action = self._action(menu, "Upscale...", "Ctrl+Alt+U", self.upscale)
        self.restore_action = self._action(menu, "Restore...", None, self.upscaling.restore)

        menu = bar.addMenu("&Layer")
        self._action(menu, "New layer", "Ctrl+Shift+N", lambda: self.layers.new_layer("image"))
        self._action(menu, "New mask layer", None, lambda: self.layers.new_layer("mask"))
        self._action(menu, "Duplicate layer", "Ctrl+J", self.layers.duplicate)
        self._action(menu, "Delete layer", None, self.layers.delete)
        self._action(menu, "Merge down", "Ctrl+E", self.layers.merge_down)
        self._action(menu, "Clear layer", "Shift+Del", self.layers.clear)

        menu = bar.addMenu("&Tools")
        self.tool_actions = [self._action(menu, tool.label, tool.shortcut, lambda _=False, t=tool: self.tools.set_tool(t))
                             for tool in Tool]
        menu.addSeparator()
        self.tool_actions.append(self._action(menu, "Smaller brush", "[", lambda: self.tools.resize_brush(-1)))
        self.tool_actions.append(self._action(menu, "Larger brush", "]", lambda: self.tools.resize_brush(1)))

        menu = bar.addMenu("&Generate")
        self.generate_action = self._action(menu, "Generate", "Ctrl+Return", self.generate)
        self.cancel_action = self._action(menu, "Cancel", "Esc", self.cancel)
        menu.addSeparator()
        self._action(menu, "X/Y/Z plot...", "Ctrl+Shift+P", self.open_plot_dialog)
        self._action(menu, "Batch from folder...", None, self.open_batch_dialog)
        menu = bar.addMenu("&Models")
        self._action(menu, "Manage models...", "Ctrl+M", self.open_models_dialog)
        self._action(menu, "Open models folder", None, lambda: self._open_folder(paths.models_dir()))
        self._action(menu, "Rescan models", "F5", self._scan_models)

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
        self.panel.size_changed.connect(self._panel_size_changed)
        self.queue.remove_requested.connect(self._remove_job)
        self.queue.move_requested.connect(self.worker.move)
        self.queue.duplicate_requested.connect(self._duplicate_job)
        self.queue.pause_requested.connect(self.pause_queue)
        self.queue_store_failed.connect(self.show_error)
        self.models_scanned.connect(self._models_found)
        self.models_scan_failed.connect(self._models_not_listed)
        self.files.document_changed.connect(self._document_changed)
        self.files.title_changed.connect(lambda name: self.setWindowTitle(f"{name} — Sfumato"))
        self.files.error.connect(self.show_error)
        self.files.status.connect(self.note)
        self.canvas.message.connect(self.note)
        self.canvas.zoom_changed.connect(self.tool_bar.set_zoom)
        self.canvas.files_dropped.connect(self.files.drop_files)
        self.canvas.image_dropped.connect(self.files.drop_image)
        self.panel.reference_dropped.connect(self.files.add_reference)
        self.tool_bar.fit_requested.connect(self.canvas.fit)
        self.tool_bar.actual_size_requested.connect(self.canvas.actual_size)
        self.layers.message.connect(self.note)
        self.generation.accepted.connect(lambda _layer: self.files.autosave_now())
        self.generation.failed.connect(self.show_error)
        self.live.failed.connect(self.show_error)
        self.live.full_quality_requested.connect(self.generate)
        self.panel.settings.changed.connect(self.live.settings_changed)
        self.tabs.currentChanged.connect(self._tab_changed)
        g = self.gallery
        g.use_parameters.connect(self._use_parameters)
        g.use_controls.connect(self._use_controls)
        g.use_seed.connect(self._use_seed)
        g.to_canvas.connect(self._to_canvas)
        g.export_requested.connect(self.export_pictures)
        g.upscale_requested.connect(self.upscaling.pictures)
        g.restore_requested.connect(self.upscaling.restore_pictures)
        g.recreate_requested.connect(self.submit_run)
        g.message.connect(self.note)
        g.error.connect(self.show_error)
        g.undo_changed.connect(self._history_changed)
        self.crash_reported.connect(self._crashed)
        w = self.worker
        w.status.connect(self._status)
        w.device_ready.connect(lambda text: self.device_label.setText(f"Device: {text}"))
        w.device_ready.connect(lambda text: self.live.set_on_gpu(not text.startswith("CPU")))
        w.model_failed.connect(lambda ref, message: self.show_error(message))
        w.queue_changed.connect(self._queue_changed)
        w.job_started.connect(self._job_started)
        w.step.connect(self._step)
        w.job_finished.connect(self._job_finished)
        w.job_failed.connect(self._job_failed)
        w.job_cancelled.connect(self._job_cancelled)
        w.save_failed.connect(lambda job_id, message: self.show_error(message))
        w.working.connect(self.replicas_label.show_working)
        w.working.connect(self._working)
        w.paused_changed.connect(self.queue.set_paused)

    # -- the document ----------------------------------------------------------------------

    @Slot(object)
    def _document_changed(self, doc: CanvasDocument) -> None:
        if self.doc is not None:
            for event in (self.doc.pixels_changed, self.doc.layers_changed, self.doc.frame_changed):
                event.disconnect(self._schedule_mode)
            self.doc.frame_changed.disconnect(self._frame_changed)
            self.doc.history.changed.disconnect(self._history_changed)
        self.doc = doc
        self.canvas.set_document(doc)
        self.layers.set_document(doc)
        self.generation.set_document(doc)
        self.live.set_document(doc)
        for event in (doc.pixels_changed, doc.layers_changed, doc.frame_changed):
            event.connect(self._schedule_mode)
        doc.frame_changed.connect(self._frame_changed)
        doc.history.changed.connect(self._history_changed)
        self._frame_changed(doc.frame)
        self._history_changed()
        self._update_mode()

    def _schedule_mode(self, *_args) -> None:
        self._mode_timer.start()

    def _update_mode(self) -> None:
        mode = frame_mode(self.doc)
        self.panel.set_mode(mode)
        self.canvas.set_frame_caption(MODE_TEXT[mode][0])

    def _frame_changed(self, frame: Bounds) -> None:
        self.panel.set_size(frame.width, frame.height)

    @Slot(int, int)
    def _panel_size_changed(self, width: int, height: int) -> None:
        if self.doc is None:  # restoring the panel at start-up, before the first document
            return
        frame = self.doc.frame
        if (width, height) != (frame.width, frame.height):
            self.doc.set_frame(Bounds(frame.x, frame.y, width, height))

    def _history_changed(self) -> None:
        """Edit > Undo and Redo name what they would do: on the gallery tab, undo brings deleted pictures back."""
        history = self.doc.history
        undo, redo = history.undo_label, history.redo_label
        on_canvas = self.tabs.currentIndex() == 0
        if not on_canvas:
            undo, redo = ("delete" if self.gallery.can_undo_delete() else None), None
        for action, label, verb in ((self.undo_action, undo, "Undo"), (self.redo_action, redo, "Redo")):
            action.setText(f"{verb} {label.lower()}" if label else verb)
            action.setEnabled(label is not None)
        self.undo_action.setEnabled(undo is not None or on_canvas)  # Ctrl+Z in the first stroke undoes it

    # -- the gallery --------------------------------------------------------------------------

    def _open_gallery(self) -> None:
        """Open the index of the output folder in the background (it may need a rebuild the first time)."""
        folder = self.settings.output_path()
        self.gallery.count.setText("Opening...")

        def opened(store: GalleryStore) -> None:
            if self._closing or folder != self.settings.output_path():
                store.close()
                return
            old, self.gallery_store = self.gallery_store, store
            self.worker.set_gallery(store)
            self.gallery.set_store(store)
            if old is not None:
                old.close()
            if store.notice:
                self.show_error(store.notice)

        def failed(error: Exception) -> None:
            self.gallery.count.setText("Unavailable")
            self.show_error(f"The gallery of {folder} could not be opened: {error}. Pictures are still saved there; "
                            "check that the folder is writable (File > Settings sets it).")

        self.background.run(lambda: GalleryStore(folder, paths.cache_dir() / "thumbnails"), opened, failed,
                            name="gallery-open")

    def _tab_changed(self, index: int) -> None:
        on_canvas = index == 0
        for action in self.tool_actions:
            action.setEnabled(on_canvas)
        if not on_canvas:  # the gallery gets the room; the canvas tab gets the panel back as it was
            self._layers_wanted = not self.layers_dock.isHidden()
        self.layers_dock.setVisible(on_canvas and self._layers_wanted)
        self.layers_action.setEnabled(on_canvas)
        self._history_changed()
        if not on_canvas:
            self.gallery.refresh()  # files added or removed outside the app
            self.gallery.list.setFocus()

    def _use_parameters(self, request: GenerationRequest, wanted: PictureModel | None = None) -> None:
        """A picture's parameters in the panel: its model first when it is listed (by A1111's rule: the exact
        reference, the hash, the name), so that its family's values come and the picture's replace them."""
        kept = ""
        if wanted is not None and (wanted.ref or wanted.name or wanted.hash):
            cache = modelfiles.hash_cache(paths.cache_dir() / "model-hashes.json")  # read once, not once a model
            found = match_model(wanted, self.panel.listed_models(), lambda ref: modelfiles.known_hash(ref, cache))
            if found is None:
                kept = (f"{wanted} is not in the model list, so the panel keeps "
                        f"{self.panel.model.currentText() or self.panel.model_ref()}.")
            elif found != self.panel.model_ref():
                self.panel.choose_model(found)
        request = request.replace(model=self.panel.model_ref())
        hires, files = request.hires, self.model_lists.upscalers  # the last model scan's: nothing read here
        missing = ""
        if hires.enabled and hires.upscaler not in HIRES_UPSCALERS:
            found = match_upscaler(hires.upscaler, files)
            if found is None:
                missing = hires.upscaler
            else:
                request = request.replace(hires=hires.replace(upscaler=found))
        self.panel.set_request(request)
        self.panel.set_hires_upscalers(list(files))  # lists a missing upscaler's name, chosen, beside the files
        self.statusBar().showMessage(" ".join(("The picture's parameters are in the panel.", kept)).strip(),
                                     10_000 if kept else 5_000)
        if missing and self.model_lists.server:
            self.show_error(f"Missing hires upscaler: {missing} — the server at {self.model_lists.server} has none "
                            "of that name; put its file in the server's upscaler folder, then press F5 here.")
        elif missing:
            self.show_error(f"Missing hires upscaler: {missing} — put its file in {own_folder()} (or an ESRGAN or "
                            "upscale_models folder) and Sfumato will find it.")

    def _use_controls(self, specs: list) -> None:
        """A picture's controls, as empty control layers with their settings (its control pictures are not in its
        parameters); one already on the canvas with the same settings and nothing painted is not added again."""
        doc = self.doc
        waiting = [layer.control for layer in doc.layers
                   if getattr(layer, "control", None) is not None and not layer.pixels[..., 3].any()]
        for spec in specs:
            if spec in waiting:
                waiting.remove(spec)
            else:
                doc.add_control_layer(spec)

    def _use_seed(self, seed: int) -> None:
        self.panel.settings.seed = seed
        self.note(f"Seed {seed} is in the panel.")

    def _to_canvas(self, path: str, as_layer: bool) -> None:
        self.tabs.setCurrentIndex(0)
        if as_layer:
            self.files.import_layer(path)
        else:
            self.files.open(path)

    def export_pictures(self, records: list) -> None:
        store = self.gallery_store
        dialog = ExportDialog(records, Path(self.settings.last_export_folder or Path.home()), self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        options = dialog.options()
        self.settings.last_export_folder = str(options.folder)
        self._save_settings()
        items = [(record, store.path(record)) for record in records]
        self.statusBar().showMessage(f"Exporting {len(items)} picture(s)...")
        self.background.run(
            lambda: exporting.export(items, options),
            lambda written: self.statusBar().showMessage(" ".join(filter(None, (
                f"Exported {len(written)} picture(s) to {options.folder}.",
                options.signing.summary() if options.signing is not None else ""))), 10_000),
            lambda error: self.show_error(f"The export to {options.folder} stopped: "
                                          f"{getattr(error, 'strerror', None) or error}. Pictures already written "
                                          "are complete; check the folder and the free space."))

    def undo(self) -> None:
        if self.tabs.currentIndex() == 1:
            if self.gallery.can_undo_delete():
                self.gallery.undo_delete()
            return
        label = self.doc.undo()
        self.statusBar().showMessage(f"Undone: {label}" if label else "Nothing to undo.", 4_000)

    def redo(self) -> None:
        if self.tabs.currentIndex() == 1:
            return
        label = self.doc.redo()
        if label:
            self.statusBar().showMessage(f"Redone: {label}", 4_000)

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
        """List the models in the background: the model folders' on this computer, or the server's (over HTTP,
        with the backend's timeouts) when the settings name one."""
        folders, settings = list(self.settings.models_folders), self.settings
        server = settings.server_url

        def scan() -> None:  # header reads only, but never on the GUI thread
            try:
                if server:  # one answer for the model picker and the add-on lists (the server's names)
                    models = remote_backend(settings).models()
                    found = [(m.ref, m.name, m.family, m.variant, _few_step(m.ref, m.few_step), m.guidance_embedded)
                             for m in models if GENERATION in m.kinds]
                    lists = model_lists.from_server(models, server)
                else:
                    lists = model_lists.from_files(scan_postprocess_files(folders))
                    marks = dict(settings.few_step_marks)
                    found = [(str(e.path), e.name, e.info.family.value, e.info.variant,
                              fewstep.kind_of(e.info.name, e.info.few_step, marks), e.info.guidance_embedded)
                             for e in model_sources.list_models(folders) if e.usable]
            except Exception as error:  # noqa: BLE001 - a server's failure is a sentence (RemoteBackend's)
                if not server:
                    raise
                try:
                    self.models_scan_failed.emit(server, str(error) or type(error).__name__)
                except RuntimeError:
                    pass
                return
            try:
                self.models_scanned.emit(found, lists, server)
            except RuntimeError:  # the window was closed while the scan ran
                pass

        threading.Thread(target=scan, name="model-scan", daemon=True).start()

    @Slot(list, object, str)
    def _models_found(self, found: list, lists: ModelLists, server: str) -> None:
        if server != self.settings.server_url:
            return  # listed for the backend the settings named before
        wanted = self._select_after_scan or self.panel.model_ref()
        self._select_after_scan = None
        listed = found if server else [*found, *DEMO_MODELS]  # a server lists its own demos
        current, lost = after_scan([ref for ref, *_ in listed], wanted, first_scan=self._first_scan,
                                   loaded=self.worker_model)
        if lost:
            self.show_error(f"The model {Path(wanted).name} was not found any more; another one is selected.")
        self._first_scan = False
        self.panel.set_models(listed or [("demo", DEMO_LABEL, "sd1")], current)
        self._use_model_lists(lists)
        self._update_demo_banner()
        if self.panel.model_ref() != self.worker_model:
            self._model_changed(self.panel.model_ref())

    def _use_model_lists(self, lists: ModelLists, hires: bool = True) -> None:
        """The add-on lists the dialogs, the hires fix and the control layers offer from now on."""
        self.model_lists = lists
        if hires:
            self.panel.set_hires_upscalers(list(lists.upscalers))
        self.layers.controls.use_models(lists.controlnets, lists.adapters)

    @Slot(str, str)
    def _models_not_listed(self, server: str, message: str) -> None:
        if server == self.settings.server_url:
            self.device_label.setText("Engine: not connected")
            self.show_error(message)

    def show_welcome(self) -> None:
        """The first start: where do the models come from? (Not modal: the window works behind it.)"""
        self.welcome = WelcomeDialog(self)
        self.welcome.folders_chosen.connect(self._welcome_folders)
        self.welcome.add_file_requested.connect(lambda: self.open_models_dialog("add file"))
        self.welcome.download_requested.connect(lambda: self.open_models_dialog("download"))
        self.welcome.finished.connect(self._welcome_done)
        self.welcome.open()

    def _welcome_folders(self, folders: list) -> None:
        self.settings.models_folders = [*self.settings.models_folders,
                                        *(f for f in folders if f not in self.settings.models_folders)]
        self._save_settings()
        self._first_scan = True  # a real model found there replaces the demo
        self._scan_models()

    def _welcome_done(self, _result: int) -> None:
        self.settings.welcome_done = True
        self._save_settings()

    @Slot(object, str)
    def _crashed(self, report: Path, summary: str) -> None:
        """An unexpected error: keep the picture safe, say where the report is, and carry on."""
        self.files.autosave_now()
        text = (f"Something went wrong inside Sfumato: {summary}.\n\nYour picture is autosaved, and Sfumato keeps "
                f"running. A report was written to:\n{report}\n\nPlease send it with a bug report.")
        self.show_error(text.replace("\n\n", " ").replace("\n", " "))
        if self.crash_box is None:  # one box, however many errors follow
            self.crash_box = QMessageBox(QMessageBox.Icon.Critical, "Sfumato hit a problem", text,
                                         QMessageBox.StandardButton.Ok, self)
            self.crash_box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            open_logs = self.crash_box.addButton("Open the log folder", QMessageBox.ButtonRole.ActionRole)
            open_logs.clicked.connect(lambda: self._open_folder(Path(report).parent))
            self.crash_box.finished.connect(lambda _: setattr(self, "crash_box", None))
            self.crash_box.open()

    def open_models_dialog(self, then: str | None = None) -> None:
        """The Models window; `then` is "add file" or "download" to start there."""
        dialog = ModelsDialog(self.settings, parent=self, in_use=self.panel.model_ref(), read_upscaler=read_upscaler)
        if then == "download":
            dialog.show_download_panel()
        elif then == "add file":
            QTimer.singleShot(0, dialog.choose_model_file)
        dialog.exec()
        folders, chosen, marks = dialog.folders(), dialog.chosen_model(), dialog.few_step_marks()
        dialog.deleteLater()
        changed = folders != self.settings.models_folders or marks != self.settings.few_step_marks
        if changed:  # folder edits and few-step marks are kept even when the window is closed without choosing
            self.settings.models_folders, self.settings.few_step_marks = folders, marks
            self._save_settings()
        if chosen:
            self._select_after_scan = chosen
        if chosen or changed:
            self._scan_models()

    def _update_demo_banner(self) -> None:
        """The demo banner while a demo model is chosen; the licence of the chosen model's variant, the first time
        one of it is chosen; the canvas's features the model's family lacks, disabled, saying why."""
        server = self.settings.server_url
        self.demo_banner.setText(SERVER_DEMO_NOTICE.format(server=server) if server else DEMO_NOTICE)
        demo = families.demo_kind(self.panel.model_ref()) is not None
        self.demo_banner.setVisible(demo)
        family = self.panel.family()
        spec = families.spec(family)
        variant = spec.variant(self.panel.variant()) if spec else None
        licensed = variant is not None and variant.licence and not demo  # a demo's weights are random, not theirs
        text = f"{variant.label}: {variant.licence}." if licensed else ""
        if text and variant.label not in self._licences_shown:
            self._licences_shown.add(variant.label)
            self.licence_banner.setText(text)
            self.licence_banner.show()
        elif self.licence_banner.text() != text:  # another model's
            self.licence_banner.hide()
        button = self.layers.buttons["control"]
        why = lacks(family, families.CONTROLS)
        button.setEnabled(not why)
        button.setToolTip(why or self._control_tip)

    @Slot(str)
    def _model_changed(self, ref: str) -> None:
        self._update_demo_banner()
        self.worker_model = ref
        self.worker.preload(ref)

    # -- generating ------------------------------------------------------------------------

    @Slot()
    def generate(self) -> list[int]:
        """Queue what the frame holds with the panel's values (batch count times); returns the job ids."""
        request = self.generation.request(self.panel.request())
        try:
            request.validate()
        except InvalidRequest as error:
            self.show_error(f"Cannot generate: {error}")
            return []
        self.error_banner.hide()
        self._remember(self.panel.request())
        jobs = []
        for each in self.jobs.plan(request, self.panel.settings.batch_count):  # a fixed seed continues across runs
            job_id = self.worker.submit(each)
            self.jobs.submitted(job_id, each, self.doc.frame)  # where its preview and results go
            jobs.append(job_id)
        if self.worker.is_paused():
            self.note("Queued, but the queue is paused: press Resume below the canvas to run it.")
        return jobs

    def submit_run(self, run: Run) -> int:
        """Queue a Run (an X/Y/Z plot, a folder batch: desktop/core/runs.py) behind what is queued; its pictures go
        to the gallery, not onto the canvas. Returns the job id."""
        self.error_banner.hide()
        job_id = self.worker.submit(run)
        self.jobs.submitted(job_id, run, None)
        self._update_cancel()
        if self.worker.is_paused():
            self.note("Queued, but the queue is paused: press Resume below the canvas to run it.")
        return job_id

    def open_batch_dialog(self) -> None:
        """Generate > Batch from folder...: OK queues a FolderBatchRun on the panel's request (self.batch_dialog)."""
        from .batch_dialog import BatchDialog

        self.batch_dialog = dialog = BatchDialog(self.panel.request(), self.settings.output_path(),
                                                 self.upscaling.upscalers(), self.upscaling.restorers(), self)
        dialog.accepted.connect(lambda: self.submit_run(dialog.batch()))
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    def open_plot_dialog(self) -> None:
        """Generate > X/Y/Z plot...: axes over what Generate would send now; OK queues the plot (self.plot_dialog)."""
        box = self.panel.model
        models = [(box.itemData(i)[0], box.itemText(i)) for i in range(box.count()) if box.itemData(i)]
        self.plot_dialog = dialog = PlotDialog(self.generation.request(self.panel.request()), models,
                                               self.jobs.seconds_per_step, self)
        dialog.accepted.connect(lambda: self.submit_run(dialog.plot()))
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    @Slot()
    def cancel(self) -> None:
        self.worker.cancel()

    # -- the queue that survives ---------------------------------------------------------------

    def _restore_queue(self) -> None:
        """Queue again, paused, what the last session left waiting or running (desktop/core/queue_store.py);
        their canvas frames are gone, so their pictures go to the gallery. Their pictures are decoded off the GUI
        thread: the window answers at once, and they join the queue a moment later (self._restored)."""
        self.queue_progress = QueueProgress()
        self._at_once = 1  # jobs the backend runs at once, for the time left
        said = []
        # One window keeps a profile's queue: a second one on it would restore and run the same jobs again.
        try:
            paths.queue_file().parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # the store says why it cannot keep the queue
        self._queue_lock = QLockFile(f"{paths.queue_file()}.lock")
        self._queue_lock.setStaleLockTime(0)  # held for the window's life; a crashed app's lock is found stale
        if self._queue_lock.tryLock(0) or self._queue_lock.error() != QLockFile.LockError.LockFailedError:
            self.queue_store = QueueStore(on_problem=self.queue_store_failed.emit)
            self.worker.set_store(self.queue_store)  # jobs queued before the load ends are kept, not loaded twice
            self.background.run(self.queue_store.load, self._restored, lambda error: self._restored([]),
                                name="queue-restore")
        else:
            self.queue_store = None
            self._restored([], ["Another Sfumato window keeps this profile's queue: this window's jobs run, but they "
                                "do not come back after a restart."])

    def _restored(self, jobs: list, said: list[str] | None = None) -> None:
        """The last session's jobs, read: queued again, paused, with the notice."""
        said = list(said or [])
        if jobs:
            self.worker.pause()  # a person may have quit because of them: nothing starts on its own
            for job in jobs:
                self.jobs.submitted(self.worker.submit(job), job, None)
            count = "1 job" if len(jobs) == 1 else f"{len(jobs)} jobs"
            said.append(f"{count} from the last session {'is' if len(jobs) == 1 else 'are'} back in the queue "
                        "(paused): press Resume below to run them, or remove them.")
            if any(isinstance(job, PlotRun) for job in jobs):
                said.append("An X/Y/Z plot comes back from its start: the cells it had saved are made again.")
            self._update_cancel()
        if self.queue_store is not None and self.queue_store.notice:
            said.append(self.queue_store.notice)
        if said:
            self.queue_notice.setText(" ".join(said))
            self.queue_notice.show()
            self.statusBar().showMessage(said[0], 15_000)

    @Slot(bool)
    def pause_queue(self, paused: bool) -> None:
        """Pause (the running job finishes; no new one starts) or resume the queue."""
        if paused:
            self.worker.pause()
            self.note("The queue is paused: the running job finishes, the others wait for Resume.")
        else:
            self.queue_notice.hide()
            self.worker.resume()
        self._update_cancel()

    @Slot(int)
    def _duplicate_job(self, job_id: int) -> None:
        copy = self.worker.duplicate(job_id)
        if copy is not None:
            original = self.jobs.jobs.get(job_id)
            request = next((r for j, r in self.worker.pending() if j == copy), None)
            if original is not None and request is not None:
                self.jobs.submitted(copy, request, original.frame)  # its pictures go where the original's do

    @Slot(int, int)
    def _working(self, _running: int, slots: int) -> None:
        self._at_once = max(1, slots)

    def _show_queue_progress(self) -> None:
        self.queue.set_progress(self.queue_progress.text(self._at_once))

    def preprocess(self, type: str, image, done: Callable, failed: Callable) -> int:
        """Queue a control layer's preprocessor of `type` on `image` (HxWx3 uint8) on the worker, behind what runs
        there; `done(control picture)` or `failed(sentence)` is called on the GUI thread once it ended (the
        sentence is "" when it was cancelled or removed). Returns the job id."""
        job_id = self.worker.submit(PreprocessJob(type, image))
        self._preprocessing[job_id] = (done, failed)
        return job_id

    @Slot(int)
    def _remove_job(self, job_id: int) -> None:
        if self.worker.remove(job_id):
            self.queue_progress.removed(job_id)
            self._show_queue_progress()
            if job_id in self._preprocessing:
                self._preprocessing.pop(job_id)[1]("")
                return
            self.jobs.cancelled(job_id)
            self.generation.ended(job_id)

    def _remember(self, request: GenerationRequest) -> None:
        self.settings.last_request = request.replace(model="demo").to_dict()
        self.settings.batch_count = self.panel.settings.batch_count
        self.settings.aspect_locked = self.panel.settings.aspect_locked
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
        for job_id, request in jobs:
            self.queue_progress.queued(job_id, request)
        self.queue.set_jobs(jobs)
        self._show_queue_progress()
        if not jobs:
            self.queue_notice.hide()

    def _live_plan_inputs(self):
        """What live mode's Fast plan depends on (desktop/ui/canvas/live.py PlanInputs)."""
        return (self.panel.model_ref(), self.panel.family(), self.panel.variant(), tuple(self.settings.models_folders),
                tuple(sorted(self.settings.few_step_marks.items())), self.panel.guidance_embedded())

    @Slot(int, object)
    def _job_started(self, job_id: int, request: GenerationRequest | UpscaleRequest | PreprocessJob) -> None:
        if self.worker.is_draft(job_id):  # live mode's (self.live): not a queue job
            return
        self.cancel_button.setEnabled(True)
        self.queue_progress.queued(job_id, request)
        self.queue_progress.started(job_id)
        self._show_queue_progress()
        if isinstance(request, PreprocessJob):
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat(f"{describe_preprocess(request.type)}...")
            return
        self.jobs.started(job_id, request)
        if not self._on_the_bar(job_id):
            return
        if isinstance(request, Run):
            self.progress.setRange(0, max(1, request.total_steps()))
        else:
            self.progress.setRange(0, 1 if isinstance(request, UpscaleRequest) else request.sampling.steps)
        self.progress.setValue(0)
        self.progress.setFormat("Starting...")

    def _on_the_bar(self, job_id: int) -> bool:
        """Whether the progress bar shows this job: with several running at once (a server's replicas), the
        oldest."""
        running = [job for job, each in self.jobs.jobs.items() if each.state is JobState.RUNNING]
        return not running or job_id == min(running)

    @Slot(int, int, int, object)
    def _step(self, job_id: int, index: int, total: int, preview) -> None:
        if self.worker.is_draft(job_id):
            return
        text = self.jobs.step(job_id, index, total)
        self.queue_progress.stepped(job_id, index, total)
        self._show_queue_progress()
        if self._on_the_bar(job_id):
            self.progress.setRange(0, total)
            self.progress.setValue(index)
            self.progress.setFormat(text)
            if preview is not None:  # the bar's job only: several replicas' previews would take turns every step
                self.generation.preview(job_id, preview)

    @Slot(int, list)
    def _job_finished(self, job_id: int, saved: list) -> None:
        if self.worker.is_draft(job_id):
            return
        self._queue_job_ended(job_id, True)
        if job_id in self._preprocessing:  # a control picture for a layer, not a result to stage
            self.progress.setValue(self.progress.maximum())
            self._job_done("Done")
            self._preprocessing.pop(job_id)[0](saved[0][0])
            return
        job = self.jobs.finished(job_id, saved)
        self._job_done("Done")
        verdict = job.request.verdict if job is not None and isinstance(job.request, RecreateRun) else None
        if verdict is not None and not verdict.comparison.identical:  # identical: the status line says so
            self.gallery.show_recreated(verdict)
        self.generation.finished(job)
        self.gallery.add_results([str(path) for _, _, path in saved if path])
        for _image, seed, _path in saved:
            if seed >= 0:  # an upscale's result has no seed
                self.panel.remember_seed(seed)
        self.results_shown.emit(saved)

    @Slot(int, str)
    def _job_failed(self, job_id: int, message: str) -> None:
        if self.worker.is_draft(job_id):
            return
        self._queue_job_ended(job_id, False)
        if job_id in self._preprocessing:
            self._job_done("Failed")
            self._preprocessing.pop(job_id)[1](message)  # the layer panel shows it
            return
        self.jobs.failed(job_id, message)
        self.generation.ended(job_id)
        self._job_done("Failed")
        self.show_error(message)

    @Slot(str)
    def note(self, text: str) -> None:
        """A short note in the status bar (what was saved, why a tool did nothing...)."""
        self.statusBar().showMessage(text, 8_000)

    def show_error(self, message: str) -> None:
        """Say what went wrong above the canvas, without a modal box; a click dismisses it."""
        self.error_banner.setText(message)
        self.error_banner.show()
        self.statusBar().showMessage(message, 10_000)

    @Slot(int)
    def _job_cancelled(self, job_id: int) -> None:
        if self.worker.is_draft(job_id):
            return
        self._queue_job_ended(job_id, False)
        if job_id in self._preprocessing:
            self._job_done("Cancelled")
            self._preprocessing.pop(job_id)[1]("")
            return
        self.jobs.cancelled(job_id)
        self.generation.ended(job_id)
        self._job_done("Cancelled")

    def _queue_job_ended(self, job_id: int, finished: bool) -> None:
        self.queue_progress.ended(job_id, finished)
        self._show_queue_progress()

    def _job_done(self, text: str) -> None:
        self._update_cancel()
        self.progress.setFormat(text)

    def _update_cancel(self) -> None:
        """Cancel works while something runs, or is about to (waiting jobs of a queue that is not paused)."""
        running = any(job.state is JobState.RUNNING for job in self.jobs.jobs.values())  # a server's other replicas
        self.cancel_button.setEnabled(running or (bool(self.worker.pending()) and not self.worker.is_paused()))

    def canvas_size(self) -> None:
        """Image > Canvas size: grow or shrink the canvas around an anchor, as one undo step."""
        dialog = CanvasSizeDialog(self.doc.extent, self)
        if dialog.exec() != QDialog.DialogCode.Accepted or not any(dialog.margins()):
            return
        self.doc.resize_canvas(*dialog.margins())
        self.canvas.fit()
        extent = self.doc.extent
        self.note(f"The canvas is now {extent.width} × {extent.height} px (Ctrl+Z to undo).")

    def upscale(self) -> int | None:
        """Image > Upscale: queue the visible picture's model upscale; its result is staged like a generation's,
        and accepting it makes the canvas that size (one undo step). Returns the job id."""
        return self.upscaling.canvas()

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        old, new = self.settings, dialog.settings()
        self.settings = new
        self.worker.update_settings(new)  # previews, output folder, device: from the next job on
        self._save_settings()
        apply_theme(QApplication.instance(), new.theme)
        server_changed = (new.server_url, new.server_token) != (old.server_url, old.server_token)
        if server_changed:  # the worker starts over on the new backend; its models replace the list
            self._first_scan, self.worker_model = True, None
            self.device_label.setText("Engine: starting...")
            self._use_model_lists(model_lists.nothing_yet(new.server_url))  # none of the old backend's offered
        if new.models_folders != old.models_folders or server_changed:
            self._scan_models()
        if new.output_path() != old.output_path():
            self.worker.set_gallery(None)
            self._open_gallery()

    def _open_folder(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # -- closing -------------------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        if not self._closing:
            if not self.files.confirm_discard("close Sfumato"):
                event.ignore()
                return
            self._closing = True
            self._remember(self.panel.request())
            self.files.closing()
            self.gallery.model.loader.stop()
            self.background.wait()
            self.addon_tools.close()
        if not self.worker.shutdown(timeout_ms=3000, wait_for_jobs=False):
            # A step, a VAE decode or a model load is still finishing (or a replica's job, never waited for here):
            # close when the worker has stopped.
            self.statusBar().showMessage("Stopping: finishing the current step...")
            self.worker.stopped.connect(self.close, Qt.ConnectionType.SingleShotConnection)
            event.ignore()
            return
        if self.gallery_store is not None:  # after the worker: it may have been saving a result through it
            self.gallery_store.close()
            self.gallery_store = None
        if self.queue_store is not None:
            self.queue_store.close()  # what still waits (and the job the close cancelled) comes back next time
        if self._queue_lock.isLocked():
            self._queue_lock.unlock()  # after the store's last write: another window may keep the queue now
        super().closeEvent(event)
