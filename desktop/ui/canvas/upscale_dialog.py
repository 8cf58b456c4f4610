"""Image > Upscale... (and the gallery's Upscale...): which upscaler, and how large (x1.5 to x4, or a width and
height); it says the result's size.

The upscalers are the files of the upscaler folders (desktop/core/postprocess.py, the list the engine's
models() gives with kind "upscale") and the built-in demo upscaler, which is always there.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QHBoxLayout, QLabel, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from desktop.core.document import MAX_EXTENT
from desktop.core.geometry import Extent
from desktop.core.postprocess import UpscaleRequest

SCALES = (1.5, 2.0, 3.0, 4.0)


class UpscaleDialog(QDialog):
    def __init__(self, source: Extent, upscalers: list[tuple[str, str]], parent: QWidget | None = None,
                 pictures: int = 0):
        """`upscalers`: (ref, label) pairs, the first chosen. `pictures`: 0 for the canvas's picture, else how many
        gallery pictures (`source` is the first one's size); several take a scale only, not one size for all."""
        super().__init__(parent)
        self.pictures = pictures
        self.setWindowTitle("Upscale")
        self.setMinimumWidth(380)
        self.source = source
        self.upscaler_box = QComboBox()
        for ref, label in upscalers:
            self.upscaler_box.addItem(label, ref)
            self.upscaler_box.setItemData(self.upscaler_box.count() - 1, ref, Qt.ItemDataRole.ToolTipRole)
        self.scale_button, self.size_button = QRadioButton("Scale"), QRadioButton("Size")
        modes = QButtonGroup(self)
        modes.addButton(self.scale_button)
        modes.addButton(self.size_button)
        self.scale_button.setChecked(True)
        self.scale_box = QComboBox()
        for scale in SCALES:
            self.scale_box.addItem(f"x{scale:g}", scale)
        self.scale_box.setCurrentIndex(SCALES.index(2.0))
        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for box, value in ((self.width_box, source.width), (self.height_box, source.height)):
            box.setRange(1, MAX_EXTENT)
            box.setSuffix(" px")
            box.setValue(value * 2)
        self.keep_ratio = QCheckBox("Keep proportions")
        self.keep_ratio.setChecked(True)
        self.summary = QLabel(wordWrap=True)
        sizes = QHBoxLayout()
        sizes.addWidget(self.width_box)
        sizes.addWidget(QLabel("×"))
        sizes.addWidget(self.height_box)
        sizes.addWidget(self.keep_ratio)
        form = QFormLayout()
        form.addRow("Upscaler", self.upscaler_box)
        form.addRow(self.scale_button, self.scale_box)
        form.addRow(self.size_button, sizes)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Upscale")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        if pictures > 1:
            heading = f"{pictures} pictures; the first is {source.width} × {source.height} px"
            self.size_button.setEnabled(False)
            for widget in (self.width_box, self.height_box, self.keep_ratio):
                widget.setEnabled(False)
        elif pictures == 1:
            heading = f"The picture, {source.width} × {source.height} px"
        else:
            heading = f"The visible picture, now {source.width} × {source.height} px"
        layout.addWidget(QLabel(heading))
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        self.scale_box.currentIndexChanged.connect(lambda _: self._use(self.scale_button))
        self.width_box.valueChanged.connect(lambda value: self._sized(self.width_box, value))
        self.height_box.valueChanged.connect(lambda value: self._sized(self.height_box, value))
        modes.buttonToggled.connect(self._explain)
        self._explain()

    def target(self) -> Extent:
        if self.size_button.isChecked():
            return Extent(self.width_box.value(), self.height_box.value())
        scale = float(self.scale_box.currentData())
        return Extent(max(1, round(self.source.width * scale)), max(1, round(self.source.height * scale)))

    def request(self, image: np.ndarray, parameters: str = "") -> UpscaleRequest:
        """What the dialog asks for, of `image` (the source's size)."""
        upscaler = self.upscaler_box.currentData()
        if self.size_button.isChecked():
            size = Extent(self.width_box.value(), self.height_box.value())
            return UpscaleRequest(image, size=size, upscaler=upscaler, parameters=parameters)
        return UpscaleRequest(image, float(self.scale_box.currentData()), upscaler=upscaler, parameters=parameters)

    def _use(self, button: QRadioButton) -> None:
        if button.isChecked():
            self._explain()
        else:
            button.setChecked(True)  # toggled: explains

    def _sized(self, box: QSpinBox, value: int) -> None:
        if self.keep_ratio.isChecked():
            other, ratio = ((self.height_box, self.source.height / self.source.width) if box is self.width_box
                            else (self.width_box, self.source.width / self.source.height))
            other.blockSignals(True)
            other.setValue(max(1, min(MAX_EXTENT, round(value * ratio))))
            other.blockSignals(False)
        self._use(self.size_button)

    def _explain(self, *_args) -> None:
        out = self.target()
        ok = max(out) <= MAX_EXTENT
        if ok and self.pictures:
            first = "The first result" if self.pictures > 1 else "The result"
            self.summary.setText(f"{first} is {out.width} × {out.height} px, saved beside its picture with its "
                                 "parameters.")
        elif ok:
            self.summary.setText(f"The result is {out.width} × {out.height} px; the canvas becomes that size, its "
                                 "layers scaled, with the upscaled picture as a new layer on top.")
        else:
            self.summary.setText(f"The result would be {out.width} × {out.height} px; a canvas can be at most "
                                 f"{MAX_EXTENT} px a side. Choose a smaller scale or size.")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
