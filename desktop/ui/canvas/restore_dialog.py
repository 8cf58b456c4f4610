"""Image > Restore...: denoise, remove JPEG artefacts or restore the visible picture, at its size.

With a restorer model (a spandrel model of scale 1 from the upscaler or restorer folders, or the built-in demo
restorer) it runs like an upscale at scale 1; without one, "Diffusion" repaints the whole picture lightly: an
img2img at strength 0.25 with the prompt panel's model and prompt. Either way the result is staged on the
picture to Accept (one undo step) or Discard.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from desktop.core.geometry import Extent
from desktop.core.postprocess import RESTORE_STRENGTH

DIFFUSION = "diffusion"  # the model box's entry for the diffusion restore
KINDS = (("restore", "Restore"), ("denoise", "Denoise"), ("jpeg", "Remove JPEG artefacts"))


class RestoreDialog(QDialog):
    def __init__(self, source: Extent, restorers: list[tuple[str, str]], parent: QWidget | None = None,
                 has_files: bool = False):
        """`restorers`: (ref, label) pairs; the diffusion restore is added last. `has_files`: restorer files were
        found, so the first is chosen; else the diffusion restore is."""
        super().__init__(parent)
        self.setWindowTitle("Restore")
        self.setMinimumWidth(380)
        self.model_box = QComboBox()
        for ref, label in [*restorers, (DIFFUSION, f"Diffusion (the panel's model, strength {RESTORE_STRENGTH:g})")]:
            self.model_box.addItem(label, ref)
            self.model_box.setItemData(self.model_box.count() - 1, ref, Qt.ItemDataRole.ToolTipRole)
        self.model_box.setCurrentIndex(0 if has_files else self.model_box.count() - 1)
        self.kind_box = QComboBox()
        for kind, label in KINDS:
            self.kind_box.addItem(label, kind)
        self.summary = QLabel(wordWrap=True)
        form = QFormLayout()
        form.addRow("Restorer", self.model_box)
        form.addRow("For", self.kind_box)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Restore")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"The visible picture, {source.width} × {source.height} px"))
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        self.model_box.currentIndexChanged.connect(self._explain)
        self._explain()

    def model(self) -> str:
        return self.model_box.currentData()

    def kind(self) -> str:
        return self.kind_box.currentData()

    def _explain(self, *_args) -> None:
        if self.model() == DIFFUSION:
            text = (f"Repaints the whole picture lightly (img2img at strength {RESTORE_STRENGTH:g}) with the model and "
                    "prompt of the prompt panel; the result waits on the canvas to Accept or Discard.")
        else:
            text = ("Runs the restorer over the picture at its size, tile by tile; the result waits on the canvas to "
                    "Accept (a new layer on top) or Discard.")
        self.summary.setText(text)
