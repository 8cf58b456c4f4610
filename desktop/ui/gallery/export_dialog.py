"""The export dialog: format, quality, size, file names, folder, and whether metadata goes along."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from desktop.core import credentials, settings
from desktop.core.gallery.export import (
    FIELDS,
    ExportOptions,
    check_template,
    default_template,
    file_stem,
    template_fields,
)
from desktop.core.gallery.index import ImageRecord


class ExportDialog(QDialog):
    def __init__(self, records: list[ImageRecord], folder: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.records = records
        self.setWindowTitle(f"Export {len(records)} picture{'s' if len(records) != 1 else ''}")
        self.format = QComboBox()
        for label, value in (("PNG (lossless)", "PNG"), ("JPEG", "JPEG"), ("WebP", "WEBP")):
            self.format.addItem(label, value)
        self.quality = QSpinBox()
        self.quality.setRange(1, 100)
        self.quality.setValue(92)
        self.quality.setSuffix(" %")
        self.quality.setToolTip("JPEG and WebP quality: 90-95 looks like the original")
        self.resize_box = QCheckBox("Shrink to at most")
        self.max_side = QSpinBox()
        self.max_side.setRange(16, 16384)
        self.max_side.setValue(1024)
        self.max_side.setSuffix(" px")
        self.template = QLineEdit(default_template(True))
        self.template.setToolTip("Fields: " + ", ".join("{" + f + "}" for f in FIELDS))
        self.example = QLabel()
        self.example.setWordWrap(True)
        self.folder = QLineEdit(str(folder))
        browse = QPushButton("Choose...")
        browse.clicked.connect(self._choose_folder)
        self.keep = QCheckBox("Keep the generation parameters in the files")
        self.keep.setChecked(True)
        self.keep.setToolTip("Unchecked: no text, EXIF, XMP or colour profile is written at all, only the "
                             "AI-generated mark while that stays ticked")
        self.keep.toggled.connect(self._keep_toggled)
        self.keep_mark = QCheckBox("Keep the AI-generated mark")
        self.keep_mark.setChecked(True)
        self.keep_mark.setToolTip(
            "The mark says in the file, in a way other apps read (the IPTC digital source type in XMP), that the "
            "picture was made by a model: the EU AI Act (article 50) expects generated pictures to be marked so. "
            "It says nothing about the prompt or the parameters.")
        self.name_notice = QLabel()  # stripping metadata does not strip the file names
        self.name_notice.setWordWrap(True)

        size_row, folder_row = QHBoxLayout(), QHBoxLayout()
        size_row.addWidget(self.resize_box)
        size_row.addWidget(self.max_side, 1)
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("Format", self.format)
        form.addRow("Quality", self.quality)
        form.addRow("Size", size_row)
        form.addRow("File names", self.template)
        form.addRow("", self.example)
        form.addRow("Folder", folder_row)
        form.addRow("", self.keep)
        form.addRow("", self.name_notice)
        form.addRow("", self.keep_mark)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        for signal in (self.format.currentIndexChanged, self.template.textChanged, self.resize_box.toggled,
                       self.folder.textChanged):
            signal.connect(self._update)
        self._update()

    def options(self) -> ExportOptions:
        return ExportOptions(
            folder=Path(self.folder.text()).expanduser(), format=self.format.currentData(),
            quality=self.quality.value(), max_side=self.max_side.value() if self.resize_box.isChecked() else None,
            template=self.template.text(), keep_metadata=self.keep.isChecked(), keep_mark=self.keep_mark.isChecked(),
            # content credentials as File > Settings says (read from the file the Settings window writes)
            signing=credentials.Signing.from_settings(settings.load(set_aside=False)),
        )

    def _update(self) -> None:
        self.quality.setEnabled(self.format.currentData() != "PNG")
        self.max_side.setEnabled(self.resize_box.isChecked())
        ok = True
        try:
            check_template(self.template.text())
            suffix = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[self.format.currentData()]
            self.example.setText(f"For example: {file_stem(self.template.text(), self.records[0], 1)}{suffix}")
            self.example.setStyleSheet("")
        except (ValueError, KeyError, IndexError) as error:
            self.example.setText(str(error).capitalize())
            self.example.setStyleSheet("color: #c0392b;")
            ok = False
        self._update_notice(ok)
        if not self.folder.text().strip():
            ok = False
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def _keep_toggled(self, keep: bool) -> None:
        """Follow the metadata choice with the default names, unless the user wrote a template of their own."""
        if self.template.text() == default_template(not keep):
            self.template.setText(default_template(keep))
        self._update()

    def _update_notice(self, valid: bool) -> None:
        fields = template_fields(self.template.text()) if valid else []
        words = list(dict.fromkeys(_FIELD_WORDS[f] for f in fields))
        self.name_notice.setVisible(not self.keep.isChecked() and valid)
        if not words:
            text = "The file names are not stripped, but this template puts nothing from the picture in them."
        else:
            shown = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
            text = f"The file names are not stripped: they show {shown}."
        self.name_notice.setText(text)
        self.name_notice.setStyleSheet("color: #c0392b;" if "prompt" in fields else "")
        self._fit_height()

    def _fit_height(self) -> None:
        """Grow to show every wrapped line when the example or the notice gets longer (a form does not)."""
        layout = self.layout()
        if layout is None or not self.isVisible():
            return
        layout.activate()
        needed = layout.totalHeightForWidth(self.width()) if layout.hasHeightForWidth() else self.sizeHint().height()
        if needed > self.height():
            self.resize(self.width(), needed)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to", self.folder.text())
        if folder:
            self.folder.setText(folder)


_FIELD_WORDS = {
    "date": "the date", "time": "the time", "seed": "the seed", "prompt": "the prompt", "model": "the model",
    "width": "the size", "height": "the size", "index": "the number", "name": "the gallery file's name",
}
