"""Other apps' models: tick which of the model folders found of other Stable Diffusion apps to search."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from desktop.core import paths
from desktop.core.model_sources import Source

from .common import home_relative


class OtherAppsDialog(QDialog):
    """Tick which of the found model folders of other apps to search."""

    def __init__(self, sources: list[Source], listed: list[str], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Other apps' models")
        layout = QVBoxLayout(self)
        intro = QLabel("Sfumato found the model folders of these apps. Tick the ones to search; "
                       "their files stay where they are.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.list = QListWidget()
        for source in sources:
            already = any(paths.same_path(source.path, folder) for folder in listed)
            text = f"{source.app} — {home_relative(source.path)}" + ("  (already listed)" if already else "")
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
