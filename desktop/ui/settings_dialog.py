"""The Settings window: backend, engine, folders, previews and appearance on one page.

It edits a copy. `SettingsDialog(settings, parent)`; when it is accepted
(`exec()` returns `QDialog.DialogCode.Accepted`, or on the `accepted` signal),
`settings()` is the edited copy. The Settings it was given is never changed,
and the fields it does not show (model, last_request, batch_count) are carried
over as they were.

No torch here: the device list is the fixed set of choices, and whether the
chosen one exists is checked when the engine starts (in the worker thread).
"Test connection" asks the server from a background thread (with timeouts),
never from the GUI thread.
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.core import cpu_runtime, credentials, paths
from desktop.core.settings import MAX_CPU_THREADS, Settings

from .background import Background
from .certificate_dialog import CertificateDialog, here
from .models.folders import FolderListEditor

ENGINE_RESTART_NOTE = ("Device, precision, weight storage and CPU runtime changes take effect from the next generation "
                       "(the model is loaded again).")
CPU_FP16_PROBLEM = "fp16 does not work on the CPU. Choose Automatic, bf16 or fp32."
# One line: the Settings window must fit a 768-pixel screen (the certificate's fields are in their own window).
CREDENTIALS_NOTE = "Never the prompt; gallery pictures share Sfumato's key, each export has one of its own."
CERTIFICATE_PROBLEM = "Your certificate cannot sign pictures: Own certificate... says why."
CREDENTIALS_TIP = ("A signed C2PA record of how each picture was made (never its prompt). The gallery's pictures are "
                   "signed with a key Sfumato made on this computer (self-signed: validators say \"untrusted "
                   "signer\", which is honest), so the gallery can tell its own pictures from a forgery; that key "
                   "is the same for every picture you keep, so each export is signed with a throwaway key of its "
                   "own, and nothing in the exported files links them to each other or to this computer. Another "
                   "tool's picture is never signed as Sfumato's.")
CHECK_DELAY_MS = 300  # wait for typing to pause before touching the disk
SERVER_EXAMPLE = "http://192.168.1.20:7862"
NO_SERVER_ADDRESS = f"Enter the server's address, for example {SERVER_EXAMPLE}, or choose This computer."
SERVER_ONLY_TIP = ("The server chooses its own device and precision (sfumato serve --device and --precision); "
                   "this applies to pictures made on this computer only.")
TOKEN_TIP = ("The token the server was started with (sfumato serve --token), or the one its reverse proxy wants; "
             "leave it empty when it asks for none.\nIt is kept in Sfumato's settings file in plain text, as "
             "AUTOMATIC1111 and Krita keep theirs.")

_MESSAGE_STYLE = (
    "QLabel { color: white; background: #a33a3a; border: 1px solid #7a2020;"
    " border-radius: 3px; padding: 4px 6px; }"
)
_NOTE_STYLE = (
    "QLabel { background: palette(alternate-base); border: 1px solid palette(mid);"
    " border-radius: 3px; padding: 4px 6px; }"
)

def _device_choices() -> list[tuple[str, str, str]]:
    mac = sys.platform == "darwin"
    return [
        ("auto", "Automatic", "A CUDA GPU if there is one, else an Apple GPU (MPS), else the CPU."),
        ("cuda", "CUDA GPU (NVIDIA)", "An NVIDIA graphics card through CUDA (also AMD cards with a ROCm build)."),
        ("mps", "Apple MPS" if mac else "Apple MPS (Macs only)", "The GPU of an Apple silicon Mac (Metal)."),
        ("cpu", "CPU", "The processor. Works everywhere, but a picture takes minutes instead of seconds."),
    ]


PRECISION_CHOICES = [
    ("auto", "Automatic", "fp16 on GPUs (CUDA, MPS); bf16 on CPUs that support it, else fp32."),
    ("fp16", "fp16 (half)", "Half precision: fast and half the memory. GPUs only."),
    ("bf16", "bf16 (bfloat16)", "Half the memory with fp32's range; good on recent CPUs and GPUs."),
    ("fp32", "fp32 (full)", "Full precision: the most memory and the slowest, but works everywhere."),
]

WEIGHT_STORAGE_CHOICES = [
    ("auto", "Automatic", "int8 only where a FLUX.1, SD 3.5, Z-Image or FLUX.2 klein model would otherwise need "
                          "sequential offload on an NVIDIA GPU (it then runs about 3x faster)."),
    ("full", "Full", "The transformer in the precision above: pictures exactly as the model makes them."),
    ("int8", "int8 (half the memory)", "The transformer's weights in int8 wherever it runs: half the memory, "
                                      "pictures close to, not the same as, full ones. No LoRAs."),
]

CPU_RUNTIME_CHOICES = [
    ("auto", "Automatic (measured on this CPU)",
     f"OpenVINO only where it measured at least {cpu_runtime.WORTH:g}x faster than PyTorch on this CPU (measured "
     "once, when the engine first starts here), else PyTorch; PyTorch until then. The demo models run on PyTorch "
     "(converting them would take longer than their pictures)."),
    ("pytorch", "PyTorch", "PyTorch runs the model: nothing to convert, every feature works."),
    ("openvino", "OpenVINO (faster; converts each model once)",
     "OpenVINO runs the model on the CPU: each model is converted once (1-5 minutes, kept beside the model cache), "
     "then usually runs faster. Its pictures say Runtime: OpenVINO in their parameters."),
]
AUTOMATIC_THREADS = "Automatic"

PREVIEW_CHOICES = [
    ("approximate", "Approximate (fast)", "A rough colour preview straight from the latents; costs nothing."),
    (
        "taesd",
        "TAESD (needs its weights)",
        (
            "A much closer preview from the tiny TAESD decoder. Needs its weights in "
            "<models>/taesd (and <models>/taesdxl for SDXL); without them the approximation is used."
        ),
    ),
    ("off", "Off", "No preview while a picture is made; the result appears at the end."),
]

BACKEND_CHOICES = [
    ("local", "This computer", "The engine runs here, on the device chosen below."),
    ("server", "A Sfumato server", "Another computer's engine (sfumato serve) makes the pictures; they are saved "
                                   "here, with their metadata, as usual."),
]

THEME_CHOICES = [
    ("system", "Follow the system", "Light or dark, as the operating system is set; follows it when it changes."),
    ("light", "Light", "Dark text on light backgrounds."),
    ("dark", "Dark", "Light text on dark backgrounds."),
]


def measured_runtime() -> str:
    """What the last measurement of PyTorch against OpenVINO on this CPU found (desktop/core/cpu_runtime.py), or ""
    when there is none yet."""
    measurement = cpu_runtime.load()
    return cpu_runtime.describe(measurement) if measurement is not None else ""


def output_folder_problem(text: str) -> str | None:
    """Why `text` cannot be the output folder, or None when it can.

    Empty means the default folder. The check really creates the folder and a
    temporary file in it, then removes both (and any folder it had to create),
    so a folder that is about to be typed out leaves nothing behind.
    """
    text = text.strip()
    if "\0" in text:
        return "The folder name contains a NUL character."
    try:
        folder = Path(text).expanduser() if text else paths.output_dir()
    except RuntimeError:  # "~someone" for an unknown user
        return f"{Path(text).parts[0]} is not a known home folder."
    if not folder.is_absolute():
        return f"Enter a full path, for example {paths.output_dir()}."
    created: list[Path] = []  # the folders this check makes, deepest first, removed again
    try:
        blocker = folder
        while not blocker.exists() and blocker.parent != blocker:
            created.append(blocker)
            blocker = blocker.parent
        if blocker.exists() and not blocker.is_dir():
            return f"{blocker} is a file, not a folder, so the output folder cannot be made there."
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sfumato-write-test-"):
            pass
    except PermissionError:
        return f"You do not have permission to write in {folder}."
    except OSError as error:
        return f"Sfumato cannot create or write to {folder}: {error.strerror or error}."
    finally:
        for made in created:
            try:
                made.rmdir()
            except OSError:
                pass
    return None


def _sentence(error: BaseException) -> str:
    from desktop.core.errors import SfumatoError

    if isinstance(error, SfumatoError):
        return str(error)
    return f"The connection test failed ({type(error).__name__}: {error})."


class _MessageLabel(QLabel):
    """A word-wrapped label that asks for the height its text needs at the width it really has.

    Top-level windows ignore height-for-width, so a plain wrapped QLabel gets
    clipped or padded; this one reports a fixed height for its last known width
    and asks for a new layout when that width changes.
    """

    def __init__(self, style: str):
        super().__init__()
        self._known_width = 440  # a guess until the layout has placed it
        self.setWordWrap(True)
        self.setStyleSheet(style)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hide()

    def hasHeightForWidth(self) -> bool:
        return False

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.heightForWidth(self._known_width))

    def minimumSizeHint(self) -> QSize:
        return QSize(super().minimumSizeHint().width(), self.heightForWidth(self._known_width))

    def setText(self, text: str) -> None:
        super().setText(text)
        self.updateGeometry()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.size().width() != self._known_width:
            self._known_width = event.size().width()
            if self.heightForWidth(self._known_width) != self.height():
                self.updateGeometry()


class SettingsDialog(QDialog):
    """Edits a copy of Settings; read `settings()` after it was accepted."""

    def __init__(self, settings: Settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._original = settings
        self._output_problem: str | None = None
        self._labels: list[QLabel] = []
        self._output_timer = QTimer(self)
        self._output_timer.setSingleShot(True)
        self._output_timer.setInterval(CHECK_DELAY_MS)
        self._output_timer.timeout.connect(self._check_output_folder)
        self._background = Background(self)  # the connection test's thread
        self._connection_check = 0  # the latest test's number; an older one's answer is dropped
        self._build()
        self._load(settings)
        self._check_output_folder()

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(self._backend_group())
        layout.addWidget(self._engine_group())
        layout.addWidget(self._folders_group())
        layout.addWidget(self._previews_group())
        layout.addStretch(1)
        layout.addWidget(self._button_box())
        width = max(label.sizeHint().width() for label in self._labels)
        for label in self._labels:  # one label column across all the groups
            label.setMinimumWidth(width)
        self.setMinimumWidth(720)  # room for the folder list beside its buttons

    def _form(self, title: str) -> tuple[QGroupBox, QFormLayout]:
        group = QGroupBox(title)
        form = QFormLayout(group)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        return group, form

    def _row(self, form: QFormLayout, text: str, field: QWidget, buddy: QWidget | None = None) -> QLabel:
        label = QLabel(text)
        label.setBuddy(buddy or field)
        label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._labels.append(label)
        form.addRow(label, field)
        return label

    @staticmethod
    def _combo(choices: list[tuple[str, str, str]], tooltip: str) -> QComboBox:
        combo = QComboBox()
        for value, text, tip in choices:
            combo.addItem(text, value)
            combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        combo.setToolTip(tooltip)
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        return combo

    def _backend_group(self) -> QGroupBox:
        group, form = self._form("Backend")
        self.backend_choice = self._combo(
            BACKEND_CHOICES,
            "Where pictures are made: on this computer, or on a Sfumato server (sfumato serve) on another one.",
        )
        self.server_url = QLineEdit()
        self.server_url.setPlaceholderText(SERVER_EXAMPLE)
        self.server_url.setClearButtonEnabled(True)
        self.server_url.setToolTip("The address sfumato serve printed on the server, for example "
                                   f"{SERVER_EXAMPLE} (https:// behind a reverse proxy).")
        self.test_button = QPushButton("Test &connection")
        self.test_button.setToolTip("Ask the server whether it answers, and how many replicas and models it has")
        self.test_button.setAutoDefault(False)
        self.server_token = QLineEdit()
        self.server_token.setEchoMode(QLineEdit.EchoMode.Password)
        self.server_token.setPlaceholderText("Only when the server asks for one")
        self.server_token.setToolTip(TOKEN_TIP)
        self.connection_message = _MessageLabel(_NOTE_STYLE)  # the test's sentence, or what is wrong
        url_field = QWidget()
        url_row = QHBoxLayout(url_field)
        url_row.setContentsMargins(0, 0, 0, 0)
        url_row.addWidget(self.server_url, 1)
        url_row.addWidget(self.test_button)
        self._row(form, "Pictures made o&n:", self.backend_choice)
        self._row(form, "Server &address:", url_field, self.server_url)
        self._row(form, "To&ken:", self.server_token)
        form.addRow("", self.connection_message)
        self.backend_choice.currentIndexChanged.connect(self._backend_changed)
        self.server_url.textChanged.connect(self._server_edited)
        self.server_token.textChanged.connect(self._server_edited)
        self.test_button.clicked.connect(self.test_connection)
        return group

    def _engine_group(self) -> QGroupBox:
        group, form = self._form("Engine")
        self.device = self._combo(
            _device_choices(),
            "Where pictures are computed. Sfumato checks that the chosen device is there when the engine "
            "starts, and says so if it is not.",
        )
        self.precision = self._combo(
            PRECISION_CHOICES,
            "The number format the model runs in.\nAutomatic: fp16 on GPUs, bf16 on CPUs that support it, "
            "else fp32.",
        )
        self.weight_storage = self._combo(
            WEIGHT_STORAGE_CHOICES,
            "How the transformer of a FLUX.1, SD 3.5, Z-Image or FLUX.2 klein model keeps its weights (needs the "
            "torchao package for int8; GGUF files are already quantized).\nAutomatic: int8 only where the GPU "
            "would otherwise need sequential offload. Pictures made in int8 say so in their parameters.",
        )
        self.cpu_runtime = self._combo(
            CPU_RUNTIME_CHOICES,
            "What runs the model when the device is the CPU (a GPU always runs PyTorch).\nAutomatic: OpenVINO only "
            f"where it measured at least {cpu_runtime.WORTH:g}x faster than PyTorch on this CPU (measured once, never "
            "guessed), else PyTorch; the demo models run on PyTorch.",
        )
        self.cpu_threads = QSpinBox()
        self.cpu_threads.setRange(0, MAX_CPU_THREADS)
        self.cpu_threads.setSpecialValueText(AUTOMATIC_THREADS)
        self.cpu_threads.setToolTip("How many threads a picture made on the CPU uses. Automatic: one per physical "
                                    "core.")
        self.cpu_measured = _MessageLabel("")  # cpu_runtime.describe(): what the measurement found, when there is one
        self.cpu_measured.setToolTip("Measured once, when the engine first ran a model on this CPU with the CPU "
                                     "runtime on Automatic.")
        self.engine_note = _MessageLabel(_NOTE_STYLE)
        self.engine_problem = _MessageLabel(_MESSAGE_STYLE)
        self._row(form, "&Device:", self.device)
        # two settings on one row each: the window keeps to a 720-pixel screen
        self._row(form, "&Precision:", _pair(self.precision, "&Weight storage:", self.weight_storage, 1),
                  self.precision)
        self._row(form, "CPU &runtime:", _pair(self.cpu_runtime, "CPU t&hreads:", self.cpu_threads, 0),
                  self.cpu_runtime)
        form.addRow("", self.cpu_measured)
        form.addRow("", self.engine_problem)
        form.addRow("", self.engine_note)
        self.device.currentIndexChanged.connect(self._engine_changed)
        self.precision.currentIndexChanged.connect(self._engine_changed)
        self.weight_storage.currentIndexChanged.connect(self._engine_changed)
        self.cpu_runtime.currentIndexChanged.connect(self._engine_changed)
        self.cpu_threads.valueChanged.connect(self._engine_changed)
        self._engine_tips = {combo: combo.toolTip() for combo in (self.device, self.precision, self.weight_storage,
                                                                  self.cpu_runtime, self.cpu_threads)}
        return group

    def _folders_group(self) -> QGroupBox:
        group, form = self._form("Folders")
        self.folders_editor = FolderListEditor()  # the same editor as the Models window's
        label = self._row(form, "Models &folders:", self.folders_editor, self.folders_editor.list)
        label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        label.setContentsMargins(0, 4, 0, 0)

        self.output_folder = QLineEdit()
        self.output_folder.setPlaceholderText(str(paths.output_dir()))
        self.output_folder.setClearButtonEnabled(True)
        self.output_folder.setToolTip(
            f"Where finished pictures are saved. Leave it empty for the default folder, {paths.output_dir()}."
        )
        self.browse_button = QPushButton("&Browse...")
        self.browse_button.setToolTip("Choose the output folder")
        self.browse_button.setAutoDefault(False)
        self.output_error = _MessageLabel(_MESSAGE_STYLE)
        output_field = QWidget()
        output_column = QVBoxLayout(output_field)
        output_column.setContentsMargins(0, 0, 0, 0)
        output_row = QHBoxLayout()
        output_row.addWidget(self.output_folder, 1)
        output_row.addWidget(self.browse_button)
        output_column.addLayout(output_row)
        output_column.addWidget(self.output_error)
        self._row(form, "O&utput folder:", output_field, self.output_folder)
        self.mark_ai = QCheckBox("Mark pictures as AI-&generated (IPTC digital source type)")
        self.mark_ai.setToolTip(
            "The EU AI Act (article 50) expects generated pictures to be marked as such in a machine-readable way: "
            "the mark is an XMP field that other apps read, and it says nothing about the prompt.")
        form.addRow("", self.mark_ai)
        self.content_credentials = QCheckBox("Sign them with &content credentials (C2PA)")
        self.content_credentials.setToolTip(CREDENTIALS_TIP)
        self.own_certificate = QPushButton("Own certificate...")
        self.own_certificate.setAutoDefault(False)
        self.own_certificate.setToolTip("Sign with your own certificate chain and key instead of Sfumato's own key")
        self._certificate, self._key = "", ""  # the person's chain and key; "" and "": Sfumato's own key
        credentials_field = QWidget()
        credentials_row = QHBoxLayout(credentials_field)
        credentials_row.setContentsMargins(0, 0, 0, 0)
        credentials_row.addWidget(self.content_credentials)
        credentials_row.addStretch(1)
        credentials_row.addWidget(self.own_certificate)
        form.addRow("", credentials_field)
        # One line, not wrapped: a wrapped label asks for many more before the window is laid out.
        self.credentials_note = QLabel(CREDENTIALS_NOTE)
        self.credentials_note.setStyleSheet("QLabel { color: palette(placeholder-text); }")
        self.credentials_note.setToolTip(CREDENTIALS_TIP)
        form.addRow("", self.credentials_note)
        # only when the person's certificate cannot sign, in the note's place and on one line (the window must
        # fit a 720-pixel screen): the whole sentence is its tooltip and in Own certificate...
        self.credentials_error = QLabel()
        self.credentials_error.setStyleSheet("QLabel { color: #c0392b; font-weight: bold; }")
        form.addRow("", self.credentials_error)
        form.setRowVisible(self.credentials_error, False)
        self._credentials_form = form
        self._credentials_problem: str | None = None
        self._credentials_check = 0  # the latest check's number; an older one's answer is dropped
        self.own_certificate.clicked.connect(self.edit_certificate)
        self.mark_ai.toggled.connect(self._credentials_toggled)
        self.content_credentials.toggled.connect(self._credentials_toggled)

        self.browse_button.clicked.connect(self._browse_output_folder)
        self.output_folder.textChanged.connect(self._output_folder_edited)
        return group

    def _previews_group(self) -> QGroupBox:
        group, form = self._form("Previews and appearance")  # one group: the window keeps to a 720-pixel screen
        self.preview_method = self._combo(PREVIEW_CHOICES, "How the picture is shown while it is being made.")
        self.preview_every = QSpinBox()
        self.preview_every.setRange(1, 100)
        self.preview_every.setToolTip("Show a new preview after this many steps (1: after every step).")
        self.preview_every.setAccelerated(True)
        self.preview_every.setKeyboardTracking(False)  # the suffix changes on commit, not mid-typing
        self.taesd_note = _MessageLabel(_NOTE_STYLE)
        every_label = QLabel("Pre&view every:")
        every_label.setBuddy(self.preview_every)
        method_row = QWidget()  # one row: the window keeps to a 720-pixel screen
        row = QHBoxLayout(method_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.preview_method, 1)
        row.addWidget(every_label)
        row.addWidget(self.preview_every)
        self._row(form, "Preview &method:", method_row, self.preview_method)
        form.addRow("", self.taesd_note)
        self.theme = self._combo(THEME_CHOICES, "Colours of Sfumato's windows.")
        self._row(form, "&Theme:", self.theme)
        self.preview_method.currentIndexChanged.connect(self._previews_changed)
        self.preview_every.valueChanged.connect(self._preview_every_suffix)
        return group

    def _button_box(self) -> QDialogButtonBox:
        Button = QDialogButtonBox.StandardButton
        self.buttons = QDialogButtonBox(Button.Ok | Button.Cancel | Button.RestoreDefaults)
        self.ok_button = self.buttons.button(Button.Ok)
        self.ok_button.setToolTip("Use these settings (Enter)")
        self.ok_button.setDefault(True)
        self.cancel_button = self.buttons.button(Button.Cancel)
        self.cancel_button.setToolTip("Close without changing anything (Esc)")
        self.restore_button = self.buttons.button(Button.RestoreDefaults)
        self.restore_button.setText("Re&store defaults")
        self.restore_button.setToolTip("Put every value in this window back to its default; nothing changes until OK.")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.restore_button.clicked.connect(self.restore_defaults)
        return self.buttons

    # -- values ------------------------------------------------------------------------------

    def _load(self, settings: Settings) -> None:
        for combo, value in (
            (self.device, settings.device),
            (self.precision, settings.precision),
            (self.weight_storage, settings.weight_storage),
            (self.cpu_runtime, settings.cpu_runtime),
            (self.preview_method, settings.preview_method),
            (self.theme, settings.theme),
            (self.backend_choice, "server" if settings.server_url else "local"),
        ):
            combo.setCurrentIndex(max(0, combo.findData(value)))
        self.server_url.setText(settings.server_url)
        self.server_token.setText(settings.server_token)
        self.folders_editor.set_folders(settings.models_folders)
        self.output_folder.setText(settings.output_folder)
        self.mark_ai.setChecked(settings.mark_ai)
        self.content_credentials.setChecked(settings.content_credentials)
        self._set_certificate(settings.credentials_certificate, settings.credentials_key)
        self._credentials_toggled()
        self.preview_every.setValue(settings.preview_every)
        self.cpu_threads.setValue(settings.cpu_threads)
        measured = measured_runtime()
        self.cpu_measured.setText(measured)
        self.cpu_measured.setVisible(bool(measured))
        self._preview_every_suffix(self.preview_every.value())
        self._backend_changed()
        self._previews_changed()

    def settings(self) -> Settings:
        """The edited copy (every field the window does not show is as it was)."""
        self.preview_every.interpretText()
        edited = copy.deepcopy(self._original)
        edited.device = self.device.currentData()
        edited.precision = self.precision.currentData()
        edited.weight_storage = self.weight_storage.currentData()
        self.cpu_threads.interpretText()
        edited.cpu_runtime = self.cpu_runtime.currentData()
        edited.cpu_threads = self.cpu_threads.value()
        edited.models_folders = self.folders_editor.folders()
        edited.output_folder = self.output_folder.text().strip()
        edited.mark_ai = self.mark_ai.isChecked()
        edited.content_credentials = self.content_credentials.isChecked()
        edited.credentials_certificate, edited.credentials_key = self._certificate, self._key
        edited.preview_method = self.preview_method.currentData()
        edited.preview_every = self.preview_every.value()
        edited.theme = self.theme.currentData()
        on_server = self._on_server()
        edited.server_url = self.server_url.text().strip() if on_server else ""  # empty: this computer
        edited.server_token = self.server_token.text().strip() if on_server else ""
        return edited

    @Slot()
    def restore_defaults(self) -> None:
        self._load(Settings())

    def accept(self) -> None:
        if self._output_timer.isActive():  # Enter pressed right after typing: check now
            self._output_timer.stop()
            self._check_output_folder()
        if self._problems():
            if self._output_problem:
                self.output_folder.setFocus()
            return
        super().accept()

    def _problems(self) -> list[str]:
        found = [self._output_problem, self._engine_problem(), self._server_problem(), self._credentials_problem]
        return [problem for problem in found if problem]

    def _update_ok(self) -> None:
        problems = self._problems()
        self.ok_button.setEnabled(not problems)
        self.ok_button.setToolTip("Fix the problem shown above first" if problems else "Use these settings (Enter)")

    # -- engine --------------------------------------------------------------------------------

    def _engine_problem(self) -> str | None:
        if self._on_server():
            return None  # the server's own device and precision count
        if self.device.currentData() == "cpu" and self.precision.currentData() == "fp16":
            return CPU_FP16_PROBLEM
        return None

    @Slot()
    def _engine_changed(self) -> None:
        problem = self._engine_problem()
        self.engine_problem.setText(problem or "")
        self.engine_problem.setVisible(problem is not None)
        changed = (self.device.currentData(), self.precision.currentData(), self.weight_storage.currentData(),
                   self.cpu_runtime.currentData(), self.cpu_threads.value()) != (
            self._original.device,
            self._original.precision,
            self._original.weight_storage,
            self._original.cpu_runtime,
            self._original.cpu_threads,
        )
        self.engine_note.setText(ENGINE_RESTART_NOTE)
        self.engine_note.setVisible(changed and problem is None and not self._on_server())
        self._update_ok()

    # -- backend -----------------------------------------------------------------------------

    def _on_server(self) -> bool:
        return self.backend_choice.currentData() == "server"

    def _server_problem(self) -> str | None:
        if not self._on_server():
            return None
        url = self.server_url.text().strip()
        if not url:
            return NO_SERVER_ADDRESS
        from desktop.core.errors import SfumatoError
        from desktop.remote.backend import RemoteBackend

        try:
            RemoteBackend(url)  # reads the address only; nothing is sent
        except SfumatoError as error:
            return str(error)
        return None

    @Slot()
    def _backend_changed(self) -> None:
        on_server = self._on_server()
        for widget in (self.server_url, self.server_token, self.test_button):
            widget.setEnabled(on_server)
        for combo, tip in self._engine_tips.items():
            combo.setEnabled(not on_server)
            combo.setToolTip(SERVER_ONLY_TIP if on_server else tip)
        self._server_edited()
        self._engine_changed()

    @Slot()
    def _server_edited(self) -> None:
        """The address or token changed: an earlier test's answer no longer applies."""
        self._connection_check += 1
        self.test_button.setEnabled(self._on_server())
        self._say_connection(self._server_problem(), problem=True)
        self._update_ok()

    def _say_connection(self, text: str | None, *, problem: bool) -> None:
        self.connection_message.setStyleSheet(_MESSAGE_STYLE if problem else _NOTE_STYLE)
        self.connection_message.setText(text or "")
        self.connection_message.setVisible(bool(text))

    @Slot()
    def test_connection(self) -> None:
        """Ask the server from a background thread; its sentence shows below the fields when it answers."""
        problem = self._server_problem()
        if problem:
            self._say_connection(problem, problem=True)
            return
        from desktop.remote.connection import check

        self._connection_check += 1
        number, url, token = self._connection_check, self.server_url.text().strip(), self.server_token.text()
        had_focus = self.test_button.hasFocus()
        self.test_button.setEnabled(False)  # Qt moves the focus on, to the token field
        moved_to = self.focusWidget()
        self._say_connection(f"Asking the server at {url}...", problem=False)

        def answered(text: object, problem: bool) -> None:
            if number != self._connection_check:
                return  # the address or token changed meanwhile
            self.test_button.setEnabled(self._on_server())
            if had_focus and self.focusWidget() is moved_to:
                self.test_button.setFocus()  # back where the person left it
            self._say_connection(str(text), problem=problem)

        self._background.run(lambda: check(url, token), lambda text: answered(text, False),
                             lambda error: answered(_sentence(error), True), name="connection-test")

    # -- output folder -----------------------------------------------------------------------

    @Slot()
    def _browse_output_folder(self) -> None:
        start = self.output_folder.text().strip() or str(paths.output_dir())
        folder = QFileDialog.getExistingDirectory(self, "Choose the output folder", start)
        if folder:
            self.output_folder.setText(str(Path(folder)))
            self._output_timer.stop()
            self._check_output_folder()

    @Slot()
    def _output_folder_edited(self) -> None:
        self._output_timer.start()

    @Slot()
    def _check_output_folder(self) -> None:
        self._output_problem = output_folder_problem(self.output_folder.text())
        self.output_error.setText(self._output_problem or "")
        self.output_error.setVisible(self._output_problem is not None)
        self._update_ok()

    # -- content credentials -------------------------------------------------------------------

    @Slot()
    def _credentials_toggled(self) -> None:
        """The manifest says the picture is generated too: it goes only where the AI mark does."""
        self.content_credentials.setEnabled(self.mark_ai.isChecked())
        self.own_certificate.setEnabled(self.mark_ai.isChecked() and self.content_credentials.isChecked())
        self._check_credentials()

    @Slot()
    def edit_certificate(self) -> CertificateDialog:
        """Own certificate...: the chain and key in their own small window; what it accepts is used."""
        dialog = CertificateDialog(self._certificate, self._key, self)
        dialog.accepted.connect(lambda: self._set_certificate(*dialog.values()))
        dialog.open()
        return dialog

    def _set_certificate(self, certificate: str, key: str) -> None:
        self._certificate, self._key = certificate, key
        name = Path(certificate).name if certificate else ""
        self.own_certificate.setText(f"Own certificate: {name}..." if name else "Own certificate...")
        self._check_credentials()

    @Slot()
    def _check_credentials(self) -> None:
        """The chain and key the person named must sign a test picture: checked in the background thread (a
        path may name a FIFO or a slow network file), its sentence shown when it answers."""
        self._credentials_check += 1
        number, certificate, key = self._credentials_check, self._certificate, self._key
        on = self.mark_ai.isChecked() and self.content_credentials.isChecked() and bool(certificate or key)

        def answered(problem: object) -> None:
            if number != self._credentials_check:
                return  # what is named changed meanwhile
            self._credentials_problem = here(str(problem)) if problem else None
            self.credentials_error.setText(CERTIFICATE_PROBLEM if problem else "")
            self.credentials_error.setToolTip(self._credentials_problem or "")
            shown = self._credentials_problem is not None
            for row, visible in sorted(((self.credentials_note, not shown), (self.credentials_error, shown)),
                                       key=lambda pair: pair[1]):  # hidden first: the window never grows
                self._credentials_form.setRowVisible(row, visible)
            self._update_ok()

        if not on:
            answered("")
            return
        self._background.run(lambda: credentials.check_user_key(certificate, key), answered,
                             lambda error: answered(f"The certificate could not be checked ({error})."),
                             name="certificate-check")

    # -- previews ----------------------------------------------------------------------------

    @Slot()
    def _previews_changed(self) -> None:
        method = self.preview_method.currentData()
        self.preview_every.setEnabled(method != "off")
        models = paths.models_dir()
        have_weights = any((models / name / "config.json").is_file() for name in ("taesd", "taesdxl"))
        self.taesd_note.setText(
            f"TAESD's weights were not found in {models / 'taesd'} (or taesdxl for SDXL). "
            "Until they are there, previews use the approximation."
        )
        self.taesd_note.setVisible(method == "taesd" and not have_weights)

    @Slot(int)
    def _preview_every_suffix(self, value: int) -> None:
        self.preview_every.setSuffix(" step" if value == 1 else " steps")


def _pair(first: QWidget, label: str, second: QWidget, second_stretch: int) -> QWidget:
    """`first`, then `second` with its own label, on one row."""
    row_widget = QWidget()
    row = QHBoxLayout(row_widget)
    row.setContentsMargins(0, 0, 0, 0)
    buddy = QLabel(label)
    buddy.setBuddy(second)
    row.addWidget(first, 1)
    row.addWidget(buddy)
    row.addWidget(second, second_stretch)
    return row_widget

