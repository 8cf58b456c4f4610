"""Own certificate...: the certificate chain and private key a person signs content credentials with.

A small window of its own (File > Settings opens it), so that the Settings window stays short enough for a
768-pixel screen. What is named is checked by signing a test picture (desktop/core/credentials.py
check_user_key) in a background thread, never on the GUI thread: a path that names a FIFO or a network file
must not freeze the window. OK is offered once the check has passed; "Use Sfumato's own key" clears both.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core import credentials

from .background import Background

CHECK_DELAY_MS = 300  # wait for typing to pause before touching the disk
ERROR_STYLE = ("QLabel { color: white; background: #a33a3a; border: 1px solid #7a2020; border-radius: 3px;"
               " padding: 4px 8px; }")
NOTE = ("Your signing certificate, then its issuers, in one PEM file, and its unencrypted PEM private key. A\n"
        "certificate from a C2PA-trusted issuer makes validators show your name; exports are signed with it too.")


def here(sentence: str) -> str:
    """A sentence said inside the Settings windows, which need not send the person to File > Settings."""
    return sentence.replace(" in File > Settings", "")


class CertificateDialog(QDialog):
    """Edits a certificate chain and key path; read `values()` after it was accepted ("" and "": Sfumato's own
    key)."""

    def __init__(self, certificate: str = "", key: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Own certificate")
        self._background = Background(self)
        self._check_number = 0
        self._checked: tuple[str, str] | None = None  # the paths the last finished check passed
        self.problem: str | None = None

        self.certificate = QLineEdit(certificate)
        self.certificate.setPlaceholderText("Certificate chain (.pem)")
        self.certificate.setClearButtonEnabled(True)
        self.key = QLineEdit(key)
        self.key.setPlaceholderText("Its private key (.pem)")
        self.key.setClearButtonEnabled(True)
        form = QFormLayout()
        for text, line, title in (("Certificate &chain:", self.certificate, "Choose the certificate chain"),
                                  ("Private &key:", self.key, "Choose its private key")):
            row = QHBoxLayout()
            row.addWidget(line, 1)
            browse = QPushButton("Browse...")
            browse.setAutoDefault(False)
            browse.clicked.connect(lambda _=False, line=line, title=title: self._browse(line, title))
            row.addWidget(browse)
            label = QLabel(text)
            label.setBuddy(line)
            form.addRow(label, row)
        note = QLabel(NOTE)
        note.setStyleSheet("QLabel { color: palette(placeholder-text); }")
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.own_key_button = buttons.addButton("Use Sfumato's own key", QDialogButtonBox.ButtonRole.ResetRole)
        self.own_key_button.setToolTip("Clear both: pictures are signed with the key Sfumato made on this computer")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.own_key_button.clicked.connect(self._use_own_key)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.setMinimumWidth(620)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(CHECK_DELAY_MS)
        self._timer.timeout.connect(self.check)
        for line in (self.certificate, self.key):
            line.textChanged.connect(self._edited)
        self.check()

    def values(self) -> tuple[str, str]:
        return self.certificate.text().strip(), self.key.text().strip()

    def busy(self) -> bool:
        """Whether a check of what is named now has not answered yet."""
        return self._checked != self.values()

    @Slot()
    def _edited(self) -> None:
        self._checked = None
        self.ok_button.setEnabled(False)
        self._timer.start()

    @Slot()
    def check(self) -> None:
        """Sign a test picture with what is named, in the background; its sentence shows when it answers."""
        self._timer.stop()
        self._check_number += 1
        number, values = self._check_number, self.values()
        self.ok_button.setEnabled(False)

        def answered(problem: object) -> None:
            if number != self._check_number:
                return  # the paths changed meanwhile
            self.problem = here(str(problem)) if problem else None
            self._checked = values
            self.error.setText(self.problem or "")
            self.error.setVisible(self.problem is not None)
            self.ok_button.setEnabled(self.problem is None)

        self._background.run(lambda: credentials.check_user_key(*values), answered,
                             lambda error: answered(f"The certificate could not be checked ({error})."),
                             name="certificate-check")

    def accept(self) -> None:
        if self.busy() or self.problem:
            return  # OK is offered only once what is named has been checked
        super().accept()

    def done(self, result: int) -> None:
        self._background.closed = True  # a check still running answers nobody
        super().done(result)

    @Slot()
    def _use_own_key(self) -> None:
        self.certificate.clear()
        self.key.clear()
        self._checked, self.problem = ("", ""), None
        super().accept()

    def _browse(self, line: QLineEdit, title: str) -> None:
        start = line.text().strip() or str(Path.home())
        name, _ = QFileDialog.getOpenFileName(self, title, start, "PEM files (*.pem *.crt *.key);;All files (*)")
        if name:
            line.setText(str(Path(name)))
