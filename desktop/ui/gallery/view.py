"""The Gallery tab: search and filters, a grid of thumbnails, and the chosen picture with its parameters.

The grid is a QListView over GalleryModel (thumbnails load in the
background). Arrow keys step through pictures; several can be selected to
favourite, delete, export, upscale or restore. The detail panel shows the picture large with
every parameter, and the actions: use its parameters or seed, send it to the
canvas, copy it, show it in its folder, favourite, delete.

Compare (C) shows two pictures over each other split by a divider to drag (desktop/ui/compare_view.py): the two
selected, the older one before; or an upscale or restore saved beside its source, and that source. Esc or C goes
back to the grid.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QImage, QKeySequence, QPainter, QPen, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core import addons, credentials
from desktop.core.addons import AddonCheck
from desktop.core.control import used_controls, used_controls_note
from desktop.core.control_layers import spec_of_used
from desktop.core.errors import SfumatoError
from desktop.core.gallery import family
from desktop.core.gallery.index import ImageRecord, Query
from desktop.core.gallery.metadata import ImageMeta, picture_model, read_image_meta, to_request
from desktop.core.gallery.plots import Plot, PlotCell, read_plot
from desktop.core.gallery.store import GalleryStore
from desktop.core.infotext import parse_infotext
from desktop.core.recreate import Verdict
from desktop.core.recreate import prepare as prepare_recreate
from desktop.core.request import GenerationRequest

from ..background import Background
from ..compare_view import CompareView
from ..qimage import to_qimage
from ..reveal import reveal
from ..theme import CHECKED_BUTTON_STYLE
from .family_strip import FamilyStrip
from .model import GalleryModel, RecordRole
from .picture_view import PictureView, read_picture
from .plot_view import PlotView
from .side_by_side import SideBySide

MAX_SIDE_BY_SIDE = 8  # pictures compared side by side at once
DATES = {"Any time": None, "Today": 0, "Last 7 days": 7, "Last 30 days": 30, "This year": 365}
SORTS = {"Newest first": "newest", "Oldest first": "oldest", "By seed": "seed"}


class TileDelegate(QStyledItemDelegate):
    """A thumbnail centred in its tile, a star on favourites, a frame around the selection."""

    def __init__(self, view: GalleryList):
        super().__init__(view)
        self.view = view

    def sizeHint(self, option, index) -> QSize:
        side = self.view.iconSize().width()
        return QSize(side + 8, side + 8)

    def paint(self, painter: QPainter, option, index: QModelIndex) -> None:
        painter.save()
        rect = option.rect.adjusted(3, 3, -3, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.fillRect(rect, option.palette.alternateBase())
        thumbnail: QImage | None = index.data(Qt.ItemDataRole.DecorationRole)
        if thumbnail is not None and not thumbnail.isNull():
            size = thumbnail.size().scaled(rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(rect.center())
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(target, thumbnail)
        record: ImageRecord | None = index.data(RecordRole)
        if record is not None and record.favourite:
            painter.setPen(QColor(0, 0, 0, 160))
            painter.setBrush(QColor(255, 200, 40))
            font = painter.font()
            font.setPointSizeF(max(9.0, rect.width() / 10))
            painter.setFont(font)
            painter.setPen(QColor(255, 200, 40))
            painter.drawText(rect.adjusted(4, 2, -4, -2), Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight, "★")
        if selected:
            painter.setPen(QPen(option.palette.highlight().color(), 3))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(rect.adjusted(1, 1, -1, -1))
        painter.restore()


class GalleryList(QListView):
    """The grid. Pictures dragged out are handed over as files; picture files dropped in are imported.

    Signals:
        files_dropped(list): local files dropped on the grid from elsewhere.
    """

    files_dropped = Signal(list)

    def __init__(self, model: GalleryModel):
        super().__init__()
        self.setModel(model)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setItemDelegate(TileDelegate(self))
        self.setSpacing(2)
        self.set_tile(160)

    def set_tile(self, side: int) -> None:
        self.setIconSize(QSize(side, side))
        self.setGridSize(QSize(side + 10, side + 10))

    def _outside_files(self, event) -> list[str]:
        data = event.mimeData()
        if event.source() is self or not data.hasUrls():
            return []
        return [url.toLocalFile() for url in data.urls() if url.isLocalFile()]

    def dragEnterEvent(self, event) -> None:
        if self._outside_files(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if self._outside_files(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:
        files = self._outside_files(event)
        if files:
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
            self.files_dropped.emit(files)


class GalleryView(QWidget):
    """Signals:
    use_parameters(object, object): a GenerationRequest with the chosen picture's parameters (the panel's model),
        and the PictureModel (desktop/core/gallery/metadata.py) it names, for the window to choose.
    use_controls(object): the ControlSpecs of the controls the chosen picture was made with (their pictures are
        not in its parameters), after use_parameters; not sent when it had none.
    use_seed(int): its seed.
    to_canvas(str, bool): its file, and True to add it as a layer (False: open it as a new picture).
    export_requested(list): the selected records, to export.
    upscale_requested(list): the selected records, to upscale (beside them, in the output folder).
    restore_requested(list): the selected records, to restore with a restorer model (beside them).
    recreate_requested(object): a RecreateRun (desktop/core/recreate.py) of the shown picture, to queue.
    message(str): a short note for the status bar.
    error(str): what went wrong, to show.
    undo_changed(): a deletion was made or undone (Edit > Undo follows).
    """

    use_parameters = Signal(object, object)
    use_controls = Signal(object)
    use_seed = Signal(int)
    to_canvas = Signal(str, bool)
    export_requested = Signal(list)
    upscale_requested = Signal(list)
    restore_requested = Signal(list)
    recreate_requested = Signal(object)
    message = Signal(str)
    error = Signal(str)
    undo_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.store: GalleryStore | None = None
        self.background = Background(self)
        self.model = GalleryModel(self)
        self.base_request = lambda: GenerationRequest()  # the prompt panel's values; set by the window
        self.model_folders = lambda: []  # the settings' model folders, where Use all parameters finds LoRAs
        self._shown: int | None = None
        self._hashing: GalleryStore | None = None  # the store whose older pictures are being hashed (lineage)
        self._compared: tuple[int, int] | None = None  # the ids of the pictures in the compare view
        self._shown_plot: Plot | None = None  # the plot the shown picture is the grid of
        self._plot_read = False  # whether _shown_plot is known (it is read with the picture, in the background)
        self._plot_record: ImageRecord | None = None  # the grid picture open in the grid view
        self._cell: ImageRecord | None = None  # the grid view's chosen cell, when it is in the gallery
        self._side_by_side: tuple[int, ...] | None = None  # the ids of the pictures compared side by side
        self._build()

    def _build(self) -> None:
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts and models...")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Every word must appear in the prompt, the negative prompt or the model (Ctrl+F)")
        self._search_timer = QTimer(self, singleShot=True, interval=200)
        self.search.textChanged.connect(self._search_timer.start)
        self._search_timer.timeout.connect(self._query_changed)
        QShortcut(QKeySequence.StandardKey.Find, self, activated=self.search.setFocus,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.favourites = QCheckBox("★ Favourites")
        self.favourites.setToolTip("Show only favourites")
        self.model_filter = QComboBox()
        self.model_filter.setToolTip("Show the pictures of one model")
        self.model_filter.addItem("All models", "")
        self.date_filter = QComboBox()
        self.date_filter.addItems(list(DATES))
        self.sort = QComboBox()
        self.sort.addItems(list(SORTS))
        for widget in (self.favourites,):
            widget.toggled.connect(self._query_changed)
        for combo in (self.model_filter, self.date_filter, self.sort):
            combo.currentIndexChanged.connect(self._query_changed)
        self.tile = QSlider(Qt.Orientation.Horizontal)
        self.tile.setRange(64, 256)
        self.tile.setValue(160)
        self.tile.setFixedWidth(110)
        self.tile.setToolTip("Thumbnail size")
        self.count = QLabel()
        bar = QHBoxLayout()
        for widget in (self.search, self.favourites, self.model_filter, self.date_filter, self.sort, self.tile,
                       self.count):
            bar.addWidget(widget, 1 if widget is self.search else 0)
        self.family_filter = QPushButton()  # shown while the grid shows one picture's family: back to all
        self.family_filter.setToolTip("Show all the pictures again")
        self.family_filter.clicked.connect(self.show_all)
        self.family_filter.hide()
        bar.insertWidget(1, self.family_filter)

        self.list = GalleryList(self.model)
        self.tile.valueChanged.connect(self.list.set_tile)
        self.list.selectionModel().currentChanged.connect(self._current_changed)
        self.list.selectionModel().selectionChanged.connect(self._selection_changed)
        self.list.doubleClicked.connect(lambda index: self._open_shown())
        self.list.files_dropped.connect(self.import_files)
        self.model.count_changed.connect(self._count_changed)
        self.model.modelReset.connect(self._selection_changed)
        for keys, slot in ((QKeySequence.StandardKey.Delete, self.delete_selected), ("F", self.toggle_favourite),
                           ("C", self.compare_selected)):
            QShortcut(QKeySequence(keys), self.list, activated=slot,
                      context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

        self.picture = PictureView()
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.credentials = QLabel()  # the picture's content credentials (C2PA), read with the picture
        self.credentials.setWordWrap(True)
        self.credentials.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.credentials.hide()
        self.family = FamilyStrip(self.background)  # what it was made from and what was made from it
        self.family.chosen.connect(self.show_record)
        self.family.family_requested.connect(self.show_family)
        self.parameters = QPlainTextEdit()
        self.parameters.setReadOnly(True)
        self.parameters.setPlaceholderText("No parameters were found in this picture.")
        self.parameters.setMaximumHeight(150)
        self.parameters.setMinimumHeight(64)  # on a small screen it scrolls, and the picture keeps its room
        self.parameters.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Ignored)
        self.buttons: dict[str, QToolButton | QPushButton] = {}
        rows = [
            [("use", "Use all parameters", "Put this picture's prompt and settings in the panel", self.use_all),
             ("seed", "Use seed", "Put this picture's seed in the panel", self.use_seed_clicked),
             ("recreate", "Recreate", "Make this picture again from its parameters with the same model, on this "
              "computer's device, and say whether it is identical pixel for pixel (nothing is saved)",
              self.recreate)],
            [("layer", "To canvas as layer", "Add this picture to the canvas as a new layer",
              lambda: self._send_to_canvas(True)),
             ("open", "Open as new picture", "Open this picture on the canvas as a new document (double-click)",
              lambda: self._send_to_canvas(False)),
             ("grid", "Grid view", "Open this X/Y/Z plot as a grid whose cells show their own pictures "
              "(double-click)", self.open_plot)],
            [("copy", "Copy image", "Copy the picture to the clipboard", self.copy_image),
             ("copy_text", "Copy parameters", "Copy the parameters text to the clipboard", self.copy_parameters),
             ("folder", "Show in folder", "Open the folder that holds this picture, with the picture selected",
              self.show_in_folder)],
            [("upscale", "Upscale...", "Upscale the selected pictures with an upscaler model; the results are saved "
              "beside them", self.upscale_selected),
             ("restore", "Restore...", "Denoise, remove JPEG artefacts or restore the selected pictures with a "
              "restorer model; the results are saved beside them", self.restore_selected),
             ("compare", "Compare", "Compare two selected pictures, or an upscale or restore with its source, "
              "with a divider to drag (C)", self.compare_selected),
             ("compare_params", "Compare parameters", "Show the selected pictures side by side, with the "
              "parameters that differ highlighted", self.compare_parameters)],
            [("favourite", "★ Favourite", "Mark or unmark the selected pictures as favourites (F)",
              self.toggle_favourite),
             ("export", "Export...", "Export the selected pictures", self.export_selected),
             ("delete", "Delete", "Move the selected pictures to the trash (Delete; Ctrl+Z brings them back)",
              self.delete_selected)],
        ]
        details = QWidget()
        side = QVBoxLayout(details)
        side.setContentsMargins(4, 0, 0, 0)
        side.addWidget(self.picture, 3)
        side.addWidget(self.info)
        side.addWidget(self.credentials)
        side.addWidget(self.family)
        side.addWidget(self.parameters, 1)
        for row in rows:
            line = QHBoxLayout()
            for key, text, tip, slot in row:
                button = QPushButton(text)
                button.setToolTip(tip)
                button.clicked.connect(slot)
                self.buttons[key] = button
                line.addWidget(button)
            side.addLayout(line)

        self.plot_view = PlotView()
        self.plot_view.chosen.connect(self._cell_chosen)
        self.plot_view.close_requested.connect(self.close_plot)
        self.left = QStackedWidget()  # the thumbnails, or a plot's grid view
        self.left.addWidget(self.list)
        self.left.addWidget(self.plot_view)
        splitter = QSplitter()
        splitter.addWidget(self.left)
        splitter.addWidget(details)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([700, 420])
        self.pages = QStackedWidget()
        self.pages.addWidget(splitter)
        self.pages.addWidget(self._build_compare())
        self.side_by_side = SideBySide()
        self.side_by_side.close_requested.connect(self.close_side_by_side)
        self.pages.addWidget(self.side_by_side)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.pages, 1)
        self.buttons["favourite"].setCheckable(True)  # checked: the selected pictures are favourites
        self.buttons["favourite"].setStyleSheet(CHECKED_BUTTON_STYLE)
        self._selection_changed()

    def _build_compare(self) -> QWidget:
        page = QWidget()
        self.compare_view = CompareView()
        self.compare_caption = QLabel()
        self.compare_caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_compare_button = QPushButton("Back to the gallery")
        self.close_compare_button.setToolTip("Close the comparison (Esc or C)")
        self.close_compare_button.clicked.connect(self.close_compare)
        self.diff_button = QPushButton("Show the difference")  # a recreated picture's: after <-> its diff picture
        self.diff_button.setCheckable(True)
        self.diff_button.setToolTip("Show where the recreated picture differs: black where equal, brighter where "
                                    "it differs more (any difference is visible)")
        self.diff_button.toggled.connect(self._show_difference)
        self.diff_button.hide()
        self._verdict: Verdict | None = None  # the recreate shown in the compare view
        self.compare_caption.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.compare_caption, 1)
        top.addWidget(self.diff_button)
        top.addWidget(self.close_compare_button)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.compare_view, 1)
        self.compare_view.close_requested.connect(self.close_compare)
        return page

    # -- the store --------------------------------------------------------------------------------

    def set_store(self, store: GalleryStore | None) -> None:
        self.store = store
        self.model.set_store(store)
        self._refresh_models()
        self._fill_hashes()

    def refresh(self) -> None:
        """Pick up pictures added or removed outside the app (in the background), then show them."""
        store = self.store
        if store is None:
            return

        def done(counts) -> None:
            if store is self.store and any(counts):
                self.model.reload()
                self._refresh_models()
            if store is self.store:
                self._fill_hashes()  # the pictures just found that carry no pixel hash

        self.background.run(store.refresh, done, lambda error: self.error.emit(f"The gallery could not be read: {error}"))

    def _fill_hashes(self) -> None:
        """Hash, a batch at a time in the background, the pictures that carry no pixel hash (saved before lineage,
        or by other tools), so that what was made from them finds them; the shown picture's family strip follows."""
        store = self.store
        if store is None or self._hashing is store:
            return
        self._hashing = store

        def done(tried: list) -> None:
            self._hashing = None
            if store is not self.store or not tried:
                return
            hashed = {record_id: pixel_hash for record_id, pixel_hash in tried if pixel_hash}
            if hashed:
                self.model.update_records(list(hashed))
                self._family_changed(set(hashed.values()))
            self._fill_hashes()

        def failed(_error) -> None:  # the store was closed meanwhile (or its index failed): the next refresh retries
            self._hashing = None

        self.background.run(store.fill_hashes, done, failed, name="gallery-hashes")

    def _family_changed(self, hashes: set[str]) -> None:
        """Pictures got their pixel hashes: show the shown picture's family again when it is one of them or they
        are among its parents or children."""
        record = self.current()
        if record is None or self.plot_open() or not record.pixel_hash:
            return
        index = self.store.index
        related = {h for _, h in index.parents(record.pixel_hash) + index.children(record.pixel_hash)}
        if record.pixel_hash in hashes or related & hashes:
            self.family.show_record(self.store, record)

    def add_results(self, paths: list[str]) -> None:
        """New pictures were saved: show them at the top."""
        if self.store is None:
            return
        records = []
        for path in paths:
            try:
                record = self.store.index.by_path(self.store.relative(Path(path)))
            except ValueError:  # saved outside the gallery's folder
                record = None
            if record is not None:
                records.append(record)
        self.model.add(records)
        listed = {self.model_filter.itemData(i) for i in range(self.model_filter.count())}
        if any(r.model not in listed for r in records):  # a model new to the filter
            self._refresh_models()

    def import_files(self, files: list[str]) -> None:
        """Copy pictures from elsewhere into the gallery (their parameters are read when a tool wrote them)."""
        store = self.store
        if store is None:
            return

        def imported(result) -> None:
            records, problems = result
            if store is self.store:
                self.model.add(records)
                self._refresh_models()
            if problems:
                self.error.emit(" ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""))
            if records:
                self.message.emit(f"Imported {len(records)} picture{'s' if len(records) != 1 else ''}.")

        self.background.run(lambda: store.import_files([Path(f) for f in files]), imported,
                            lambda error: self.error.emit(f"The pictures could not be imported: {error}"))

    def _refresh_models(self) -> None:
        current = self.model_filter.currentData()
        self.model_filter.blockSignals(True)
        self.model_filter.clear()
        self.model_filter.addItem("All models", "")
        for name in self.store.index.models() if self.store is not None else []:
            self.model_filter.addItem(name, name)
        index = self.model_filter.findData(current)
        self.model_filter.setCurrentIndex(max(0, index))
        self.model_filter.blockSignals(False)
        if index < 0 and current:  # that model's pictures are gone: show all again
            self._query_changed()

    def _query_changed(self) -> None:
        self.family_filter.hide()
        days = DATES[self.date_filter.currentText()]
        since = None
        if days is not None:
            today = _dt.datetime.combine(_dt.date.today(), _dt.time())
            since = (today - _dt.timedelta(days=days)).timestamp()
        self.model.set_query(Query(
            text=self.search.text(), favourites=self.favourites.isChecked(),
            model=self.model_filter.currentData() or "", since=since, sort=SORTS[self.sort.currentText()],
        ))

    def _count_changed(self, count: int) -> None:
        self.count.setText(f"{count:,} picture{'s' if count != 1 else ''}")
        if self._shown is None:
            self.parameters.setPlaceholderText(self._nothing_shown())

    def _nothing_shown(self) -> str:
        """What the parameters box says while no picture is chosen."""
        if self.model.rowCount():
            return "Choose a picture to see how it was made."
        query = self.model.query
        words = self.search.text().strip()
        if words:
            return f"No pictures match “{words}”. Change the search or the filters to see more."
        if query.favourites or query.model or query.since is not None:
            return "No pictures match these filters. Change them to see more."
        return "No pictures yet: the pictures you make appear here."

    # -- selection and details ---------------------------------------------------------------------

    def selected(self) -> list[ImageRecord]:
        """The selected pictures; with none selected, the one shown (the grid shows one before any click). In
        the grid view of a plot, the chosen cell's picture (the grid's before a cell is chosen)."""
        if self.plot_open():
            return [self.current()] if self.current() is not None else []
        rows = sorted(index.row() for index in self.list.selectionModel().selectedIndexes())
        records = [r for r in (self.model.record(row) for row in rows) if r is not None]
        shown = self.current()
        return records or ([shown] if shown is not None else [])

    def current(self) -> ImageRecord | None:
        if self.plot_open():
            return self._cell if self.plot_view.grid.current is not None else self._plot_record
        index = self.list.currentIndex()
        return self.model.record(index.row()) if index.isValid() else None

    def select_row(self, row: int) -> None:
        index = self.model.index(row)
        self.list.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.list.scrollTo(index)

    def _selection_changed(self, *_args) -> None:
        count = len(self.selected()) if self.list.selectionModel() else 0
        one = self.current() is not None and count <= 1
        for key in ("use", "seed", "recreate", "layer", "open", "copy", "copy_text", "folder"):
            self.buttons[key].setEnabled(one)
        self.buttons["grid"].setEnabled(self._shown_plot is not None and not self.plot_open())
        self.buttons["compare_params"].setEnabled(count > 1)
        for key in ("favourite", "upscale", "restore", "export", "delete"):
            self.buttons[key].setEnabled(count > 0)
        self.buttons["compare"].setEnabled(self.compare_pair() is not None)
        self.buttons["export"].setText(f"Export {count}..." if count > 1 else "Export...")
        records = self.selected()
        favourite = bool(records) and all(r.favourite for r in records)
        self.buttons["favourite"].setChecked(favourite)
        self.buttons["favourite"].setText("★ Favourite" if favourite else "☆ Favourite")
        self.buttons["delete"].setText(f"Delete {count}" if count > 1 else "Delete")
        if count == 0 and not self.list.currentIndex().isValid() and not self.plot_open():
            self._show(None)

    def _current_changed(self, current: QModelIndex, _previous=None) -> None:
        if self.plot_open():
            return
        self._show(self.model.record(current.row()) if current.isValid() else None)
        self._selection_changed()

    def _show(self, record: ImageRecord | None) -> None:
        self._shown = record.id if record else None
        self._shown_plot, self._plot_read = None, record is None
        self.family.show_record(self.store, record)
        self._show_credentials(None)
        if record is None:
            self.picture.set_image(QImage())
            self.info.setText("")
            self.parameters.setPlainText("")
            self.parameters.setPlaceholderText(self._nothing_shown())
            return
        self.parameters.setPlaceholderText("No parameters were found in this picture.")
        when = _dt.datetime.fromtimestamp(record.created).strftime("%d %b %Y, %H:%M")
        details = [f"{record.width} x {record.height}", when]
        if record.model:
            details.append(record.model)
        details.append(record.path)
        self.info.setText("  ·  ".join(details))
        self.parameters.setPlainText(record.parameters)
        path, root = self.store.path(record), self.store.folder
        self.picture.set_image(QImage())  # the large picture is decoded in the background
        self.background.run(lambda: (read_picture(path), read_plot(path, root), credentials.read(path)),
                            lambda read, rid=record.id: self._picture_loaded(rid, *read))

    def _picture_loaded(self, record_id: int, image: QImage, plot: Plot | None = None,
                        found: credentials.Credentials | None = None) -> None:
        if record_id == self._shown:
            self._show_credentials(found)
            if image.isNull():
                self.error.emit("This picture can no longer be read; it may have been moved or deleted outside Sfumato.")
            self.picture.set_image(image)
            if not self._plot_read:  # a double-click may have read it already
                self._shown_plot, self._plot_read = plot, True
            self._selection_changed()  # Grid view is offered for a plot

    def _show_credentials(self, found: credentials.Credentials | None) -> None:
        """The badge of a picture's content credentials and the manifest's summary; nothing when it has none."""
        badge = found.badge() if found is not None else ""
        if badge and found.summary():
            badge = f"{badge} {found.summary()}."
        self.credentials.setText(badge)
        colour = "#c0392b" if found is not None and found.state == credentials.TAMPERED else ""
        self.credentials.setStyleSheet(f"color: {colour};" if colour else "")
        self.credentials.setToolTip("C2PA content credentials: who signed the picture and what was done to it. "
                                    "Sfumato ships no list of trusted signers, so it checks no signer against one; "
                                    "it knows only its own key (self-signed), made on this computer. \"Tampered\" "
                                    "means the file changed after it was signed." if badge else "")
        self.credentials.setVisible(bool(badge))

    # -- lineage ----------------------------------------------------------------------------------------

    def show_record(self, record: ImageRecord) -> None:
        """Select a picture in the grid (a tile of the lineage strip); one the filters hide is shown with its
        family, which holds both it and the picture shown now."""
        if self.model.row_of(record.id) < 0:
            self.show_family()
        row = self.model.row_of(record.id)
        if row >= 0:
            self.select_row(row)

    def show_family(self) -> None:
        """Filter the grid to the shown picture's tree: what it was made from and what was made from it."""
        record = self.current()
        if record is None or self.store is None:
            return
        ids = family.family_ids(self.store.index, record)
        self.model.set_query(Query(ids=frozenset(ids), sort=SORTS[self.sort.currentText()]))
        self.family_filter.setText(f"✕ Family of {Path(record.path).name}")
        self.family_filter.show()
        self.select_row(max(0, self.model.row_of(record.id)))

    def show_all(self) -> None:
        """Leave a family: the grid shows what the search and the filters ask again, the picture kept chosen."""
        record = self.current()
        self._query_changed()
        if record is not None and self.model.row_of(record.id) >= 0:
            self.select_row(self.model.row_of(record.id))

    # -- actions ----------------------------------------------------------------------------------------

    def use_all(self) -> None:
        record = self.current()
        if record is None:
            return
        path = self.store.path(record)
        folders = list(self.model_folders())

        def work() -> tuple[ImageMeta, AddonCheck | None, str, list]:
            meta = read_image_meta(path)[0]
            if not meta.source:
                return meta, None, "", []
            # LoRAs and embeddings by name, else by their hash in the parameters (which may hash whole files)
            params = parse_infotext(meta.parameters).params if meta.parameters else {}
            specs = [spec_of_used(used) for used in used_controls(params)]
            return meta, addons.check_prompts(meta.prompt, params, folders), used_controls_note(params, folders), specs

        def read(result: tuple[ImageMeta, AddonCheck | None, str, list]) -> None:
            meta, check, controls, specs = result
            if not meta.source:
                self.message.emit(meta.notice or f"{path.name} does not say how it was made: the panel is unchanged.")
                return
            request = to_request(meta, self.base_request())
            conditioning = request.conditioning
            request = request.replace(conditioning=conditioning.replace(
                prompt=check.rename(conditioning.prompt), negative_prompt=check.rename(conditioning.negative_prompt)))
            self.use_parameters.emit(request, picture_model(meta))
            if specs:
                self.use_controls.emit(specs)
            said = " ".join(text for text in (check.message(), controls) if text)
            if said:  # what could not be put back: missing add-ons, the control pictures
                self.error.emit(said)

        self.background.run(work, read, lambda error: self.error.emit(f"{path.name} could not be read: {error}"))

    def recreate(self) -> None:
        """Queue the shown picture made again (recreate_requested), or say in a sentence why it cannot be."""
        record = self.current()
        if record is None:
            return
        store = self.store
        path, model = store.path(record), self.base_request().model
        self.background.run(lambda: prepare_recreate(path, model, store), self._recreate_ready,
                            lambda error: self.error.emit(str(error) if isinstance(error, SfumatoError)
                                                          else f"{path.name} could not be read: {error}"))

    def _recreate_ready(self, run) -> None:
        self.message.emit(f"Recreating {Path(run.path).name}: queued; the verdict comes when it has run.")
        self.recreate_requested.emit(run)

    def show_recreated(self, verdict: Verdict) -> None:
        """A recreate that is not identical: the original against the recreated picture in the compare view, with
        the figures (and the model and device notes) above, and the difference picture a click away."""
        if self.plot_open():
            self.close_plot()
        self._compared, self._verdict = None, verdict
        self.compare_caption.setText(f"Original (left) against made again now (right). {verdict.summary()}")
        self.diff_button.setVisible(verdict.comparison.diff is not None)
        self.diff_button.setChecked(False)
        self._show_difference(False)
        self.compare_view.set_split(0.5)
        self.pages.setCurrentIndex(1)
        self.compare_view.setFocus()

    def _show_difference(self, shown: bool) -> None:
        verdict = self._verdict
        if verdict is None:
            return
        after = verdict.comparison.diff if shown and verdict.comparison.diff is not None else verdict.recreated
        self.diff_button.setText("Show the recreated picture" if shown else "Show the difference")
        self.compare_view.set_images(to_qimage(verdict.original), to_qimage(after),
                                     ("Original", "Difference" if shown else "Recreated"))

    def use_seed_clicked(self) -> None:
        record = self.current()
        if record is not None and record.seed is not None:
            self.use_seed.emit(record.seed)
        elif record is not None:
            self.message.emit("This picture does not say which seed made it.")

    def _send_to_canvas(self, as_layer: bool) -> None:
        record = self.current()
        if record is not None:
            self.to_canvas.emit(str(self.store.path(record)), as_layer)

    def copy_image(self) -> None:
        record = self.current()
        if record is None:
            return
        path = self.store.path(record)

        def copied(image: QImage) -> None:
            if image.isNull():
                self.error.emit(f"{path.name} could not be read.")
            else:
                QGuiApplication.clipboard().setImage(image)
                self.message.emit("The picture is on the clipboard.")

        self.background.run(lambda: read_picture(path), copied)

    def copy_parameters(self) -> None:
        record = self.current()
        if record is not None:
            QGuiApplication.clipboard().setText(record.parameters or record.prompt)
            self.message.emit("The parameters are on the clipboard.")

    def show_in_folder(self) -> None:
        record = self.current()
        if record is not None:
            reveal(self.store.path(record), self)

    def toggle_favourite(self) -> None:
        records = self.selected()
        if not records:
            return
        favourite = not all(r.favourite for r in records)
        ids = [r.id for r in records]
        try:
            self.store.set_favourite(ids, favourite)
        except (OSError, sqlite3.Error) as error:
            self.error.emit(f"The favourites could not be saved: {getattr(error, 'strerror', None) or error}")
            self._selection_changed()  # the button shows the state that was kept
            return
        if self.model.query.favourites and not favourite:
            self.model.remove_ids(set(ids))
        else:
            self.model.update_records(ids)
        self._selection_changed()
        self.message.emit(f"{len(ids)} picture{'s' if len(ids) > 1 else ''} "
                          f"{'marked as favourite' if favourite else 'no longer favourite'}.")

    def delete_selected(self) -> None:
        records = self.selected()
        if not records:
            return
        row = min(self.model.row_of(r.id) for r in records)
        try:
            count, problems = self.store.delete([r.id for r in records])
        except (OSError, sqlite3.Error) as error:
            self.error.emit(f"The pictures could not be deleted: {getattr(error, 'strerror', None) or error}")
            self.model.reload()
            self.undo_changed.emit()
            return
        still_there = {r.id for r in self.store.records([r.id for r in records]).values()}
        self.model.remove_ids({r.id for r in records} - still_there)
        if self.model.rowCount():
            self.select_row(min(row, self.model.rowCount() - 1))
        if problems:
            self.error.emit(" ".join(problems[:3]) + " Close the program that has it open, then try again.")
        if count:
            self.message.emit(f"{count} picture{'s' if count > 1 else ''} moved to the trash. Ctrl+Z brings "
                              f"{'them' if count > 1 else 'it'} back.")
        self.undo_changed.emit()

    def can_undo_delete(self) -> bool:
        return self.store is not None and self.store.can_undo_delete()

    def undo_delete(self) -> None:
        try:
            records = self.store.undo_delete()
        except (OSError, sqlite3.Error) as error:
            self.error.emit(f"The pictures could not be put back: {getattr(error, 'strerror', None) or error}. "
                            f"They wait in {self.store.folder / '.sfumato-deleted'}.")
            return
        self.model.reload()
        if records:
            row = self.model.row_of(records[0].id)
            if row >= 0:
                self.select_row(row)
        self.message.emit(f"{len(records)} picture{'s' if len(records) != 1 else ''} restored.")
        self.undo_changed.emit()

    def export_selected(self) -> None:
        records = self.selected()
        if records:
            self.export_requested.emit(records)

    def upscale_selected(self) -> None:
        records = self.selected()
        if records:
            self.upscale_requested.emit(records)

    def restore_selected(self) -> None:
        records = self.selected()
        if records:
            self.restore_requested.emit(records)

    # -- a plot's grid view -----------------------------------------------------------------------------

    def plot_open(self) -> bool:
        return self.left.currentIndex() == 1

    def _open_shown(self) -> None:
        """Double-click: a plot opens as its grid, any other picture on the canvas."""
        record = self.current()
        if not self._plot_read and record is not None and record.id == self._shown and not self.plot_open():
            # the picture is still being decoded; the plot chunk is read without it (a plot writes it before the pixels)
            self._shown_plot, self._plot_read = read_plot(self.store.path(record), self.store.folder), True
        if self._shown_plot is not None:
            self.open_plot()
        else:
            self._send_to_canvas(False)

    def open_plot(self) -> None:
        """Show the shown X/Y/Z plot as a grid of its cells in place of the thumbnails; their thumbnails are read
        in the background."""
        record, plot = self.current(), self._shown_plot
        if record is None or plot is None or self.plot_open():
            if record is not None and plot is None:
                self.message.emit("This picture is not an X/Y/Z plot: Grid view opens the grid pictures plots make.")
            return
        self._plot_record, self._cell = record, None
        self.plot_view.set_plot(Path(record.path).name, plot)
        self.left.setCurrentIndex(1)
        self.plot_view.grid.setFocus()
        self._selection_changed()
        store = self.store
        present = [cell for cell in plot.cells if cell.present]

        def thumbnails() -> list[tuple[tuple[int, int, int], QImage]]:
            found = []
            for cell in present:
                cell_record = self._record_of(store, cell)
                image = QImage(str(store.thumbnail(cell_record))) if cell_record is not None else QImage()
                found.append(((cell.x, cell.y, cell.z), image if not image.isNull() else read_picture(cell.path)))
            return found

        def loaded(found: list) -> None:
            if self._plot_record is record and self.plot_open():
                for place, image in found:
                    self.plot_view.grid.set_thumbnail(place, image)

        self.background.run(thumbnails, loaded, lambda error: self.error.emit(
            f"The plot's pictures could not be read: {getattr(error, 'strerror', None) or error}"))

    @staticmethod
    def _record_of(store: GalleryStore, cell: PlotCell) -> ImageRecord | None:
        """The gallery's record of a cell's picture (its path may climb out of the grid's folder: "../")."""
        try:
            return store.index.by_path(Path(os.path.normpath(cell.path)).relative_to(store.folder).as_posix())
        except ValueError:
            return None

    def _cell_chosen(self, cell: PlotCell) -> None:
        record = self._record_of(self.store, cell) if cell.present and self.store is not None else None
        self._cell = record
        if record is not None:
            self._show(record)
        else:
            self._shown = None
            self.picture.set_image(QImage())
            name = Path(cell.path).name if cell.path is not None else "this cell"
            self.info.setText(f"{'Missing' if cell.inside else 'Not opened'}: {name}")
            self.parameters.setPlainText("")
            if cell.path is None:
                why = "The plot has no picture for this cell."
            elif not cell.inside:
                why = (f"This cell's picture is outside the gallery's folder ({self.store.folder}), so the gallery "
                       "does not open it: keep a plot's grid picture and its cells' pictures in the output folder.")
            elif not cell.present:
                why = "This cell's picture is missing: it was moved or deleted outside Sfumato."
            else:
                why = "This cell's picture is not in the gallery yet."
            self.parameters.setPlaceholderText(why)
        self._selection_changed()

    def close_plot(self) -> None:
        """Back from the grid view to the thumbnails, showing the grid picture again."""
        if not self.plot_open():
            return
        self._plot_record = self._cell = None
        self.left.setCurrentIndex(0)
        self.plot_view.grid.set_plot(None)
        self._current_changed(self.list.currentIndex())
        self.list.setFocus()

    # -- compare parameters ------------------------------------------------------------------------------

    def compare_parameters(self) -> None:
        """Show the selected pictures side by side with the parameters that differ highlighted, in place of the
        gallery; the pictures are read in the background."""
        records = self.selected()
        if not 2 <= len(records) <= MAX_SIDE_BY_SIDE:
            self.message.emit(f"Select 2 to {MAX_SIDE_BY_SIDE} pictures to compare their parameters side by side.")
            return
        records = sorted(records, key=lambda r: (r.created, r.id))
        ids = self._side_by_side = tuple(r.id for r in records)
        self.side_by_side.set_pictures([(Path(r.path).name, r.parameters) for r in records])
        self.pages.setCurrentIndex(2)
        self.side_by_side.setFocus()
        paths = [self.store.path(r) for r in records]

        def loaded(images: list) -> None:
            if self._side_by_side == ids and self.pages.currentIndex() == 2:
                for index, image in enumerate(images):
                    self.side_by_side.set_image(index, image)

        self.background.run(lambda: [read_picture(path) for path in paths], loaded)

    def close_side_by_side(self) -> None:
        self._side_by_side = None
        self.pages.setCurrentIndex(0)
        self.list.setFocus()

    # -- compare ----------------------------------------------------------------------------------------

    def compare_pair(self) -> tuple[ImageRecord, ImageRecord] | None:
        """(before, after): the two selected pictures, the older first; or the one selected, when it is an upscale
        or restore saved beside its source, after that source. None for anything else."""
        records = self.selected()
        if len(records) == 2:
            return tuple(sorted(records, key=lambda r: (r.created, r.id)))
        if len(records) == 1 and self.store is not None:
            source = self.store.source_of(records[0])
            if source is not None:
                return source, records[0]
        return None

    def comparing(self) -> bool:
        return self.pages.currentIndex() == 1

    def compare_selected(self) -> None:
        """Show the compare view of compare_pair() in place of the grid; the pictures are read in the background."""
        pair = self.compare_pair()
        if pair is None:
            self.message.emit("Select two pictures to compare, or an upscaled or restored picture to compare with "
                              "its source.")
            return
        before, after = pair
        self._compared, self._verdict = (before.id, after.id), None
        self.diff_button.hide()
        self.compare_caption.setText(f"Before: {Path(before.path).name} ({before.width} × {before.height})   ·   "
                                     f"After: {Path(after.path).name} ({after.width} × {after.height})")
        self.compare_view.set_images(QImage(), QImage())
        self.compare_view.set_split(0.5)
        self.pages.setCurrentIndex(1)
        self.compare_view.setFocus()
        paths = (self.store.path(before), self.store.path(after))
        self.background.run(lambda: tuple(read_picture(path) for path in paths),
                            lambda images, ids=self._compared: self._compare_loaded(ids, images))

    def _compare_loaded(self, ids: tuple[int, int], images: tuple[QImage, QImage]) -> None:
        if ids != self._compared or not self.comparing():
            return
        if any(image.isNull() for image in images):
            self.close_compare()
            self.error.emit("A picture to compare can no longer be read; it may have been moved or deleted outside "
                            "Sfumato.")
            return
        self.compare_view.set_images(*images)

    def close_compare(self) -> None:
        self._compared, self._verdict = None, None
        self.diff_button.hide()
        self.compare_view.set_images(QImage(), QImage())
        self.pages.setCurrentIndex(0)
        self.list.setFocus()
