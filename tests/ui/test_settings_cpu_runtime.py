"""Settings > Engine: the CPU runtime (Automatic, PyTorch, OpenVINO) with what the measurement found, and the CPU
threads; the window still fits a 1280x720 screen."""

import pytest

from PySide6.QtCore import Qt

from desktop.core import cpu_runtime
from desktop.core.settings import Settings
from desktop.ui.settings_dialog import AUTOMATIC_THREADS, ENGINE_RESTART_NOTE
from tests.ui.test_settings_dialog import choose

SCREEN_W, SCREEN_H, TITLE_BAR = 1280, 720, 30


def measured(openvino_s: float | None = 1.0) -> cpu_runtime.Measurement:
    return cpu_runtime.Measurement(cpu_runtime.this_cpu(), 1.4, openvino_s, versions=cpu_runtime.versions())


def test_the_runtime_and_threads_go_into_the_settings_and_say_they_load_the_model_again(open_dialog, qtbot):
    dialog = open_dialog(Settings())
    assert dialog.cpu_runtime.currentText() == "Automatic (measured on this CPU)"
    assert dialog.cpu_threads.text() == AUTOMATIC_THREADS
    assert [dialog.cpu_runtime.itemText(i) for i in range(dialog.cpu_runtime.count())] == [
        "Automatic (measured on this CPU)", "PyTorch", "OpenVINO (faster; converts each model once)"]
    choose(qtbot, dialog.cpu_runtime, "openvino")
    assert dialog.engine_note.isVisible() and dialog.engine_note.text() == ENGINE_RESTART_NOTE
    dialog.cpu_threads.setFocus()
    qtbot.keyClick(dialog.cpu_threads, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(dialog.cpu_threads, "3")
    edited = dialog.settings()
    assert (edited.cpu_runtime, edited.cpu_threads) == ("openvino", 3)


def test_stored_values_are_shown_and_restore_defaults_puts_automatic_back(open_dialog):
    dialog = open_dialog(Settings(cpu_runtime="pytorch", cpu_threads=2))
    assert dialog.cpu_runtime.currentText() == "PyTorch" and dialog.cpu_threads.value() == 2
    assert not dialog.engine_note.isVisible()
    dialog.restore_defaults()
    assert (dialog.settings().cpu_runtime, dialog.settings().cpu_threads) == ("auto", 0)


@pytest.mark.measures_cpu_runtime
def test_what_the_measurement_found_is_said_in_the_engine_group(open_dialog, qtbot):
    assert open_dialog().cpu_measured.text() == ""  # nothing measured on this CPU yet
    cpu_runtime.save(measured(openvino_s=1.0))
    dialog = open_dialog()
    assert dialog.cpu_measured.text() == cpu_runtime.describe(measured(openvino_s=1.0))
    assert dialog.cpu_measured.text().startswith("OpenVINO was 1.4x faster than PyTorch on this CPU")
    dialog.resize(dialog.sizeHint())  # what a real screen gives it (the offscreen one is 800 pixels wide)
    qtbot.waitUntil(lambda: dialog.cpu_measured.width() >= dialog.cpu_measured.sizeHint().width())
    assert dialog.cpu_measured.isVisible()


def test_on_a_server_the_runtime_and_threads_are_the_servers(open_dialog):
    dialog = open_dialog(Settings(server_url="http://gpu-box:7862"))
    assert not dialog.cpu_runtime.isEnabled() and not dialog.cpu_threads.isEnabled()


def test_the_window_still_fits_a_1280x720_screen_with_a_measurement(open_dialog):
    cpu_runtime.save(measured(openvino_s=None))  # the longest sentence: OpenVINO could not be measured, and why
    dialog = open_dialog()
    hint = dialog.sizeHint()
    assert dialog.cpu_measured.text().startswith("OpenVINO could not be measured on this CPU")
    assert hint.height() <= SCREEN_H - TITLE_BAR and hint.width() <= SCREEN_W, hint


def test_a_new_cpu_runtime_or_thread_count_loads_the_model_again(qtbot):
    from desktop.core import settings as settings_store
    from desktop.ui.worker import GenerationWorker
    from tests.support.fake_backend import FakeBackend
    from tests.support.requests import make_request

    made, backend = [], FakeBackend()
    worker = GenerationWorker(settings_store.load(), lambda s: made.append((s.cpu_runtime, s.cpu_threads)) or backend)
    request = make_request(prompt="a boat", model="some/model", width=64, height=64, steps=1, seed=5)
    try:
        for runtime, threads in (("auto", 0), ("openvino", 0), ("openvino", 2)):
            chosen = settings_store.load()
            chosen.cpu_runtime, chosen.cpu_threads = runtime, threads
            worker.update_settings(chosen)
            with qtbot.waitSignal(worker.job_finished, timeout=10_000):
                worker.submit(request)
        assert made == [("auto", 0), ("openvino", 0), ("openvino", 2)] and backend.closed == 2
    finally:
        assert worker.shutdown(5000)


def test_automatic_says_it_takes_openvino_only_when_it_measured_worth_it_and_the_demos_run_on_pytorch(open_dialog):
    dialog = open_dialog(Settings())
    said = (dialog.cpu_runtime.itemData(0, Qt.ItemDataRole.ToolTipRole), dialog.cpu_runtime.toolTip())
    for text in said:
        assert "faster of" not in text
        assert f"at least {cpu_runtime.WORTH:g}x faster" in text and "demo models run on PyTorch" in text
