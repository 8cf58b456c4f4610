"""Logs and crash reports, and streams that exist even in a windowed build.

A windowed build (PyInstaller on Windows and macOS, pythonw) has no stdout
or stderr: `sys.stdout` is None and the first progress bar or print would
raise. `setup()` gives them a harmless home, sends logging to a rotating
file in the log folder (platformdirs), and captures warnings.

`install_crash_handler(on_crash)` makes any unhandled exception, on any
thread, write a crash report next to the log and then call `on_crash(path,
summary)`, so the window can say where the report is and autosave the
user's picture. The app keeps running.
"""

from __future__ import annotations

import datetime as _dt
import logging
import logging.handlers
import os
import platform
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from desktop.core import paths

LOG_NAME = "sfumato.log"
log = logging.getLogger("sfumato")


def setup() -> Path:
    """Make stdout/stderr safe to write to and log to a rotating file. Returns the log file."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:  # a windowed build: nowhere to write, so nothing to show
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 - lives as long as the app
    folder = paths.log_dir()
    path = folder / LOG_NAME
    root = logging.getLogger()
    if any(getattr(h, "sfumato", False) for h in root.handlers):
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2 * 2**20, backupCount=3, encoding="utf-8")
    except OSError:  # a read-only profile must not stop the app
        handler = logging.StreamHandler(sys.stderr)
    handler.sfumato = True
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    log.info("Sfumato starting: Python %s on %s", platform.python_version(), platform.platform())
    return path


def write_crash_report(kind: type[BaseException], error: BaseException, trace) -> Path:
    """Write what happened (the traceback, the versions, the end of the log) and return the file."""
    folder = paths.log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = folder / f"crash-{stamp}.txt"
    lines = [
        f"Sfumato crash report, {_dt.datetime.now().isoformat(timespec='seconds')}",
        f"Python {platform.python_version()} on {platform.platform()}, {'frozen' if getattr(sys, 'frozen', False) else 'from source'}",
        f"Thread: {threading.current_thread().name}",
        *_versions(),
        "",
        "".join(traceback.format_exception(kind, error, trace)),
        "The end of the log:",
        _log_tail(folder / LOG_NAME),
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def install_crash_handler(on_crash: Callable[[Path, str], None]) -> None:
    """Unhandled exceptions (main thread, Qt slots, other threads) are reported, not fatal."""

    def report(kind, error, trace) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, trace)
            return
        log.error("unhandled exception", exc_info=(kind, error, trace))
        try:
            path = write_crash_report(kind, error, trace)
        except OSError:
            path = paths.log_dir() / LOG_NAME
        try:
            on_crash(path, f"{kind.__name__}: {error}")
        except Exception:  # noqa: BLE001 - the handler of last resort must not raise
            log.exception("the crash handler failed")

    sys.excepthook = report
    threading.excepthook = lambda args: report(args.exc_type, args.exc_value, args.exc_traceback)


def _versions() -> list[str]:
    lines = []
    for name in ("PySide6", "torch", "diffusers", "transformers", "numpy", "PIL"):
        module = sys.modules.get(name)
        if module is not None:
            lines.append(f"{name} {getattr(module, '__version__', '?')}")
    return lines


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
