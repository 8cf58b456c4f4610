"""Logs, crash reports, and a windowed build's missing stdout/stderr."""

import subprocess
import sys
import textwrap

from desktop import diagnostics
from desktop.core import paths


def test_a_crash_report_names_the_error_and_keeps_the_log_tail(sfumato_home):
    diagnostics.setup()
    diagnostics.log.info("a line before the crash")
    try:
        raise ValueError("the mask had no pixels")
    except ValueError as error:
        path = diagnostics.write_crash_report(type(error), error, error.__traceback__)
    text = path.read_text()
    assert path.parent == paths.log_dir() and path.name.startswith("crash-")
    assert "ValueError: the mask had no pixels" in text and "a line before the crash" in text


def test_unhandled_errors_in_threads_are_reported_not_fatal(sfumato_home):
    import threading

    reports = []
    saved_hook, saved_thread_hook = sys.excepthook, threading.excepthook
    try:
        diagnostics.install_crash_handler(lambda path, summary: reports.append((path, summary)))
        thread = threading.Thread(target=lambda: 1 / 0)
        thread.start()
        thread.join()
    finally:
        sys.excepthook, threading.excepthook = saved_hook, saved_thread_hook
    (path, summary), = reports
    assert summary.startswith("ZeroDivisionError") and path.is_file()


def test_a_windowed_build_without_stdout_and_stderr_starts_and_logs(tmp_path):
    """As pythonw or a windowed PyInstaller build: sys.stdout and sys.stderr are None."""
    code = textwrap.dedent("""
        import os, sys
        sys.stdout = None
        sys.stderr = None
        from desktop import diagnostics
        log = diagnostics.setup()
        print("a print goes nowhere, without raising")
        sys.stderr.write("so does a progress bar\\n")
        import tqdm
        for _ in tqdm.tqdm(range(3)):
            pass
        open(os.environ["SFUMATO_HOME"] + "/ok", "w").write(str(log))
    """)
    home = tmp_path / "home"
    env = {"SFUMATO_HOME": str(home), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    log = (home / "ok").read_text()
    assert log.endswith("sfumato.log") and "Sfumato starting" in open(log).read()
