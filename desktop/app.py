"""Start the app: the window shows first, then the worker imports torch and loads the model.

`--smoke` drives one generation through the real UI path with the demo model
and prints one JSON line of timings (used by CI, benchmarks and the
installer check); it exits non-zero with the reason on any failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from desktop.core import paths
from desktop.core import settings as settings_store


def _seconds_since_process_start() -> float:
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - a missing figure must not stop the app
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sfumato")
    parser.add_argument("--smoke", action="store_true", help="generate once with the demo model, print timings, exit")
    parser.add_argument("picture", nargs="?", help="a picture or an .ora file to open")
    args = parser.parse_args(argv)
    if args.smoke and not os.environ.get(paths.HOME_ENV):
        # A throwaway profile: the smoke run must not change the user's settings, outputs or model choice.
        os.environ[paths.HOME_ENV] = tempfile.mkdtemp(prefix="sfumato-smoke-")
    if sys.platform.startswith("linux"):
        from desktop import platform_check

        problem = platform_check.problem()  # Qt would abort with a message that names no package
        if problem:
            print(problem, file=sys.stderr)
            return 1

    from desktop import diagnostics

    diagnostics.setup()

    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from desktop.ui.main_window import MainWindow
    from desktop.ui.theme import apply_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Sfumato")
    app.setOrganizationName("Sfumato")
    app.setDesktopFileName("sfumato")
    app.setWindowIcon(QIcon(str(paths.resources_dir() / "icons" / "sfumato.svg")))
    first_start = not paths.settings_file().exists()  # people who used Sfumato before know where models go
    settings = settings_store.load()
    apply_theme(app, settings.theme)
    if args.smoke:
        settings.model = "demo"
        settings.welcome_done = True
    window = MainWindow(settings)
    diagnostics.install_crash_handler(window.crash_reported.emit)
    window.show()
    shown_s = _seconds_since_process_start()
    torch_before_window = "torch" in sys.modules
    QTimer.singleShot(0, window.start_engine)
    if first_start and not settings.welcome_done:
        QTimer.singleShot(0, window.show_welcome)
    if args.picture and not args.smoke:
        window.files.open(args.picture)
    if args.smoke:
        from desktop.ui.smoke import SmokeRun

        smoke = SmokeRun(window, shown_s, torch_before_window)  # noqa: F841 - kept alive until exit
    return app.exec()
