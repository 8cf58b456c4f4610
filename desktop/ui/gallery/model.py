"""GalleryModel: a thin Qt list model over the ids a gallery search returned.

Records are read from the index a page at a time, and thumbnails are made
and decoded by one background thread, most recently asked first, so the
rows on screen come first however fast the list scrolls. Decoded
thumbnails are kept in a bounded cache (as QImages): memory stays flat with 10,000
pictures or 100,000.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from PySide6.QtCore import QAbstractListModel, QMimeData, QModelIndex, QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QImage

from desktop.core.gallery.index import ImageRecord, Query
from desktop.core.gallery.store import GalleryStore

RecordRole = Qt.ItemDataRole.UserRole + 1
PAGE = 200
CACHED_THUMBNAILS = 400


class ThumbnailLoader(QObject):
    """One thread making and decoding thumbnails, newest request first.

    Signals:
        loaded(int, QImage): a record id and its thumbnail (null when the picture cannot be read).
    """

    loaded = Signal(int, QImage)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._wanted: OrderedDict[int, tuple[GalleryStore, ImageRecord]] = OrderedDict()
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="thumbnails", daemon=True)
        self._thread.start()

    def request(self, store: GalleryStore, record: ImageRecord) -> None:
        with self._condition:
            self._wanted.pop(record.id, None)
            self._wanted[record.id] = (store, record)  # the newest goes last and is taken first
            while len(self._wanted) > PAGE:
                self._wanted.popitem(last=False)  # scrolled past long ago
            self._condition.notify()

    def forget(self) -> None:
        with self._condition:
            self._wanted.clear()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._wanted.clear()
            self._condition.notify()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._wanted and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                record_id, (store, record) = self._wanted.popitem(last=True)
            try:
                image = QImage(str(store.thumbnail(record)))
            except Exception:  # noqa: BLE001 - an unreadable picture gets an empty tile, not a dead thread
                image = QImage()
            try:
                self.loaded.emit(record_id, image)
            except RuntimeError:  # the model is gone
                return


class GalleryModel(QAbstractListModel):
    """Rows are pictures, newest first by default.

    Signals:
        count_changed(int): how many pictures the current search shows.
    """

    count_changed = Signal(int)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.store: GalleryStore | None = None
        self.query = Query()
        self.ids: list[int] = []
        self._records: dict[int, ImageRecord] = {}
        self._thumbnails: OrderedDict[int, QImage] = OrderedDict()  # QImage: QPixmaps here made memory creep
        self.loader = ThumbnailLoader(self)
        self.loader.loaded.connect(self._thumbnail_loaded)

    def set_store(self, store: GalleryStore | None) -> None:
        self.store = store
        self._thumbnails.clear()
        self.reload()

    def set_query(self, query: Query) -> None:
        if query != self.query:
            self.query = query
            self.reload()

    def reload(self) -> None:
        self.beginResetModel()
        self.ids = self.store.search(self.query) if self.store is not None else []
        self._records.clear()
        self.loader.forget()
        self.endResetModel()
        self.count_changed.emit(len(self.ids))

    def add(self, records: list[ImageRecord]) -> None:
        """New pictures (results, imports): shown at the top without a reload, when they match the search."""
        if self.store is None or not records:
            return
        matching = set(self.store.search(self.query)) if self.query != Query() else None
        shown = set(self.ids)
        fresh = [r for r in records if r.id not in shown and (matching is None or r.id in matching)]
        if not fresh:
            return
        if self.query.sort == "oldest":
            first = len(self.ids)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            self.ids.extend(r.id for r in fresh)
        else:
            self.beginInsertRows(QModelIndex(), 0, len(fresh) - 1)
            self.ids[:0] = [r.id for r in reversed(fresh)]
        self._records.update({r.id: r for r in fresh})
        self.endInsertRows()
        self.count_changed.emit(len(self.ids))

    def remove_ids(self, ids: set[int]) -> None:
        rows = sorted((row for row, record_id in enumerate(self.ids) if record_id in ids), reverse=True)
        for row in rows:
            self.beginRemoveRows(QModelIndex(), row, row)
            record_id = self.ids.pop(row)
            self._records.pop(record_id, None)
            self._thumbnails.pop(record_id, None)
            self.endRemoveRows()
        if rows:
            self.count_changed.emit(len(self.ids))

    def update_records(self, ids: list[int]) -> None:
        """Re-read records that changed (a favourite), keeping the rows."""
        fresh = self.store.records(ids)
        for record_id, record in fresh.items():
            if record_id in self._records:
                self._records[record_id] = record
                row = self.ids.index(record_id)
                self.dataChanged.emit(self.index(row), self.index(row))

    # -- rows ----------------------------------------------------------------------------------

    def record(self, row: int) -> ImageRecord | None:
        if not 0 <= row < len(self.ids):
            return None
        record_id = self.ids[row]
        if record_id not in self._records:
            start = max(0, row - PAGE // 2)
            page = [i for i in self.ids[start:start + PAGE] if i not in self._records]
            self._records.update(self.store.records(page))
            if len(self._records) > 20 * PAGE:  # keep memory bounded on huge galleries
                keep = set(self.ids[start:start + PAGE])
                self._records = {k: v for k, v in self._records.items() if k in keep}
        return self._records.get(record_id)

    def row_of(self, record_id: int) -> int:
        try:
            return self.ids.index(record_id)
        except ValueError:
            return -1

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.ids)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        record = self.record(index.row())
        if record is None:
            return None
        if role == Qt.ItemDataRole.DecorationRole:
            thumbnail = self._thumbnails.get(record.id)
            if thumbnail is not None:
                self._thumbnails.move_to_end(record.id)
                return thumbnail
            self.loader.request(self.store, record)  # again if asked before: it moves to the front of the line
            return None
        if role == RecordRole:
            return record
        if role == Qt.ItemDataRole.ToolTipRole:
            prompt = record.prompt if len(record.prompt) < 300 else record.prompt[:297] + "..."
            seed = f"seed {record.seed}" if record.seed is not None else "no seed"
            return f"{prompt or '(no prompt)'}\n{record.width} x {record.height}, {seed}\n{record.path}"
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return record.prompt or record.path
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes) -> QMimeData:
        """Dragging pictures out hands the files to the file manager, which copies them."""
        data = QMimeData()
        records = [self.record(i.row()) for i in indexes]
        data.setUrls([QUrl.fromLocalFile(str(self.store.path(r))) for r in records if r is not None])
        return data

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    @Slot(int, QImage)
    def _thumbnail_loaded(self, record_id: int, image: QImage) -> None:
        row = self.row_of(record_id)
        if row < 0:  # asked before a reload, a deletion or another folder: not this grid's any more
            return
        if image.isNull():
            image = QImage(8, 8, QImage.Format.Format_RGB32)
            image.fill(Qt.GlobalColor.darkGray)
        self._thumbnails[record_id] = image
        while len(self._thumbnails) > CACHED_THUMBNAILS:
            self._thumbnails.popitem(last=False)
        index = self.index(row)
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])
