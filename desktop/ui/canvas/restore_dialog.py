"""Image > Restore...: denoise, remove JPEG artefacts or restore the visible picture, at its size.

With a restorer model (a spandrel model of scale 1 from the upscaler or restorer folders, or the built-in demo
restorer) it runs like an upscale at scale 1; without one, "Diffusion" repaints the whole picture lightly: an
img2img at strength 0.25 with the prompt panel's model and prompt. Either way the result is staged on the
picture to Accept (one undo step) or Discard.

"Fix faces" (offered when the caller gives the face restorers) finds the faces, or takes the masked parts with
"Only the masked faces", and fixes each: a face restorer (a GFPGAN / RestoreFormer / CodeFormer file, the demo
one, or None) shown at a visibility over the original, and/or the face detailer, which repaints each face with
the panel's model and prompt at its strength (desktop/core/faces.py).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QHBoxLayout, QLabel, QVBoxLayout, QWidget)

from desktop.core.faces import DEMO_FACE_RESTORER, DEMO_FACE_RESTORER_NAME, DETAILER_STRENGTH, FACE, FaceSettings
from desktop.core.geometry import Extent
from desktop.core.postprocess import RESTORE_LABELS, RESTORE_STRENGTH, DetailSettings

DIFFUSION = "diffusion"  # the model box's entry for the diffusion restore
KINDS = (("restore", "Restore"), ("denoise", "Denoise"), ("jpeg", "Remove JPEG artefacts"))


class RestoreDialog(QDialog):
    def __init__(self, source: Extent, restorers: list[tuple[str, str]], parent: QWidget | None = None,
                 has_files: bool = False, face_restorers: list[tuple[str, str]] | None = None,
                 detail: DetailSettings | None = None, has_mask: bool = False, pictures: int = 0,
                 frame_area: Extent | None = None):
        """`restorers`: (ref, label) pairs; the diffusion restore is added last. `has_files`: restorer files were
        found, so the first is chosen; else the diffusion restore is. `face_restorers`: the face restorer files
        (ref, label), to offer "Fix faces" (None: not offered); `detail`: the panel's model, prompt and sampling
        for the face detailer; `has_mask`: the canvas has a mask, so "Only the masked faces" is offered.
        `pictures`: 0 for the canvas's picture, else how many gallery pictures (`source` is the first one's size),
        whose results are saved beside them. `frame_area`: the generation frame's size when it lies inside the
        picture, so "The frame's area" is offered beside the whole picture (the default)."""
        super().__init__(parent)
        self.pictures = pictures
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
        form = self.form = QFormLayout()
        form.addRow("Restorer", self.model_box)
        form.addRow("For", self.kind_box)
        self.area_box = QComboBox()
        if frame_area is not None:
            self.area_box.addItem(f"The whole picture ({source.width} × {source.height} px)", False)
            self.area_box.addItem(f"The frame's area ({frame_area.width} × {frame_area.height} px)", True)
            form.addRow("Area", self.area_box)
        self._detail = detail or DetailSettings()
        self._face_rows: list[tuple[QWidget, bool]] = []  # (a face row's field, whether it can be shown)
        self._has_mask = has_mask
        self.face_box = QComboBox()
        self.visibility = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, decimals=2, value=1.0)
        self.visibility.setToolTip("How much of the restored face shows over the original (A1111's visibility)")
        self.detailer_box = QCheckBox("Face detailer")
        self.detailer_box.setToolTip("Repaint each face at a higher resolution with the prompt panel's model and "
                                     "prompt, as ADetailer does")
        self.detailer_strength = QDoubleSpinBox(minimum=0.05, maximum=1.0, singleStep=0.05, decimals=2,
                                                value=DETAILER_STRENGTH, prefix="strength ")
        self.masked_box = QCheckBox("Only the masked faces")
        self.masked_box.setToolTip("Fix the faces painted on the canvas's mask (each painted part is one face) "
                                   "instead of the faces the detector finds")
        if face_restorers is not None:
            self.kind_box.addItem(RESTORE_LABELS[FACE], FACE)
            for ref, label in [*face_restorers, (DEMO_FACE_RESTORER, DEMO_FACE_RESTORER_NAME), ("", "None")]:
                self.face_box.addItem(label, ref)
                self.face_box.setItemData(self.face_box.count() - 1, ref, Qt.ItemDataRole.ToolTipRole)
            # no file: the detailer alone, as the diffusion restore is chosen when there is no restorer file
            self.face_box.setCurrentIndex(0 if face_restorers else self.face_box.count() - 1)
            self.detailer_box.setChecked(not face_restorers)
            detailer = QWidget()
            row = QHBoxLayout(detailer)
            row.setContentsMargins(0, 0, 0, 0)
            row.addWidget(self.detailer_box)
            row.addWidget(self.detailer_strength, 1)
            form.addRow("Face restorer", self.face_box)
            form.addRow("Visibility", self.visibility)
            form.addRow("", detailer)
            form.addRow("", self.masked_box)
            self.masked_box.setChecked(has_mask)
            self._face_rows = [(self.face_box, True), (self.visibility, True), (detailer, True),
                               (self.masked_box, has_mask)]
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Restore")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{pictures} pictures; the first is {source.width} × {source.height} px" if pictures > 1
                                else f"The picture, {source.width} × {source.height} px" if pictures
                                else f"The visible picture, {source.width} × {source.height} px"))
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.buttons)
        self.model_box.currentIndexChanged.connect(self._explain)
        for signal in (self.kind_box.currentIndexChanged, self.face_box.currentIndexChanged,
                       self.detailer_box.toggled, self.masked_box.toggled, self.area_box.currentIndexChanged):
            signal.connect(self._explain)
        self._explain()

    def model(self) -> str:
        return self.model_box.currentData()

    def kind(self) -> str:
        return self.kind_box.currentData()

    def faces(self) -> FaceSettings | None:
        """What "Fix faces" asks for (no mask: the caller puts in the canvas's when only_masked()); None for the
        other kinds."""
        if self.kind() != FACE:
            return None
        detailer = None
        if self.detailer_box.isChecked():
            sampling = self._detail.sampling.replace(strength=round(self.detailer_strength.value(), 2), batch_size=1)
            detailer = self._detail.replace(sampling=sampling)
        return FaceSettings(restorer=self.face_box.currentData(), visibility=round(self.visibility.value(), 2),
                            detailer=detailer)

    def frame_area(self) -> bool:
        """Whether the frame's area was chosen rather than the whole picture."""
        return bool(self.area_box.currentData())

    def only_masked(self) -> bool:
        return self.kind() == FACE and self._has_mask and self.masked_box.isChecked()

    def _explain(self, *_args) -> None:
        face = self.kind() == FACE
        restorer = bool(self.face_box.currentData())
        self.form.setRowVisible(self.model_box, not face)
        for widget, possible in self._face_rows:
            self.form.setRowVisible(widget, face and possible)
        self.visibility.setEnabled(restorer)
        self.detailer_strength.setEnabled(self.detailer_box.isChecked())
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(not face or restorer or self.detailer_box.isChecked())
        outcome = ("Each result is saved beside its picture with its parameters." if self.pictures > 1 else
                   "The result is saved beside the picture with its parameters." if self.pictures else
                   "The result waits on the canvas to Accept (a new layer on top) or Discard.")
        picture = "the frame's area" if self.frame_area() else "the whole picture"
        if face:
            where = "the masked parts of the canvas (each one face)" if self.only_masked() else \
                "the faces OpenCV's detector finds (for faces it misses, open the picture on the canvas and paint " \
                "a mask over them)" if self.pictures else \
                "the faces OpenCV's detector finds (none found: paint a mask over them)"
            done = []
            if restorer:
                done.append("restores each with the face restorer")
            if self.detailer_box.isChecked():
                done.append(f"repaints {'it' if restorer else 'each'} with the prompt panel's model and prompt")
            text = (f"Fixes {where}: {' and '.join(done)}; nothing outside the faces changes. {outcome}" if done else
                    "Choose a face restorer, the face detailer, or both.")
        elif self.model() == DIFFUSION:
            text = (f"Repaints {picture} lightly (img2img at strength {RESTORE_STRENGTH:g}) with the model and "
                    f"prompt of the prompt panel. {outcome}")
        else:
            text = f"Runs the restorer over {picture} at its size, tile by tile. {outcome}"
        self.summary.setText(text)
        if self.isVisible():  # rows shown or hidden: fit them, no squeezed rows
            self.layout().activate()
            self.adjustSize()
