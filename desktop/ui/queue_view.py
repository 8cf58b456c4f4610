"""QueueView: the pending generations: remove, move up or down, duplicate; pause and resume the whole queue; and
the queue's progress figure in its header ("Queue: 28 waiting · 12 of 40, about 6 min left").

Its height never changes: the list keeps its room (three rows, then it
scrolls) when it empties, so nothing below or beside it moves under the pointer.

Signals:
    remove_requested(int): the user asked to drop the job with this id.
    move_requested(int, int): move the job with this id by so many places (-1: one earlier).
    duplicate_requested(int): queue a copy of the job with this id right after it.
    pause_requested(bool): True to pause the queue (the running job finishes), False to resume it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop.core.backend import PreprocessJob
from desktop.core.postprocess import UpscaleRequest, describe as describe_upscale
from desktop.core.preprocessors import describe as describe_preprocess
from desktop.core.request import GenerationRequest
from desktop.core.runs import Run


def describe(request: GenerationRequest | UpscaleRequest | PreprocessJob) -> str:
    if isinstance(request, Run):  # an X/Y/Z plot, a folder batch
        return request.describe()
    if isinstance(request, PreprocessJob):  # a control layer's "From picture"
        height, width = request.image.shape[:2]
        return f"{describe_preprocess(request.type)}  ·  {width}x{height}"
    if isinstance(request, UpscaleRequest):
        source, target = request.source, request.target()
        return f"{describe_upscale(request)}  ·  {source.width}x{source.height} to {target.width}x{target.height}"
    prompt = " ".join(request.conditioning.prompt.split()) or "(no prompt)"
    if len(prompt) > 48:
        prompt = prompt[:47] + "…"
    sampling = request.sampling
    return f"{prompt}  ·  {request.width}x{request.height}, {sampling.steps} steps, x{sampling.batch_size}"


class _Title(QLabel):
    """The header's line: cut with "…" where the buttons leave it too little room (the whole line is its tooltip)."""

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, self.contentsRect().width())
        painter.drawText(self.contentsRect(), int(self.alignment()), text)


class QueueView(QWidget):
    remove_requested = Signal(int)
    move_requested = Signal(int, int)
    duplicate_requested = Signal(int)
    pause_requested = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._count, self._paused, self._progress = 0, False, ""
        self.title = _Title("Queue: empty")
        self.title.setMinimumWidth(80)  # a long figure is cut, never a reason to widen the window
        self.list = QListWidget()
        self.list.setToolTip("Waiting generations, oldest first")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Start no new job; the running one finishes")
        self.pause_button.clicked.connect(lambda: self.pause_requested.emit(not self._paused))
        self.up_button = QPushButton("▲")
        self.up_button.setToolTip("Run the selected job earlier (Alt+Up)")
        self.up_button.clicked.connect(lambda: self._move_selected(-1))
        self.down_button = QPushButton("▼")
        self.down_button.setToolTip("Run the selected job later (Alt+Down)")
        self.down_button.clicked.connect(lambda: self._move_selected(1))
        self.duplicate_button = QPushButton("Duplicate")
        self.duplicate_button.setToolTip("Queue a copy of the selected job right after it")
        self.duplicate_button.clicked.connect(self._duplicate_selected)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected waiting generation (Delete)")
        self.remove_button.clicked.connect(self._remove_selected)
        for button in (self.up_button, self.down_button):
            button.setFixedWidth(button.fontMetrics().horizontalAdvance("▲") + 24)
        self._selection_buttons = (self.up_button, self.down_button, self.duplicate_button, self.remove_button)
        for button in self._selection_buttons:
            button.setEnabled(False)
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)  # Shift/Ctrl+click: several jobs
        self.list.itemSelectionChanged.connect(self._selection_changed)
        remove = QShortcut(QKeySequence.StandardKey.Delete, self.list, activated=self._remove_selected)
        remove.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)  # on the list only, not the whole window
        for key, by in (("Alt+Up", -1), ("Alt+Down", 1)):
            move = QShortcut(QKeySequence(key), self.list, activated=lambda by=by: self._move_selected(by))
            move.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.pause_button)
        header.addWidget(self.up_button)
        header.addWidget(self.down_button)
        header.addWidget(self.duplicate_button)
        header.addWidget(self.remove_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.list)
        rows = 3
        self.list.setFixedHeight(rows * (self.list.fontMetrics().height() + 2) + 2 * self.list.frameWidth() + 4)
        policy = self.list.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.list.setSizePolicy(policy)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.list.hide()

    def set_jobs(self, jobs: list[tuple[int, GenerationRequest | UpscaleRequest | PreprocessJob]]) -> None:
        selected = set(self.selected_ids())  # kept across the new list: a moved job stays selected
        current = self.list.currentItem().data(Qt.ItemDataRole.UserRole) if self.list.currentItem() else None
        self.list.clear()
        for job_id, request in jobs:
            item = QListWidgetItem(describe(request))
            item.setData(Qt.ItemDataRole.UserRole, job_id)
            self.list.addItem(item)
            if job_id == current:
                self.list.setCurrentItem(item)
            item.setSelected(job_id in selected)
        self._count = len(jobs)
        self._update_title()
        self.list.setVisible(bool(jobs))

    def set_paused(self, paused: bool) -> None:
        self._paused = paused
        self.pause_button.setText("Resume" if paused else "Pause")
        self.pause_button.setToolTip("Run the waiting jobs again" if paused else
                                     "Start no new job; the running one finishes")
        self._update_title()

    def set_progress(self, text: str) -> None:
        """The whole queue's figure, e.g. "12 of 40, about 6 min left" ("" for none)."""
        if text != self._progress:
            self._progress = text
            self._update_title()

    def _update_title(self) -> None:
        state = "paused" if self._paused else "waiting"  # short: the line shares its room with five buttons
        parts = [f"Queue: {self._count} {state}" if self._count else
                 "Queue: empty, paused" if self._paused else "Queue: empty"]
        if self._progress:
            parts.append(self._progress)
        text = " · ".join(parts)
        self.title.setText(text)
        self.title.setToolTip(text)

    def job_ids(self) -> list[int]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def selected_ids(self) -> list[int]:
        items = (self.list.item(row) for row in range(self.list.count()))
        return [item.data(Qt.ItemDataRole.UserRole) for item in items if item.isSelected()]  # in the list's order

    def _selection_changed(self) -> None:
        for button in self._selection_buttons:
            button.setEnabled(bool(self.list.selectedItems()))

    def _remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.remove_requested.emit(item.data(Qt.ItemDataRole.UserRole))

    def _move_selected(self, by: int) -> None:
        """Move the selected jobs as a block; at the top (or the bottom) nothing moves."""
        rows = [row for row in range(self.list.count()) if self.list.item(row).isSelected()]
        if not rows or rows[0] + by < 0 or rows[-1] + by >= self.list.count():
            return
        ids = self.selected_ids()
        for job_id in (ids if by < 0 else reversed(ids)):  # in the order that keeps them apart
            self.move_requested.emit(job_id, by)

    def _duplicate_selected(self) -> None:
        for job_id in self.selected_ids():
            self.duplicate_requested.emit(job_id)
