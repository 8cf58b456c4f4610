"""The welcome shown on the first start: where do your models come from?

Four ways in: the model folders of AUTOMATIC1111, ComfyUI, InvokeAI and other
apps found on this computer (found in the background, ticked by default),
a model file, a download from Hugging Face, or the built-in demo model.

Signals:
    folders_chosen(list): model folders to add to Settings.
    add_file_requested(): the user wants to pick a model file.
    download_requested(): the user wants to download a model.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core import families
from desktop.core.model_sources import Source, detect_other_apps
from desktop.core.modelfiles import Family

from .background import Background


def family_names() -> str:
    """"SD 1.x, SD 2.x, SDXL, Z-Image, FLUX.2 [klein], FLUX.1 and SD 3.5": the families Sfumato paints with."""
    labels = [spec.label for spec in families.SPECS.values() if spec.family is not Family.SDXL_REFINER]
    return f"{', '.join(labels[:-1])} and {labels[-1]}"


class WelcomeDialog(QDialog):
    folders_chosen = Signal(list)
    add_file_requested = Signal()
    download_requested = Signal()

    def __init__(self, parent: QWidget | None = None, detect=detect_other_apps):
        super().__init__(parent)
        self.setWindowTitle("Welcome to Sfumato")
        self.setMinimumWidth(560)
        title = QLabel("<h2>Welcome to Sfumato</h2>")
        intro = QLabel(f"Sfumato paints with {family_names()} models (.safetensors and .gguf files, or diffusers "
                       "folders). Where should it find yours? You can change this later in Models > Manage models.")
        intro.setWordWrap(True)
        self.found_label = QLabel("Looking for the models of other Stable Diffusion apps on this computer...")
        self.found_label.setWordWrap(True)
        self.found = QListWidget()
        self.found.setMaximumHeight(130)
        self.found.hide()
        self.use_found = QPushButton("Use these models")
        self.use_found.setToolTip("Sfumato reads the models where they are; nothing is copied")
        self.use_found.hide()
        self.use_found.clicked.connect(self._use_found)
        self.add_file = QPushButton("Add a model file...")
        self.add_file.setToolTip("Pick a .safetensors checkpoint you downloaded")
        self.add_file.clicked.connect(lambda: self._finish(self.add_file_requested))
        self.download = QPushButton("Download from Hugging Face...")
        self.download.setToolTip("Type a model's id, like stabilityai/stable-diffusion-xl-base-1.0")
        self.download.clicked.connect(lambda: self._finish(self.download_requested))
        self.demo = QPushButton("Start with the demo model")
        self.demo.setToolTip("A tiny built-in model with random weights: it paints noise, but everything works")
        self.demo.setDefault(True)
        self.demo.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        for button in (self.add_file, self.download):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.demo)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addWidget(self.found_label)
        layout.addWidget(self.found)
        layout.addWidget(self.use_found, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addSpacing(8)
        layout.addLayout(buttons)
        self.background = Background(self)
        self.background.run(detect, self._show_found, lambda _error: self._show_found([]), name="welcome-detect")

    def _show_found(self, sources: list[Source]) -> None:
        if not sources:
            self.found_label.setText("No other Stable Diffusion app was found in the usual places.")
            return
        self.found_label.setText("These apps have model folders Sfumato can use as they are:")
        for source in sources:
            item = QListWidgetItem(f"{source.app}: {source.path}")
            item.setData(Qt.ItemDataRole.UserRole, str(source.path))
            item.setCheckState(Qt.CheckState.Checked)
            self.found.addItem(item)
        self.found.show()
        self.use_found.show()
        self.use_found.setDefault(True)

    def chosen_folders(self) -> list[str]:
        items = (self.found.item(i) for i in range(self.found.count()))
        return [item.data(Qt.ItemDataRole.UserRole) for item in items if item.checkState() == Qt.CheckState.Checked]

    def _use_found(self) -> None:
        folders = self.chosen_folders()
        if folders:
            self.folders_chosen.emit(folders)
        self.accept()

    def _finish(self, signal) -> None:
        self.accept()
        signal.emit()
