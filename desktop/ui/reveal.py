"""Show a file in the system's file manager with the file selected, as "Show in folder" promises.

- Windows: Explorer's `/select,`.
- macOS: Finder through `open -R`.
- Linux and the BSDs: the freedesktop FileManager1 D-Bus call (Files, Dolphin, Nemo,
  Caja, Thunar and others answer it), sent with dbus-send. Where nothing answers, or
  dbus-send is missing, the folder opens without a selection.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QUrl
from PySide6.QtGui import QDesktopServices

DBUS_TIMEOUT_MS = 5000  # a file manager started by the call itself may take a few seconds


def reveal(path: Path, parent: QObject | None = None) -> None:
    path = Path(path).absolute()
    try:
        if sys.platform == "win32":
            subprocess.Popen(["explorer", f"/select,{path}"])  # noqa: S603, S607 - Explorer is on every Windows
            return
        if sys.platform == "darwin":
            subprocess.Popen(["open", "-R", str(path)])  # noqa: S603, S607
            return
    except OSError:
        open_folder(path.parent)
        return
    dbus_send = shutil.which("dbus-send")
    if dbus_send is None:
        open_folder(path.parent)
        return
    process = QProcess(parent)

    def done(succeeded: bool) -> None:
        if not succeeded:
            open_folder(path.parent)
        process.deleteLater()

    process.finished.connect(lambda code, status: done(code == 0 and status == QProcess.ExitStatus.NormalExit))
    process.errorOccurred.connect(lambda error: error == QProcess.ProcessError.FailedToStart and done(False))
    # dbus-send splits array items at commas, so a comma in the name is sent percent-encoded like the rest
    uri = QUrl.fromLocalFile(str(path)).toString(QUrl.ComponentFormattingOption.FullyEncoded).replace(",", "%2C")
    process.start(dbus_send, ["--session", "--print-reply", f"--reply-timeout={DBUS_TIMEOUT_MS}",
                              "--dest=org.freedesktop.FileManager1", "/org/freedesktop/FileManager1",
                              "org.freedesktop.FileManager1.ShowItems", f"array:string:{uri}", "string:"])


def open_folder(folder: Path) -> None:
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
