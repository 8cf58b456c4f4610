"""Image > Upscale... (and the gallery's Upscale...): which upscaler, and how large (x1.5 to x4, or a width and
height); it says the result's size.

"Add detail" (when the window gives the panel's settings) follows the upscale with one img2img pass at a low
denoising strength over the whole picture, with the panel's model, prompt, sampler, steps, CFG scale and seed
(desktop/engine/detail.py).

The upscalers are the files of the upscaler folders (desktop/core/postprocess.py, the list the engine's
models() gives with kind "upscale") and the built-in demo upscaler, which is always there.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFormLayout, QHBoxLayout, QLabel, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from desktop.core.document import MAX_EXTENT
from desktop.core.geometry import Extent
from desktop.core.postprocess import DETAIL_STRENGTH, DetailSettings, UpscaleRequest

SCALES = (1.5, 2.0, 3.0, 4.0)


class UpscaleDialog(QDialog):
    def __init__(self, source: Extent, upscalers: list[tuple[str, str]], parent: QWidget | None = None,
                 pictures: int = 0, detail: DetailSettings | None = None):
        """`upscalers`: (ref, label) pairs, the first chosen. `pictures`: 0 for the canvas's picture, else how many
        gallery pictures (`source` is the first one's size); several take a scale only, not one size for all.
        `detail`: the panel's model, prompt and sampling for "Add detail" (None: no such choice)."""
        super().__init__(parent)
        self.detail_base = detail
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
        self.detail_box = QCheckBox("Add detail")
        self.detail_box.setToolTip("After the upscale, repaint the whole picture lightly with the panel's model, "
                                   "prompt, sampler, steps, CFG scale and seed, in blended tiles")
        self.strength_box = QDoubleSpinBox()
        self.strength_box.setRange(0.0, 1.0)
        self.strength_box.setSingleStep(0.05)
        self.strength_box.setValue(DETAIL_STRENGTH)
        self.strength_box.setPrefix("Denoising strength ")
        self.strength_box.setEnabled(False)
        self.detail_box.toggled.connect(self.strength_box.setEnabled)
        self.detail_box.toggled.connect(self._explain)
        self.strength_box.valueChanged.connect(self._explain)
        detail_row = QHBoxLayout()
        detail_row.addWidget(self.detail_box)
        detail_row.addWidget(self.strength_box, 1)
        sizes = QHBoxLayout()
        sizes.addWidget(self.width_box)
        sizes.addWidget(QLabel("×"))
        sizes.addWidget(self.height_box)
        sizes.addWidget(self.keep_ratio)
        form = QFormLayout()
        form.addRow("Upscaler", self.upscaler_box)
        form.addRow(self.scale_button, self.scale_box)
        form.addRow(self.size_button, sizes)
        if detail is not None:
            form.addRow(detail_row)
        else:
            self.detail_box.hide()
            self.strength_box.hide()
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
        upscaler, detail = self.upscaler_box.currentData(), self.detail()
        if self.size_button.isChecked():
            size = Extent(self.width_box.value(), self.height_box.value())
            return UpscaleRequest(image, size=size, upscaler=upscaler, parameters=parameters, detail=detail)
        return UpscaleRequest(image, float(self.scale_box.currentData()), upscaler=upscaler, parameters=parameters,
                              detail=detail)

    def detail(self) -> DetailSettings | None:
        """The detail pass asked for: the panel's settings at the chosen strength; None when not."""
        if self.detail_base is None or not self.detail_box.isChecked():
            return None
        base = self.detail_base
        return base.replace(sampling=base.sampling.replace(strength=round(self.strength_box.value(), 2)))

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
        detail = self.detail()
        if ok and detail is not None:
            steps = int(detail.sampling.steps * detail.sampling.strength)
            self.summary.setText(f"{self.summary.text()} Then {steps} step{'s' if steps != 1 else ''} of "
                                 f"{detail.sampling.sampler} at denoising strength {detail.sampling.strength:g} add "
                                 "detail with the panel's model and prompt.")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
