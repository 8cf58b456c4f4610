"""The list of models: a table of every model found, sortable, with unusable rows greyed and their reason."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QSortFilterProxyModel, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QStyledItemDelegate,
    QTableView,
    QWidget,
)

from desktop.core import fewstep, paths
from desktop.core.model_sources import POSTPROCESS_KINDS, ModelEntry

from .common import folder_label


class ModelTableModel(QAbstractTableModel):
    """A thin adapter over a list of ModelEntry; unusable rows are greyed with their reason."""

    COLUMNS = ("Name", "Family", "Format", "Size", "Folder", "Note")
    NAME, FAMILY, FORMAT, SIZE, FOLDER, NOTE = range(6)
    SORT_ROLE = Qt.ItemDataRole.UserRole
    ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._entries: list[ModelEntry] = []
        self._marks: dict[str, str] = {}  # settings.few_step_marks, as the Models window edits them

    def set_marks(self, marks: dict[str, str]) -> None:
        """The few-step marks the Family column shows (a model's few-step kind: "SDXL · Lightning")."""
        self._marks = dict(marks)
        if self._entries:
            self.dataChanged.emit(self.index(0, self.FAMILY), self.index(len(self._entries) - 1, self.FAMILY))

    def few_step(self, entry: ModelEntry) -> str:
        """The model's few-step kind: the person's mark, else what its name or metadata says; "" for none."""
        if entry.info.kind in POSTPROCESS_KINDS:
            return ""
        return fewstep.kind_of(entry.info.name, entry.info.few_step, self._marks)

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
            if entry.usable and entry.info.kind not in POSTPROCESS_KINDS:
                lines.append("Right-click to mark it as a few-step model (LCM, Lightning, Turbo, ...) or not.")
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
            kind = self.few_step(entry)
            label = entry.family_label or "—"
            return f"{label} · {fewstep.LABELS[kind]}" if kind else label
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


class ModelTable(QTableView):
    """The table of models, sorted by name; `proxy` sorts, `table_model` holds the entries."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.table_model = ModelTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(ModelTableModel.SORT_ROLE)
        self.setModel(self.proxy)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._folder_delegate = _ElideMiddle(self)
        self.setItemDelegateForColumn(ModelTableModel.FOLDER, self._folder_delegate)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 12)
        self.setSortingEnabled(True)
        self.sortByColumn(ModelTableModel.NAME, Qt.SortOrder.AscendingOrder)
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        for column in (ModelTableModel.FAMILY, ModelTableModel.FORMAT, ModelTableModel.SIZE):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(ModelTableModel.NOTE, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(ModelTableModel.NAME, 230)
        header.resizeSection(ModelTableModel.FOLDER, 200)
        self.setMinimumHeight(200)

    def selected_entry(self) -> ModelEntry | None:
        rows = self.selectionModel().selectedRows()
        return rows[0].data(ModelTableModel.ENTRY_ROLE) if rows else None

    def select_model(self, path) -> bool:
        """Select the row of the model at `path` (however it is spelled); False when none is."""
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if paths.same_path(index.data(ModelTableModel.ENTRY_ROLE).path, path):
                self.selectRow(row)
                self.scrollTo(index)
                return True
        return False
