"""Generate > Batch from folder...: every picture of a folder through img2img, inpaint, an upscale or a restore,
queued as one FolderBatchRun (desktop/core/folder_batch.py, where the choices are written down).

img2img and inpaint use the prompt panel's request as it is now (prompt, model, strength, sampler, steps, CFG,
seed), each picture at its own size; an upscale or a restore takes an upscaler or restorer and (upscale) a scale.
The output folder defaults to a new folder named after the input inside the output folder
(<output>/batches/<input's name>); running the same batch again resumes it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from desktop.core.errors import InvalidRequest, SfumatoError
from desktop.core.folder_batch import MAX_VARIATIONS, FolderBatchRun, PostSettings
from desktop.core.postprocess import MAX_SCALE, RESTORE_KINDS, RESTORE_LABELS
from desktop.core.request import GenerationRequest

MODE_LABELS = {"img2img": "Image to image", "inpaint": "Inpaint (masks by name)", "upscale": "Upscale",
               "restore": "Restore"}
FIELDS = {"input": "Pictures from", "output": "Save to", "mask_dir": "Masks from", "variations": "Variations",
          "upscaler": "Upscaler", "scale": "Scale", "restore": "Restore for", "mode": "Mode"}
BATCHES = "batches"  # the default output folder's parent, inside the output folder


class BatchDialog(QDialog):
    def __init__(self, base: GenerationRequest, output_root: Path, upscalers: list[tuple[str, str]],
                 restorers: list[tuple[str, str]], parent: QWidget | None = None):
        """`base`: the panel's request (img2img, inpaint); `output_root`: the settings' output folder;
        `upscalers`, `restorers`: (ref, label) pairs, the first chosen."""
        super().__init__(parent)
        self.setWindowTitle("Batch from folder")
        self.setMinimumWidth(520)
        self.base, self.output_root = base, Path(output_root)
        self.upscalers, self.restorers = upscalers, restorers
        self._batch: FolderBatchRun | None = None
        self._out_edited = False  # the person typed or chose an output folder: no longer follows the input

        self.input_edit, input_row = self._folder_row("Choose the folder of the pictures", self._input_changed)
        self.mode_box = QComboBox()
        for mode, label in MODE_LABELS.items():
            self.mode_box.addItem(label, mode)
        self.variations_box = QSpinBox()
        self.variations_box.setRange(1, MAX_VARIATIONS)
        self.variations_box.setToolTip("Pictures made of each input, with the seeds seed, seed+1, ...")
        self.mask_edit, self.mask_row = self._folder_row("Choose the folder of the masks", None)
        self.mask_edit.setPlaceholderText("masks named as the pictures")
        self.mask_edit.setToolTip("A mask per picture, of the same name (cat.png for cat.jpg works): white is "
                                  "repainted")
        self.model_box = QComboBox()
        self.scale_box = QDoubleSpinBox()
        self.scale_box.setRange(1.0, MAX_SCALE)
        self.scale_box.setSingleStep(0.5)
        self.scale_box.setValue(2.0)
        self.scale_box.setPrefix("x")
        self.kind_box = QComboBox()
        for kind in RESTORE_KINDS:
            if kind != "face":
                self.kind_box.addItem(RESTORE_LABELS[kind], kind)
        self.out_edit, out_row = self._folder_row("Choose where the outputs go", self._out_changed)
        self.out_edit.textEdited.connect(lambda _text: setattr(self, "_out_edited", True))
        self.about = QLabel(wordWrap=True)
        self.problem = QLabel(wordWrap=True)
        self.problem.setStyleSheet("padding: 6px; border-radius: 4px; color: white; background: #a33a3a;")
        self.problem.hide()

        self.form = form = QFormLayout()
        form.addRow("Pictures from", input_row)
        form.addRow("Mode", self.mode_box)
        form.addRow("Variations", self.variations_box)
        form.addRow("Masks from", self.mask_row)
        form.addRow("Model", self.model_box)
        form.addRow("Scale", self.scale_box)
        form.addRow("Restore for", self.kind_box)
        form.addRow("Save to", out_row)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Queue batch")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.about)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self._mode_changed()

    def _folder_row(self, title: str, changed) -> tuple[QLineEdit, QWidget]:
        edit = QLineEdit()
        choose = QPushButton("Choose...")
        choose.clicked.connect(lambda: self._choose(edit, title))
        if changed is not None:
            edit.textChanged.connect(changed)
        row = QWidget()
        box = QHBoxLayout(row)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(edit, 1)
        box.addWidget(choose)
        return edit, row

    def _choose(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text() or str(Path.home()))
        if folder:
            if edit is self.out_edit:
                self._out_edited = True
            edit.setText(folder)

    # -- what the choices change --------------------------------------------------------------------------

    def mode(self) -> str:
        return self.mode_box.currentData()

    @Slot()
    def _mode_changed(self) -> None:
        mode = self.mode()
        generating = mode in ("img2img", "inpaint")
        for widget, shown in ((self.variations_box, generating), (self.mask_row, mode == "inpaint"),
                              (self.model_box, not generating), (self.scale_box, mode == "upscale"),
                              (self.kind_box, mode == "restore")):
            self.form.setRowVisible(widget, shown)
        if not generating:
            self.model_box.clear()
            for ref, label in self.upscalers if mode == "upscale" else self.restorers:
                self.model_box.addItem(label, ref)
                self.model_box.setItemData(self.model_box.count() - 1, ref, Qt.ItemDataRole.ToolTipRole)
            self.form.labelForField(self.model_box).setText("Upscaler" if mode == "upscale" else "Restorer")
        if generating:
            model = Path(self.base.model).stem
            text = (f"Each picture at its own size with the prompt panel's model ({model}), prompt, "
                    f"strength ({self.base.sampling.strength:g}), sampler and seed; outputs <name>-00.png, "
                    "<name>-01.png, ...")
        else:
            text = "One output per picture, <name>.png, with the picture's parameters and the upscaler's."
        self.about.setText(f"{text} manifest.csv and manifest.json list them; queue it again to resume.")
        self.problem.hide()
        self.adjustSize()

    @Slot(str)
    def _input_changed(self, text: str) -> None:
        if not self._out_edited and text.strip():
            self.out_edit.setText(str(self.output_root / BATCHES / Path(text.strip()).name))
        self.problem.hide()

    @Slot(str)
    def _out_changed(self, _text: str) -> None:
        self.problem.hide()

    # -- the result ---------------------------------------------------------------------------------------

    def batch(self) -> FolderBatchRun | None:
        """The FolderBatchRun chosen (after OK)."""
        return self._batch

    def build(self) -> FolderBatchRun:
        """The FolderBatchRun of the choices, checked; raises SfumatoError with a sentence when one is wrong."""
        folder = self.input_edit.text().strip()
        if not folder:
            raise SfumatoError("Choose the folder of the pictures.")
        out = self.out_edit.text().strip() if self._out_edited else ""
        mode = self.mode()
        mask = self.mask_edit.text().strip()
        post = PostSettings(self.model_box.currentData() or "demo", self.scale_box.value(),
                            self.kind_box.currentData())
        run = FolderBatchRun(Path(folder), mode, Path(out or folder), self.base, post, self.variations_box.value(),
                             Path(mask) if mode == "inpaint" and mask else None)
        if not out:  # the default: batches/<name>, or <name>-2, ... where another batch is
            run.into_default_folder(self.output_root / BATCHES)
        return run.check()

    def accept(self) -> None:
        try:
            self._batch = self.build()
        except InvalidRequest as error:  # named as the dialog names it
            self.problem.setText(f"{FIELDS.get(error.field, error.field.replace('_', ' ').capitalize())}: "
                                 f"{error.message}")
            self.problem.show()
            return
        except SfumatoError as error:
            self.problem.setText(str(error))
            self.problem.show()
            return
        super().accept()
