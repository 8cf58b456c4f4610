"""Download from Hugging Face: the panel where a model id is typed, with progress, Cancel and Retry.

The download itself is desktop.core.hub.download (huggingface_hub, never
torch), run on one of the Models window's background threads; its status lines
come back through Background.progress and move the bar.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QLineEdit, QProgressBar, QWidget

from desktop.core.errors import Cancelled, SfumatoError
from desktop.core.model_sources import parse_repo_id
from desktop.core.progress import TaskState

from ..background import Background
from .common import ERROR_STYLE, button

log = logging.getLogger(__name__)

DownloadFunction = Callable[[str, TaskState], Path]
PROGRESS_TEXT = r"(\d+) of (\d+) MB"
ID_HINT = "Type the model's id as owner/name (for example runwayml/stable-diffusion-v1-5)."
WHAT_IS_FETCHED = ("Only what Sfumato needs is fetched (configs and .safetensors weights). "
                   "An interrupted download resumes with the files that finished.")


def hub_download(repo_id: str, state: TaskState) -> Path:
    """The real download; huggingface_hub is imported on the thread that runs it."""
    from desktop.core import hub

    return hub.download(repo_id, state)


class DownloadPanel(QFrame):
    """Type an id, download it off the GUI thread (through `jobs`), see progress, cancel, retry.

    Signals:
        downloaded(str): the local folder of a finished download.
    """

    downloaded = Signal(str)

    def __init__(self, jobs: Background, download: DownloadFunction | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self._jobs = jobs
        self._download = download or hub_download
        self._attempt = 0
        self._state: TaskState | None = None
        self._repo: str | None = None
        jobs.progress.connect(self._progress)
        self._build()
        self.hide()

    def _build(self) -> None:
        self.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(self)
        grid.addWidget(QLabel("<b>Download from Hugging Face</b>"), 0, 0, 1, 5)
        grid.addWidget(QLabel("Model id:"), 1, 0)
        self.repo_edit = QLineEdit()
        self.repo_edit.setPlaceholderText("owner/name, or paste the model page's address")
        self.repo_edit.setToolTip("A diffusers model on Hugging Face, for example owner/name. Enter starts the download.")
        self.repo_edit.setClearButtonEnabled(True)
        self.repo_edit.textChanged.connect(self._repo_text_changed)
        self.repo_edit.installEventFilter(self)  # Enter downloads instead of pressing "Use this model"
        grid.addWidget(self.repo_edit, 1, 1)
        self.download_button = button("Download", None, self.start,
                                      "Fetch the model's configs and .safetensors weights (Enter)")
        self.download_button.setEnabled(False)
        self.cancel_button = button("Cancel", "Ctrl+.", self.cancel, "Stop the download; Retry picks it up again")
        self.cancel_button.setEnabled(False)
        self.retry_button = button("Retry", "Ctrl+R", self.retry,
                                   "Download again; files that finished are not fetched twice")
        self.retry_button.setEnabled(False)
        grid.addWidget(self.download_button, 1, 2)
        grid.addWidget(self.cancel_button, 1, 3)
        grid.addWidget(self.retry_button, 1, 4)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFixedHeight(10)
        grid.addWidget(self.progress, 2, 1, 1, 4)
        self.status = QLabel(WHAT_IS_FETCHED)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(self.status, 3, 1, 1, 4)
        grid.setColumnStretch(1, 1)

    # -- public ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Show the panel with the id field focused."""
        self.show()
        self.repo_edit.setFocus()
        self.repo_edit.selectAll()

    def running(self) -> bool:
        return self._state is not None

    @Slot()
    def start(self, repo_id: str | None = None) -> None:
        repo = parse_repo_id(self.repo_edit.text() if repo_id is None else repo_id)
        if repo is None:
            self._message(ID_HINT, error=True)
            return
        if self._state is not None:
            return
        self.show()
        self._repo = repo
        self._attempt += 1
        attempt, jobs, last = self._attempt, self._jobs, [""]

        def status(text: str) -> None:  # on the download thread
            if text != last[0]:
                last[0] = text
                jobs.report(attempt, text)

        state = TaskState(on_status=status)
        self._state = state
        self._set_running(True)
        self.progress.setRange(0, 0)
        self._message(f"Downloading {repo}...")
        download = self._download
        jobs.run(lambda: download(repo, state), partial(self._finished, repo), partial(self._failed, repo),
                 name="models-download")

    @Slot()
    def cancel(self) -> None:
        if self._state is not None:
            self._state.cancel()
            self.cancel_button.setEnabled(False)
            self._message("Cancelling...")

    @Slot()
    def retry(self) -> None:
        if self._repo is not None:
            self.start(self._repo)

    def stop(self) -> None:
        """The window closes: cancel a download in progress; its result is not shown."""
        if self._state is not None:
            self._state.cancel()
        self._state = None

    # -- inside ---------------------------------------------------------------------------------

    @Slot(str)
    def _repo_text_changed(self, text: str) -> None:
        valid = parse_repo_id(text) is not None
        self.download_button.setEnabled(valid and self._state is None)
        if text.strip() and not valid:
            self._message(ID_HINT)
        elif self._state is None and not self.retry_button.isEnabled():
            self._message(WHAT_IS_FETCHED)

    def _message(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(ERROR_STYLE if error else "")

    def _set_running(self, running: bool) -> None:
        self.repo_edit.setEnabled(not running)
        self.download_button.setEnabled(not running and parse_repo_id(self.repo_edit.text()) is not None)
        self.cancel_button.setEnabled(running)
        self.retry_button.setEnabled(False)

    @Slot(int, str)
    def _progress(self, attempt: int, text: str) -> None:
        if attempt != self._attempt or self._state is None or self._state.cancelled():
            return
        match = re.search(PROGRESS_TEXT, text)
        if match and int(match[2]) > 0:
            self.progress.setRange(0, int(match[2]))
            self.progress.setValue(min(int(match[1]), int(match[2])))
        self._message(text)

    def _ended(self) -> None:
        self._state = None
        self._set_running(False)
        self.progress.setRange(0, 1)

    def _finished(self, repo: str, folder: Path) -> None:
        self._ended()
        self.progress.setValue(1)
        self._message(f"Downloaded {repo}. It is selected in the list above.")
        self.downloaded.emit(str(Path(folder)))

    def _failed(self, repo: str, error: BaseException) -> None:
        self._ended()
        self.progress.setValue(0)
        self.retry_button.setEnabled(True)
        if isinstance(error, Cancelled):
            self._message("Cancelled. Retry resumes it: the files that finished are kept.")
        elif isinstance(error, SfumatoError):
            self._message(str(error), error=True)
        else:
            log.error("download of %s failed", repo, exc_info=error)
            self._message(f"The download of {repo} failed: {error}", error=True)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (watched is self.repo_edit and event.type() == QEvent.Type.KeyPress
                and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)):
            if self.download_button.isEnabled():
                self.start()
            return True
        return super().eventFilter(watched, event)
