"""QueueView: the pending generations, each removable.

Its height never changes: the list keeps its room (three rows, then it
scrolls) when it empties, so nothing below or beside it moves under the pointer.

Signals:
    remove_requested(int): the user asked to drop the job with this id.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
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


class QueueView(QWidget):
    remove_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel("Queue: empty")
        self.list = QListWidget()
        self.list.setToolTip("Waiting generations, oldest first")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected waiting generation (Delete)")
        self.remove_button.setEnabled(False)
        self.remove_button.clicked.connect(self._remove_selected)
        self.list.itemSelectionChanged.connect(
            lambda: self.remove_button.setEnabled(bool(self.list.selectedItems()))
        )
        remove = QShortcut(QKeySequence.StandardKey.Delete, self.list, activated=self._remove_selected)
        remove.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)  # on the list only, not the whole window
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
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
        self.list.clear()
        for job_id, request in jobs:
            item = QListWidgetItem(describe(request))
            item.setData(Qt.ItemDataRole.UserRole, job_id)
            self.list.addItem(item)
        self.title.setText(f"Queue: {len(jobs)} waiting" if jobs else "Queue: empty")
        self.list.setVisible(bool(jobs))

    def job_ids(self) -> list[int]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def _remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.remove_requested.emit(item.data(Qt.ItemDataRole.UserRole))
